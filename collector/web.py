"""The collector's web page: Jinja2 templates (collector/templates/) over query results.

Every string that reaches the page came from a kernel log or an agent, i.e. from a machine an
attacker may control (a process name, a module name, a hostname). The templates run with
autoescape on and nothing crash-derived is marked safe; ids in links go through the `q` filter
(URL path quoting). The page carries no script at all and its Content-Security-Policy (`CSP`)
forbids scripts outright, so an escaping slip still cannot run code. No external assets: the page
works on an offline network.

Adding a page: a template under collector/templates/ that extends base.html (macros for times,
badges, tables, pagers and SVG charts are in _macros.html), a function here that computes what it
shows and calls `render`, and a Route in collector.http (docs/http-api.md, "Adding a route").
Charts are geometry computed here (`Chart`, pure and testable) drawn by the `svg` filter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode

import jinja2
from markupsafe import Markup, escape

from collector.analytics.exposure import DIMENSIONS, LABEL_PREFIX
from collector.analytics.triage import Triage
from wire.model import (
    ClusterDetail,
    ClusterSummary,
    CrashDetail,
    CrashSummary,
    HostSummary,
    Page,
    QueryFilter,
)

if TYPE_CHECKING:  # the statistics load at the first analytics query (collector.store.analytics)
    from collector.analytics.badhosts import BadHost
    from collector.analytics.rates import RateRow
    from collector.analytics.regression import RegressionWindow
    from collector.analytics.suspects import Suspect, SuspectReport

__all__ = [
    "CRASH_PAGE_SIZE",
    "CSP",
    "LIST_PAGE_SIZE",
    "NAV",
    "RATE_CHART_ROWS",
    "TEMPLATES",
    "Chart",
    "ClusterAnalytics",
    "Dot",
    "FaultView",
    "Line",
    "Rect",
    "SourceFrame",
    "Text",
    "bar_chart",
    "cluster_list_page",
    "cluster_page",
    "crash_page",
    "error_page",
    "fault_view",
    "hosts_page",
    "iso_time",
    "login_page",
    "rate_chart",
    "rates_page",
    "render",
    "signature_document",
    "source_frames",
    "sparkline",
    "sparkline_chart",
    "svg",
]

LIST_PAGE_SIZE: Final = 50
CRASH_PAGE_SIZE: Final = 25
SPARK_DAYS: Final = 14
TEMPLATES: Final = Path(__file__).parent / "templates"

# The header's navigation, in order: (href, label). A new top-level page adds its row here.
NAV: Final[tuple[tuple[str, str], ...]] = (("/", "Clusters"), ("/rates", "Rates"), ("/hosts", "Hosts"))
RATE_CHART_ROWS: Final = 25  # values drawn in the rates chart (highest rate first); the table lists all

CSS: Final = (TEMPLATES / "crashfleet.css").read_text(encoding="utf-8").strip()
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CSP: Final = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""No scripts, only the page's own stylesheet (pinned by hash), forms only to this server."""


# Filters the templates use -------------------------------------------------------------------------


def _q(segment: str) -> str:
    """One URL path segment (an id) quoted so it cannot change the route or break the attribute."""
    return quote(segment, safe="")


def _query(pairs: Iterable[tuple[str, str]]) -> str:
    """A query string from (name, value) pairs (autoescape then escapes the `&`)."""
    return urlencode(list(pairs))


def _when(ts: datetime | None) -> str:
    if ts is None:
        return "—"
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(ts: datetime | None) -> str:
    if ts is None:
        return ""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_time(ts: datetime | None) -> str | None:
    """RFC 3339 UTC (`2026-11-19T12:00:00Z`), as the JSON API writes times; None stays None."""
    return _iso(ts) if ts is not None else None


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _kind_class(kind: str) -> str:
    """The badge's CSS class suffix, restricted to [a-z-] so a hostile kind names no other class."""
    return "".join(ch for ch in kind.lower() if ch.isascii() and (ch.isalpha() or ch == "-"))


# Charts: geometry here, markup in `svg` ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rect:
    css_class: str
    width: int
    height: int
    x: int | None = None
    y: int | None = None
    rx: int = 0


@dataclass(frozen=True, slots=True)
class Line:
    css_class: str
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class Dot:
    css_class: str
    cx: float
    cy: float
    r: float


@dataclass(frozen=True, slots=True)
class Text:
    """A text element; `text` may be hostile (a label value) and is escaped by `svg`."""

    css_class: str
    x: float
    y: float
    text: str
    anchor: str = "start"  # start, middle or end (SVG text-anchor)


@dataclass(frozen=True, slots=True)
class Chart:
    """An inline SVG chart: its class, size, shapes and (for a labelled chart) the text a
    screen reader gets plus the raw values in `data-counts`; no label means aria-hidden."""

    css_class: str
    width: int
    height: int
    rects: tuple[Rect, ...]
    label: str = ""
    data: str = ""
    lines: tuple[Line, ...] = ()
    dots: tuple[Dot, ...] = ()
    texts: tuple[Text, ...] = ()


def sparkline_chart(counts: Sequence[int], *, bar: int = 5, gap: int = 2, height: int = 24) -> Chart:
    """Bars of daily counts, oldest first; zero days show as a thin grey baseline."""
    days = list(counts)[-SPARK_DAYS:] or [0] * SPARK_DAYS
    peak = max(max(days), 1)
    width = len(days) * (bar + gap) - gap
    rects = []
    for i, count in enumerate(days):
        x = i * (bar + gap)
        if count > 0:
            h = max(2, round(count / peak * (height - 1)))
            rects.append(Rect("d", bar, h, x, height - h))
        else:
            rects.append(Rect("z", bar, 1, x, height - 1))
    label = f"crashes per day, last {len(days)} days: {', '.join(str(c) for c in days)}"
    return Chart("spark", width, height, tuple(rects), label, ",".join(str(c) for c in days))


def bar_chart(count: int, peak: int, width: int = 80, height: int = 10) -> Chart:
    """One horizontal bar: `count` against the largest value `peak` of its table."""
    w = 0 if peak <= 0 else max(1, round(count / peak * width))
    return Chart("bar", width, height, (Rect("t", width, height, rx=2), Rect("b", w, height, rx=2)))


def _nice_ceiling(x: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k at or above x (an axis end a reader can count on)."""
    if x <= 0 or not math.isfinite(x):
        return 1.0
    power = 10.0 ** math.floor(math.log10(x))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= x * (1 - 1e-12):
            return step * power
    return 10.0 * power


def _short(text: str, limit: int = 34) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(x: float, digits: int = 2) -> str:
    """A number for a table: thousands separated, `digits` decimals, ∞ for an unbounded end."""
    if math.isinf(x):
        return "∞"
    if math.isnan(x):
        return "?"
    return f"{x:,.{digits}f}"


def _p_value(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def rate_chart(rows: Sequence[RateRow], dim: str | None) -> Chart:
    """Crash rates per 1,000 host-days as a dot per value with its 95 % interval as a whisker
    (a forest plot), highest rate first, on one linear axis from 0; at most RATE_CHART_ROWS
    values. A value without exposure has no rate to draw and says so."""
    shown = list(rows)[:RATE_CHART_ROWS]
    label_w, plot_w, right_w, row_h, top = 240, 440, 90, 22, 26
    ends = [r.ci_high if math.isfinite(r.ci_high) else r.rate_per_1000_host_days for r in shown if r.host_days > 0]
    peak = _nice_ceiling(max([*ends, 0.0]))
    width, height = label_w + plot_w + right_w, top + row_h * max(1, len(shown)) + 6

    def x(value: float) -> float:
        return round(label_w + min(value, peak) / peak * plot_w, 1)

    lines: list[Line] = []
    texts: list[Text] = []
    dots: list[Dot] = []
    for i in range(5):
        tick = peak * i / 4
        lines.append(Line("grid", x(tick), top - 4, x(tick), height - 4))
        texts.append(Text("tick", x(tick), top - 10, f"{tick:g}", "middle"))
    for i, r in enumerate(shown):
        y = top + i * row_h + row_h / 2
        texts.append(Text("name", label_w - 8, y + 4, _short(r.value or "fleet"), "end"))
        if r.host_days <= 0:
            texts.append(Text("na", label_w + 4, y + 4, "no exposure: nothing to say"))
            continue
        high = r.ci_high if math.isfinite(r.ci_high) else peak
        lines.append(Line("w", x(r.ci_low), y, x(high), y))
        lines.append(Line("cap", x(r.ci_low), y - 5, x(r.ci_low), y + 5))
        if math.isfinite(r.ci_high):
            lines.append(Line("cap", x(high), y - 5, x(high), y + 5))
        dots.append(Dot("pt", x(r.rate_per_1000_host_days), y, 4))
        texts.append(Text("num", label_w + plot_w + 10, y + 4, f"{r.rate_per_1000_host_days:,.2f}"))
    what = dim or "the fleet as a whole"
    label = f"crashes per 1,000 host-days with 95 % intervals, by {what}: " + "; ".join(
        f"{r.value or 'fleet'} {r.rate_per_1000_host_days:.2f} ({r.ci_low:.2f} to {_num(r.ci_high)})"
        for r in shown
    )
    data = ",".join(f"{r.rate_per_1000_host_days:.2f}" for r in shown)
    return Chart("rates", width, height, (), label, data, tuple(lines), tuple(dots), tuple(texts))


def sparkline(counts: Sequence[int], *, bar: int = 5, gap: int = 2, height: int = 24) -> str:
    """The sparkline's markup (what the pages embed)."""
    return str(svg(sparkline_chart(counts, bar=bar, gap=gap, height=height)))


_ANCHORS: Final = {"start": "start", "middle": "middle", "end": "end"}


def svg(chart: Chart) -> Markup:
    """A Chart as inline SVG (the templates' `svg` filter). Built here rather than in a macro:
    a page draws hundreds of rectangles, and every attribute is a number or one of our class
    names; the texts (label values, which agents choose) and the label are escaped."""
    rects = "".join(
        f'<rect class="{r.css_class}"'
        + (f' x="{r.x}" y="{r.y}"' if r.x is not None else "")
        + f' width="{r.width}" height="{r.height}"'
        + (f' rx="{r.rx}"' if r.rx else "")
        + "/>"
        for r in chart.rects
    )
    rects += "".join(
        f'<line class="{ln.css_class}" x1="{ln.x1:g}" y1="{ln.y1:g}" x2="{ln.x2:g}" y2="{ln.y2:g}"/>'
        for ln in chart.lines
    )
    rects += "".join(f'<circle class="{d.css_class}" cx="{d.cx:g}" cy="{d.cy:g}" r="{d.r:g}"/>' for d in chart.dots)
    rects += "".join(
        f'<text class="{t.css_class}" x="{t.x:g}" y="{t.y:g}" text-anchor="{_ANCHORS[t.anchor]}">{escape(t.text)}</text>'
        for t in chart.texts
    )
    head = f'<svg class="{chart.css_class}" xmlns="http://www.w3.org/2000/svg" width="{chart.width}" height="{chart.height}"'
    if chart.label:
        label = escape(chart.label)
        head += (
            f' viewBox="0 0 {chart.width} {chart.height}" role="img" aria-label="{label}"'
            f' data-counts="{escape(chart.data)}"><title>{label}</title>'
        )
    else:
        head += ' aria-hidden="true">'
    return Markup(head + rects + "</svg>")


# The template environment --------------------------------------------------------------------------

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,  # every template, whatever its name: crash text is hostile
    undefined=jinja2.StrictUndefined,  # a misspelt variable fails loudly, never renders as ""
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)
_ENV.filters.update(
    q=_q,
    query=_query,
    when=_when,
    iso=_iso,
    size=_bytes,
    kind_class=_kind_class,
    num=_num,
    p_value=_p_value,
    sparkline=sparkline_chart,
    bar_chart=bar_chart,
    svg=svg,
)
_ENV.globals.update(css=Markup(CSS), nav=NAV)  # CSS is ours, never crash text


def render(template: str, **context: Any) -> str:
    """A page: `template` under collector/templates/ with `context` (plus `css` and `nav`)."""
    return _ENV.get_template(template).render(**context)


def _macro(name: str) -> Any:
    return getattr(_ENV.get_template("_macros.html").module, name)


# The faulting instruction, read from the stored signature JSON (docs/report-schema.md) ------------


@dataclass(frozen=True, slots=True)
class FaultView:
    """What the cluster/crash pages show about the faulting instruction; any field may be absent."""

    rip: str | None = None
    instruction: str | None = None
    bad_register: str | None = None
    bad_register_value: str | None = None
    verdict: str | None = None
    decode_error: str | None = None
    fault_address: str | None = None
    operation: str | None = None  # "read", "write", ... as the decoder classified the access
    source: str | None = None  # file:line of the RIP when the symbol store resolved it


def signature_document(signature_json: str) -> dict[str, Any] | None:
    """A stored signature as the object it is: the report JSON of docs/report-schema.md.

    The store hands out report JSON (`collector.signature`, legacy rows converted on read); text
    that is not a JSON object (a hand-edited row) gives None, so the page shows the raw text.
    """
    if not signature_json:
        return None
    try:
        document = json.loads(signature_json)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _int(value: Any) -> int | None:
    """An integer from JSON: a number, or a decimal/0x string (how 64-bit values often travel)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value:
        try:
            return int(value, 16) if value.lower().startswith("0x") else int(value, 10)
        except ValueError:
            return None
    return None


def _hex(value: Any) -> str | None:
    number = _int(value)
    if number is None:
        return value if isinstance(value, str) and value else None
    return f"0x{number:016x}" if number >= 0 else str(number)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _rip_text(rip: Any) -> str | None:
    if isinstance(rip, str):
        return rip or None
    if not isinstance(rip, Mapping):
        return None
    fn = _text(rip.get("function"))
    if fn is None:
        return _hex(rip.get("address"))
    out = fn
    off, size = _int(rip.get("offset")), _int(rip.get("size"))
    if off is not None:
        out += f"+0x{off:x}"
        if size is not None:
            out += f"/0x{size:x}"
    module = _text(rip.get("module"))
    return f"{out} [{module}]" if module else out


def _source_text(rip: Any) -> str | None:
    if not isinstance(rip, Mapping):
        return None
    locations = rip.get("source")
    if not isinstance(locations, list) or not locations or not isinstance(locations[0], Mapping):
        return None
    file, line = _text(locations[0].get("file")), locations[0].get("line")
    if file is None:
        return None
    return f"{file}:{line}" if isinstance(line, int) and not isinstance(line, bool) else file


def _pick_crash(doc: Any, fingerprint: str) -> Mapping[str, Any] | None:
    """The crash of a report document matching `fingerprint` (else its first crash)."""
    if not isinstance(doc, Mapping):
        return None
    crashes = doc.get("crashes")
    if not isinstance(crashes, list):
        return doc  # a single crash object
    candidates = [c for c in crashes if isinstance(c, Mapping)]
    for crash in candidates:
        fp = crash.get("fingerprint")
        value = fp.get("value") if isinstance(fp, Mapping) else fp
        if fingerprint and value == fingerprint:
            return crash
    return candidates[0] if candidates else None


def fault_view(signature: Mapping[str, Any] | None, fingerprint: str = "") -> FaultView | None:
    """Decoded-instruction facts from a signature document (see `signature_document`); None when
    it shows neither a RIP nor a decoded `Code:` line. Tolerant by design: this is display, and
    a record from an older analyzer must still render."""
    crash = _pick_crash(signature, fingerprint)
    if crash is None:
        return None
    code = crash.get("code")
    code = code if isinstance(code, Mapping) else {}
    view = FaultView(
        rip=_rip_text(crash.get("rip")),
        instruction=_text(code.get("instruction")),
        bad_register=_text(code.get("bad_register")),
        bad_register_value=_hex(code.get("bad_register_value")),
        verdict=_text(code.get("access")),
        decode_error=_text(code.get("error")),
        fault_address=_hex(crash.get("fault_address")),
        operation=_text(code.get("operation")),
        source=_source_text(crash.get("rip")),
    )
    if view == FaultView():
        return None
    return view


@dataclass(frozen=True, slots=True)
class SourceFrame:
    """One row of the source view: a RIP or call-trace entry and the source chain debuginfo gave
    it, innermost first (inlined functions before the function they were inlined into), as
    `addr2line -f -i` and crash's `dis -rl` print them; `chain` is empty without debuginfo."""

    label: str  # "RIP" or "#N" (the call-trace position)
    frame: str  # func+off/size [module], "? " first for an unreliable entry
    chain: tuple[tuple[str, str], ...]  # (function, file:line)


def source_frames(signature: Mapping[str, Any] | None, fingerprint: str = "") -> tuple[SourceFrame, ...]:
    """The RIP and every call-trace frame of a signature document with their source chains;
    () when no entry has one (nothing was symbolized). Tolerant like `fault_view`."""
    crash = _pick_crash(signature, fingerprint)
    if crash is None:
        return ()
    out: list[SourceFrame] = []
    rip = crash.get("rip")
    rip_text = _rip_text(rip)
    if rip_text is not None:
        out.append(SourceFrame("RIP", rip_text, _chain(rip)))
    trace = crash.get("call_trace")
    for number, frame in enumerate(trace if isinstance(trace, list) else []):
        text = _rip_text(frame)
        if text is None:
            continue
        if isinstance(frame, Mapping) and frame.get("reliable") is False:
            text = "? " + text
        out.append(SourceFrame(f"#{number}", text, _chain(frame)))
    return tuple(out) if any(f.chain for f in out) else ()


def _chain(entry: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("source"), list):
        return ()
    chain = []
    for location in entry["source"]:
        if not isinstance(location, Mapping):
            continue
        function, file, line = _text(location.get("function")), _text(location.get("file")), location.get("line")
        where = file or "??"
        if isinstance(line, int) and not isinstance(line, bool) and line > 0:
            where += f":{line}"
        chain.append((function or "??", where))
    return tuple(chain)



def _display_document(detail: CrashDetail) -> dict[str, Any] | None:
    """The record the pages show: the collector's symbolized copy when it has one (it is the
    signed record plus source lines), else the record as signed."""
    return signature_document(detail.symbolized_json) or signature_document(detail.signature_json)



def _source_section(frames: Sequence[SourceFrame]) -> str:
    """The source chains as a table; "" when nothing was symbolized (the section is left out)."""
    return str(_macro("source_section")(frames))


# Page data -----------------------------------------------------------------------------------------


def _filter_params(flt: QueryFilter) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    if flt.since is not None:
        pairs.append(("since", _iso(flt.since)))
    if flt.until is not None:
        pairs.append(("until", _iso(flt.until)))
    for name in ("kernel_release", "host", "module", "kind", "hardware"):
        value = getattr(flt, name)
        if value:
            pairs.append((name, value))
    if flt.cluster_id:
        pairs.append(("cluster", flt.cluster_id))
    return pairs


def _pager(
    path: str, base: Iterable[tuple[str, str]], page: Page, next_token: str, default_size: int
) -> list[tuple[str, str, str]]:
    """(id, href, label) of the pager's links: back to the newest page, and on to older ones."""
    base = list(base)
    if page.size != default_size:
        base.append(("page_size", str(page.size)))
    links = []
    if page.token:
        links.append(("", path + ("?" + urlencode(base) if base else ""), "« Newest"))
    if next_token:
        links.append(("next-page", path + "?" + urlencode([*base, ("page_token", next_token)]), "Older »"))
    return links


# The cluster list's filter form: (parameter, label), in order. A new filter adds its row here.
FILTER_FORM: Final[tuple[tuple[str, str], ...]] = (
    ("kernel_release", "Kernel release"),
    ("host", "Host"),
    ("module", "Module"),
    ("kind", "Kind"),
    ("hardware", "Hardware"),
    ("since", "Since (UTC)"),
)


def _form_values(flt: QueryFilter) -> list[tuple[str, str, str]]:
    values = {
        "kernel_release": flt.kernel_release,
        "host": flt.host,
        "module": flt.module,
        "kind": flt.kind,
        "hardware": flt.hardware,
        "since": _iso(flt.since) if flt.since else None,
    }
    return [(name, label, values[name] or "") for name, label in FILTER_FORM]


# Pages ---------------------------------------------------------------------------------------------


def cluster_list_page(
    clusters: Sequence[ClusterSummary],
    flt: QueryFilter,
    page: Page,
    next_token: str,
    triage: Mapping[str, Triage] | None = None,
) -> str:
    """`/`: clusters by most recent activity, one row each with counts, sparkline, hosts, kernels,
    and the triage badge of those triaged (`regressed` stands out)."""
    filtered = any(
        v is not None
        for v in (flt.since, flt.until, flt.kernel_release, flt.host, flt.module, flt.kind, flt.hardware)
    )
    return render(
        "clusters.html",
        title="Crash clusters",
        clusters=list(clusters),
        triage=dict(triage or {}),
        filtered=filtered,
        form=_form_values(flt),
        pager=_pager("/", _filter_params(flt), page, next_token, LIST_PAGE_SIZE),
    )


@dataclass(frozen=True, slots=True)
class ClusterAnalytics:
    """The cluster page's fleet sections: its suspects, releases and regression window, triage,
    over the window [since, until)."""

    report: SuspectReport
    regression: RegressionWindow
    triage: Triage
    since: datetime
    until: datetime

    @property
    def findings(self) -> list[tuple[Suspect, list[Suspect]]]:
        """Each finding, strongest first, with the suspects it explains (as the CLI nests them):
        those worth listing first (collector.analytics.listing), pairs that add nothing last."""
        from collector.analytics.listing import worth_listing

        suspects = self.report.suspects
        worth = dict(zip(suspects, worth_listing([(s.attributes, s.explained_by) for s in suspects]), strict=True))
        return [
            (s, sorted((e for e in suspects if e.explained_by == s.attributes), key=lambda e: not worth[e]))
            for s in suspects
            if not s.explained_by
        ]


def cluster_page(
    detail: ClusterDetail,
    representative: CrashDetail | None,
    crashes: Sequence[CrashSummary],
    page: Page,
    next_token: str,
    analysis: ClusterAnalytics | None = None,
) -> str:
    """`/clusters/<id>`: what the bug is, where it hits, what is different about its hosts, the
    releases it was seen on and its triage (with a store that keeps analytics), every occurrence."""
    c = detail.summary
    fault: FaultView | None = None
    sources: tuple[SourceFrame, ...] = ()
    if representative is not None:
        shown = _display_document(representative)
        fault = fault_view(shown, representative.summary.fingerprint)
        sources = source_frames(shown, representative.summary.fingerprint)
    return render(
        "cluster.html",
        title=c.title or c.id,
        detail=detail,
        representative=representative,
        fault=fault,
        sources=sources,
        crashes=list(crashes),
        pager=_pager(f"/clusters/{_q(c.id)}", [], page, next_token, CRASH_PAGE_SIZE),
        analysis=analysis,
        actions=TRIAGE_ACTIONS,
        rate_dimensions=DIMENSIONS,
    )


def crash_page(detail: CrashDetail) -> str:
    """`/crashes/<id>`: one occurrence with its host facts, decoded fault and log excerpt."""
    s = detail.summary
    signature = signature_document(detail.signature_json)
    symbolized = signature_document(detail.symbolized_json)
    shown = symbolized or signature  # as _display_document, each JSON text parsed once
    return render(
        "crash.html",
        title=s.title or s.id,
        detail=detail,
        fault=fault_view(shown, s.fingerprint),
        sources=source_frames(shown, s.fingerprint),
        signature_text=_pretty(signature, detail.signature_json),
        symbolized_text=_pretty(symbolized, detail.symbolized_json) if detail.symbolized_json else "",
    )


def hosts_page(
    hosts: Sequence[HostSummary],
    flt: QueryFilter,
    page: Page,
    next_token: str,
    suspects: Sequence[BadHost] | None = None,
) -> str:
    """`/hosts`: the inventory from heartbeats, with each host's crash count; with analytics, the
    hardware suspects first (collector.analytics.badhosts) and a flag on their rows."""
    return render(
        "hosts.html",
        title="Hosts",
        hosts=list(hosts),
        suspects=None if suspects is None else list(suspects),
        flagged={b.host: b for b in suspects or ()},
        pager=_pager("/hosts", _filter_params(flt), page, next_token, LIST_PAGE_SIZE),
    )


# The rates page's dimension choices: the fixed dimensions; `label:KEY` is typed.
RATE_DIMENSIONS: Final = (*DIMENSIONS, LABEL_PREFIX + "KEY")
# The cluster page's triage buttons: (action, label).
TRIAGE_ACTIONS: Final = (("ack", "Acknowledge"), ("fixed", "Fixed in release"))


def rates_page(
    rows: Sequence[RateRow],
    dim: str | None,
    cluster: str | None,
    since: datetime,
    until: datetime,
    entered: Mapping[str, str],
) -> str:
    """`/rates`: crashes per 1,000 host-days by a dimension (or the fleet), chart and table."""
    return render(
        "rates.html",
        title="Crash rates",
        rows=list(rows),
        dim=dim or "",
        cluster=cluster or "",
        since=since,
        until=until,
        chart=rate_chart(rows, dim),
        chart_rows=min(len(rows), RATE_CHART_ROWS),
        dimensions=RATE_DIMENSIONS,
        entered={name: entered.get(name, "") for name in ("by", "cluster", "since", "until")},
    )


def error_page(status: HTTPStatus, message: str) -> str:
    return render("error.html", title=f"{status.value} {status.phrase}", status=status, message=message)


def login_page(presented: bool) -> str:
    return render("login.html", title="Unauthorized", presented=presented)


def _pretty(doc: Mapping[str, Any] | None, text: str) -> str:
    """`doc` indented, else `text` re-indented when it is JSON, else `text` as stored."""
    if doc is not None:
        return json.dumps(doc, indent=2, ensure_ascii=False)
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text
