"""Server-rendered HTML of the collector's web page: pure functions from query results to markup.

Every string that reaches the page came from a kernel log or an agent, i.e. from a machine an
attacker may control (a process name, a module name, a hostname). Everything interpolated goes
through `_e` (html.escape, quotes included) or `_q` (URL path quoting); the page carries no
script at all and its Content-Security-Policy (`CSP`) forbids scripts outright, so an escaping
slip still cannot run code. No external assets: the page works on an offline network.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import quote, urlencode

from wire.model import (
    Breakdown,
    ClusterDetail,
    ClusterSummary,
    CrashDetail,
    CrashSummary,
    HostSummary,
    Page,
    QueryFilter,
)

__all__ = [
    "CRASH_PAGE_SIZE",
    "CSP",
    "LIST_PAGE_SIZE",
    "FaultView",
    "SourceFrame",
    "cluster_list_page",
    "cluster_page",
    "crash_page",
    "error_page",
    "fault_view",
    "hosts_page",
    "login_page",
    "signature_document",
    "source_frames",
    "sparkline",
]

LIST_PAGE_SIZE: Final = 50
CRASH_PAGE_SIZE: Final = 25
SPARK_DAYS: Final = 14
MAX_INLINE_VALUES: Final = 3  # kernels/hardware shown in a list row before "+N more"

CSS: Final = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#f6f8fa;--card:#fff;--accent:#0969da;
--bad:#cf222e;--warn:#9a6700;--head:#24292f}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);background:var(--bg)}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
header.top{background:var(--head);color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
header.top .brand{color:#fff;font-weight:600;font-size:16px;letter-spacing:.3px}
header.top nav a{color:#d0d7de;margin-right:16px}header.top nav a:hover{color:#fff}
main{max-width:1280px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:20px;margin:4px 0 4px;word-break:break-word}
h2{font-size:15px;margin:28px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
.sub{color:var(--muted);margin:0 0 16px}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px}
pre{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:12px;overflow:auto;
max-height:480px;white-space:pre;margin:0}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line);border-radius:6px}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--bg);font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase;
letter-spacing:.4px;white-space:nowrap}
tr:last-child td{border-bottom:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.when{white-space:nowrap;color:var(--muted);font-variant-numeric:tabular-nums}
.frame{color:var(--muted);font-size:12px;margin-top:2px}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:11.5px;font-weight:600;
background:#ddf4ff;color:#0550ae;white-space:nowrap}
.badge.k-null-deref,.badge.k-paging-request,.badge.k-general-protection-fault,.badge.k-kernel-bug,
.badge.k-kasan,.badge.k-panic,.badge.k-double-fault,.badge.k-machine-check{background:#ffebe9;color:var(--bad)}
.badge.k-warning,.badge.k-soft-lockup,.badge.k-hung-task,.badge.k-rcu-stall,.badge.k-lockdep{background:#fff8c5;color:var(--warn)}
.more{color:var(--muted);font-size:12px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin:16px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px 12px}
.card .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.4px}
.card .value{font-size:18px;font-weight:600;margin-top:2px;font-variant-numeric:tabular-nums}
.card .value.small{font-size:13px;font-weight:500}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:16px}
.grid2>div{min-width:0}.grid2 table{table-layout:fixed}
.grid2 td.v{word-break:break-word}.grid2 td.n{width:56px}.grid2 td.b{width:96px}
.kernels{white-space:nowrap}
.grid2 h3{font-size:13px;margin:0 0 6px;color:var(--muted)}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:6px 16px;margin:0;background:var(--card);
border:1px solid var(--line);border-radius:6px;padding:12px}
dl.kv dt{color:var(--muted)}dl.kv dd{margin:0;word-break:break-word}
.verdict{font-weight:600;color:var(--bad)}
.note{color:var(--muted);font-style:italic}
form.filters{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 14px;align-items:end}
form.filters label{display:flex;flex-direction:column;font-size:11.5px;color:var(--muted)}
form.filters input{font:inherit;padding:4px 6px;border:1px solid var(--line);border-radius:4px;width:150px}
form.filters button{font:inherit;padding:5px 12px;border:1px solid var(--line);border-radius:4px;
background:var(--card);cursor:pointer}
.pager{margin:12px 0;display:flex;gap:16px}
svg.spark rect.d{fill:var(--accent)}svg.spark rect.z{fill:var(--line)}
svg.bar rect.b{fill:var(--accent)}svg.bar rect.t{fill:var(--bg)}
details summary{cursor:pointer;color:var(--accent);margin:8px 0}
ol.chain{margin:0;padding-left:18px}ol.chain li{word-break:break-word}ol.chain .loc{color:var(--muted)}
.empty{padding:24px;text-align:center;color:var(--muted);background:var(--card);border:1px solid var(--line);
border-radius:6px}
""".strip()

_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CSP: Final = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""No scripts, only the page's own stylesheet (pinned by hash), forms only to this server."""


# Escaping and small formatters -------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _q(segment: str) -> str:
    """One URL path segment (an id) quoted so it cannot change the route or break the attribute."""
    return quote(segment, safe="")


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


def _time(ts: datetime | None) -> str:
    return f'<time datetime="{_e(_iso(ts))}">{_e(_when(ts))}</time>' if ts is not None else "—"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _badge(kind: str) -> str:
    # The class name is restricted to [a-z-] so a hostile kind cannot smuggle attributes.
    cls = "".join(ch for ch in kind.lower() if ch.isascii() and (ch.isalpha() or ch == "-"))
    return f'<span class="badge k-{cls}">{_e(kind or "unknown")}</span>'


def _inline_list(values: Sequence[str], limit: int = MAX_INLINE_VALUES) -> str:
    if not values:
        return '<span class="more">—</span>'
    shown = "<br>".join(f'<span class="mono">{_e(v)}</span>' for v in values[:limit])
    rest = len(values) - limit
    return shown + (f'<br><span class="more">+{rest} more</span>' if rest > 0 else "")


def sparkline(counts: Sequence[int], *, bar: int = 5, gap: int = 2, height: int = 24) -> str:
    """Inline SVG bars of daily counts, oldest first; zero days show as a thin grey baseline."""
    days = list(counts)[-SPARK_DAYS:]
    if not days:
        days = [0] * SPARK_DAYS
    peak = max(max(days), 1)
    width = len(days) * (bar + gap) - gap
    label = f"crashes per day, last {len(days)} days: {', '.join(str(c) for c in days)}"
    rects = []
    for i, count in enumerate(days):
        x = i * (bar + gap)
        if count > 0:
            h = max(2, round(count / peak * (height - 1)))
            rects.append(f'<rect class="d" x="{x}" y="{height - h}" width="{bar}" height="{h}"/>')
        else:
            rects.append(f'<rect class="z" x="{x}" y="{height - 1}" width="{bar}" height="1"/>')
    return (
        f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}" '
        f'data-counts="{_e(",".join(str(c) for c in days))}"><title>{_e(label)}</title>{"".join(rects)}</svg>'
    )


def _bar(count: int, peak: int, width: int = 80, height: int = 10) -> str:
    w = 0 if peak <= 0 else max(1, round(count / peak * width))
    return (
        f'<svg class="bar" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" aria-hidden="true">'
        f'<rect class="t" width="{width}" height="{height}" rx="2"/><rect class="b" width="{w}" height="{height}" rx="2"/></svg>'
    )


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


def _source_section(frames: Sequence[SourceFrame]) -> str:
    """The source chains as a table; "" when nothing was symbolized (the section is left out)."""
    if not frames:
        return ""
    rows = []
    for f in frames:
        if f.chain:
            items = "".join(
                f'<li><code class="fn">{_e(function)}</code> <span class="mono loc">{_e(where)}</span></li>'
                for function, where in f.chain
            )
            chain = f'<ol class="chain">{items}</ol>'
        else:
            chain = '<span class="note">no source line</span>'
        rows.append(f'<tr><td class="mono">{_e(f.label)}</td><td><code>{_e(f.frame)}</code></td><td>{chain}</td></tr>')
    return (
        '<h2>Source <span class="more">(debuginfo; inline chains innermost first)</span></h2>'
        '<table id="source-chains"><thead><tr><th></th><th>Frame</th><th>Source chain</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _display_document(detail: CrashDetail) -> dict[str, Any] | None:
    """The record the pages show: the collector's symbolized copy when it has one (it is the
    signed record plus source lines), else the record as signed."""
    return signature_document(detail.symbolized_json) or signature_document(detail.signature_json)


def _fault_section(view: FaultView | None, heading: str = "Faulting instruction") -> str:
    if view is None:
        return (
            f'<h2>{_e(heading)}</h2><p class="note" id="fault-missing">The crash record has no decoded '
            "instruction (no RIP or <code>Code:</code> line in the log).</p>"
        )
    rows: list[tuple[str, str, str]] = []
    if view.rip:
        where = f' <span class="more">{_e(view.source)}</span>' if view.source else ""
        rows.append(("RIP", "fault-rip", f"<code>{_e(view.rip)}</code>{where}"))
    if view.instruction:
        rows.append(("Instruction", "fault-instruction", f"<code>{_e(view.instruction)}</code>"))
    if view.bad_register:
        value = f" = <code>{_e(view.bad_register_value)}</code>" if view.bad_register_value else ""
        rows.append(("Bad register", "fault-register", f"<code>{_e(view.bad_register)}</code>{value}"))
    if view.fault_address:
        op = f" ({_e(view.operation)})" if view.operation else ""
        rows.append(("Fault address", "fault-address", f"<code>{_e(view.fault_address)}</code>{op}"))
    if view.verdict:
        rows.append(("Verdict", "fault-verdict", f'<span class="verdict">{_e(view.verdict)}</span>'))
    if view.decode_error:
        rows.append(("Decode", "fault-error", f'<span class="note">{_e(view.decode_error)}</span>'))
    body = "".join(f'<dt>{label}</dt><dd id="{ident}">{value}</dd>' for label, ident, value in rows)
    return f'<h2>{_e(heading)}</h2><dl class="kv" id="fault">{body}</dl>'


# Page frame ----------------------------------------------------------------------------------------


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{_e(title)} · crashfleet</title>'
        f"<style>{CSS}</style></head><body>"
        '<header class="top"><a class="brand" href="/">crashfleet</a>'
        '<nav><a href="/">Clusters</a><a href="/hosts">Hosts</a></nav></header>'
        f"<main>{body}</main></body></html>"
    )


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


def _pager(path: str, base: Iterable[tuple[str, str]], page: Page, next_token: str, default_size: int) -> str:
    base = list(base)
    if page.size != default_size:
        base.append(("page_size", str(page.size)))
    links = []
    if page.token:
        links.append(f'<a href="{_e(path + ("?" + urlencode(base) if base else ""))}">« Newest</a>')
    if next_token:
        links.append(
            f'<a id="next-page" href="{_e(path + "?" + urlencode([*base, ("page_token", next_token)]))}">Older »</a>'
        )
    return f'<div class="pager">{"".join(links)}</div>' if links else ""


def _filter_form(flt: QueryFilter) -> str:
    fields = (
        ("kernel_release", "Kernel release", flt.kernel_release),
        ("host", "Host", flt.host),
        ("module", "Module", flt.module),
        ("kind", "Kind", flt.kind),
        ("hardware", "Hardware", flt.hardware),
        ("since", "Since (UTC)", _iso(flt.since) if flt.since else None),
    )
    inputs = "".join(
        f'<label>{_e(label)}<input name="{name}" value="{_e(value or "")}"></label>'
        for name, label, value in fields
    )
    return (
        f'<form class="filters" method="get" action="/">{inputs}<button type="submit">Filter</button></form>'
    )


# Pages ---------------------------------------------------------------------------------------------


def cluster_list_page(
    clusters: Sequence[ClusterSummary], flt: QueryFilter, page: Page, next_token: str
) -> str:
    """`/`: clusters by most recent activity, one row each with counts, sparkline, hosts, kernels."""
    rows = []
    for c in clusters:
        frame = f'<div class="frame mono">{_e(c.guilty_frame)}</div>' if c.guilty_frame else ""
        rows.append(
            f'<tr class="cluster" data-cluster-id="{_e(c.id)}">'
            f'<td><a class="title" href="/clusters/{_e(_q(c.id))}">{_e(c.title or "(untitled)")}</a>{frame}</td>'
            f"<td>{_badge(c.kind)}</td>"
            f'<td class="num count">{c.count}</td>'
            f'<td class="num hosts">{c.hosts}</td>'
            f"<td>{sparkline(c.daily_counts)}</td>"
            f'<td class="kernels">{_inline_list(c.kernel_releases)}</td>'
            f'<td class="when">{_time(c.first_seen)}</td>'
            f'<td class="when">{_time(c.last_seen)}</td></tr>'
        )
    if rows:
        table = (
            '<table id="clusters"><thead><tr><th>Cluster</th><th>Kind</th><th class="num">Crashes</th>'
            '<th class="num">Hosts</th><th>Last 14 days</th><th>Kernels</th><th>First seen</th>'
            f"<th>Last seen</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    else:
        table = '<div class="empty" id="no-clusters">No crash clusters match.</div>'
    filtered = any(
        v is not None
        for v in (flt.since, flt.until, flt.kernel_release, flt.host, flt.module, flt.kind, flt.hardware)
    )
    sub = (
        f"{len(clusters)} cluster{'s' if len(clusters) != 1 else ''} on this page, most recent activity first"
    )
    if filtered:
        sub += ' · <a href="/">clear filters</a>'
    body = (
        f'<h1>Crash clusters</h1><p class="sub">{sub}</p>{_filter_form(flt)}{table}'
        f"{_pager('/', _filter_params(flt), page, next_token, LIST_PAGE_SIZE)}"
    )
    return _page("Crash clusters", body)


def _breakdown_table(ident: str, heading: str, items: Sequence[Breakdown], link: str | None = None) -> str:
    if not items:
        return f'<div><h3>{_e(heading)}</h3><p class="note">none recorded</p></div>'
    peak = max(b.count for b in items)
    rows = []
    for b in items:
        value = f'<span class="mono">{_e(b.value or "(unknown)")}</span>'
        if link and b.value:
            value = f'<a href="{_e("/?" + urlencode([(link, b.value)]))}">{value}</a>'
        rows.append(
            f'<tr><td class="v">{value}</td><td class="num n">{b.count}</td><td class="b">{_bar(b.count, peak)}</td></tr>'
        )
    return f'<div><h3>{_e(heading)}</h3><table id="{ident}"><tbody>{"".join(rows)}</tbody></table></div>'


def _crash_rows(crashes: Sequence[CrashSummary], with_cluster: bool = False) -> str:
    rows = []
    for c in crashes:
        cluster = (
            f'<td class="mono"><a href="/clusters/{_e(_q(c.cluster_id))}">{_e(c.cluster_id)}</a></td>'
            if with_cluster
            else ""
        )
        rows.append(
            f'<tr class="crash" data-crash-id="{_e(c.id)}">'
            f'<td class="when"><a href="/crashes/{_e(_q(c.id))}">{_time(c.received_at)}</a></td>'
            f'<td class="mono">{_e(c.host)}</td><td class="mono kernels">{_e(c.kernel_release or "—")}</td>'
            f"{cluster}"
            f'<td class="mono">{_e(c.source)}</td><td class="when">{_time(c.crash_time)}</td></tr>'
        )
    cluster_head = "<th>Cluster</th>" if with_cluster else ""
    return (
        '<table id="crashes"><thead><tr><th>Received</th><th>Host</th><th>Kernel</th>'
        f"{cluster_head}<th>Source</th><th>Crash time</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def cluster_page(
    detail: ClusterDetail,
    representative: CrashDetail | None,
    crashes: Sequence[CrashSummary],
    page: Page,
    next_token: str,
) -> str:
    """`/clusters/<id>`: what the bug is, where it hits, and every occurrence."""
    c = detail.summary
    frame = f" in <code>{_e(c.guilty_frame)}</code>" if c.guilty_frame else ""
    cards = (
        f'<div class="card"><div class="label">Crashes</div><div class="value" id="stat-count">{c.count}</div></div>'
        f'<div class="card"><div class="label">Hosts</div><div class="value" id="stat-hosts">{c.hosts}</div></div>'
        f'<div class="card"><div class="label">First seen</div><div class="value small">{_time(c.first_seen)}</div></div>'
        f'<div class="card"><div class="label">Last seen</div><div class="value small">{_time(c.last_seen)}</div></div>'
        f'<div class="card"><div class="label">Last 14 days</div><div class="value">{sparkline(c.daily_counts, bar=7, height=28)}</div></div>'
    )
    sources = ""
    if representative is not None:
        shown = _display_document(representative)
        view = fault_view(shown, representative.summary.fingerprint)
        sources = _source_section(source_frames(shown, representative.summary.fingerprint))
        rep_link = (
            f'<a href="/crashes/{_e(_q(representative.summary.id))}">{_e(representative.summary.host)}</a>'
        )
        excerpt = (
            f'<h2>Representative oops <span class="more">from {rep_link}, '
            f"{_time(representative.summary.received_at)}</span></h2>"
            f'<pre id="excerpt">{_e(representative.excerpt)}</pre>'
        )
        fault = _fault_section(view)
    else:
        excerpt = '<h2>Representative oops</h2><p class="note">The representative crash is not stored.</p>'
        fault = _fault_section(None)
    common = (
        f"<p>Modules loaded in every crash: {', '.join(f'<code>{_e(m)}</code>' for m in c.common_modules)}</p>"
        if c.common_modules
        else ""
    )
    breakdowns = (
        '<h2>Where it hits</h2><div class="grid2">'
        f"{_breakdown_table('by-host', 'Hosts', detail.by_host, 'host')}"
        f"{_breakdown_table('by-kernel', 'Kernel releases', detail.by_kernel_release, 'kernel_release')}"
        f"{_breakdown_table('by-hardware', 'Hardware', detail.by_hardware, 'hardware')}"
        f"{_breakdown_table('by-module', 'Modules', detail.by_module, 'module')}"
        f"</div>{common}"
    )
    crash_list = (
        f'<h2>Crashes <span class="more">({c.count} total)</span></h2>'
        + (_crash_rows(crashes) if crashes else '<p class="note">No crashes stored.</p>')
        + _pager(f"/clusters/{_q(c.id)}", [], page, next_token, CRASH_PAGE_SIZE)
    )
    fingerprints = "".join(f"<li><code>{_e(fp)}</code></li>" for fp in detail.fingerprints)
    fp_section = (
        f"<details><summary>{len(detail.fingerprints)} fingerprint(s) in this cluster</summary><ul>{fingerprints}</ul></details>"
        if detail.fingerprints
        else ""
    )
    body = (
        f'<h1 id="cluster-title">{_e(c.title or "(untitled)")}</h1>'
        f'<p class="sub">{_badge(c.kind)} cluster <code>{_e(c.id)}</code>{frame}</p>'
        f'<div class="cards">{cards}</div>{fault}{sources}{excerpt}{breakdowns}{crash_list}{fp_section}'
    )
    return _page(c.title or c.id, body)


def crash_page(detail: CrashDetail) -> str:
    """`/crashes/<id>`: one occurrence with its host facts, decoded fault and log excerpt."""
    s = detail.summary
    signature = signature_document(detail.signature_json)
    symbolized_doc = signature_document(detail.symbolized_json)
    shown = symbolized_doc or signature  # as _display_document, each JSON text parsed once
    facts = [
        ("Cluster", f'<a href="/clusters/{_e(_q(s.cluster_id))}"><code>{_e(s.cluster_id)}</code></a>'),
        ("Host", f'<a href="{_e("/?" + urlencode([("host", s.host)]))}"><code>{_e(s.host)}</code></a>'),
        ("Kind", _badge(s.kind)),
        ("Kernel", f"<code>{_e(s.kernel_release or '—')}</code>"),
        ("Hardware", _e(s.hardware or "—")),
        ("Source", f"<code>{_e(s.source)}</code>"),
        ("Crash time", _time(s.crash_time)),
        ("Received", _time(s.received_at)),
        ("Guilty frame", f"<code>{_e(s.guilty_frame or '—')}</code>"),
        ("Fingerprint", f"<code>{_e(s.fingerprint)}</code>"),
    ]
    facts_html = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in facts)
    host_facts = "".join(
        f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in sorted(detail.host_facts.items())
    )
    modules = (
        ", ".join(f"<code>{_e(m)}</code>" for m in detail.modules) or '<span class="note">none listed</span>'
    )
    symbolized = (
        f'<details><summary>Source lines (symbolized)</summary><pre id="symbolized">{_e(_pretty(symbolized_doc, detail.symbolized_json))}</pre></details>'
        if detail.symbolized_json
        else ""
    )
    body = (
        f'<h1 id="crash-title">{_e(s.title or "(untitled)")}</h1>'
        f'<p class="sub">crash <code>{_e(s.id)}</code></p>'
        f'<dl class="kv" id="crash-facts">{facts_html}</dl>'
        f"{_fault_section(fault_view(shown, s.fingerprint))}"
        f"{_source_section(source_frames(shown, s.fingerprint))}"
        f'<h2>Log excerpt</h2><pre id="excerpt">{_e(detail.excerpt)}</pre>'
        f'<h2>Loaded modules</h2><p id="modules">{modules}</p>'
        + (f'<h2>Host facts</h2><dl class="kv" id="host-facts">{host_facts}</dl>' if host_facts else "")
        + symbolized
        + f'<details><summary>Signature (JSON)</summary><pre id="signature">{_e(_pretty(signature, detail.signature_json))}</pre></details>'
    )
    return _page(s.title or s.id, body)


def hosts_page(hosts: Sequence[HostSummary], flt: QueryFilter, page: Page, next_token: str) -> str:
    """`/hosts`: the inventory from heartbeats, with each host's crash count."""
    rows = []
    for h in hosts:
        crashes = (
            f'<a href="{_e("/?" + urlencode([("host", h.hostname)]))}">{h.crashes}</a>' if h.crashes else "0"
        )
        rows.append(
            f'<tr class="host"><td class="mono">{_e(h.hostname)}</td><td class="mono kernels">{_e(h.kernel_release)}</td>'
            f'<td>{_e(h.machine)}</td><td>{_e(h.hardware)}</td><td class="num">{h.cpus}</td>'
            f'<td class="num">{_e(_bytes(h.memory_bytes))}</td><td class="mono">{_e(h.agent_version)}</td>'
            f'<td class="when">{_time(h.last_heartbeat)}</td><td class="num">{crashes}</td></tr>'
        )
    table = (
        '<table id="hosts"><thead><tr><th>Host</th><th>Kernel</th><th>Machine</th><th>Hardware</th>'
        '<th class="num">CPUs</th><th class="num">Memory</th><th>Agent</th><th>Last heartbeat</th>'
        f'<th class="num">Crashes</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
        if rows
        else '<div class="empty">No hosts have sent a heartbeat.</div>'
    )
    body = (
        f'<h1>Hosts</h1><p class="sub">{len(hosts)} host{"s" if len(hosts) != 1 else ""} on this page</p>{table}'
        f"{_pager('/hosts', _filter_params(flt), page, next_token, LIST_PAGE_SIZE)}"
    )
    return _page("Hosts", body)


def error_page(status: HTTPStatus, message: str) -> str:
    body = f'<h1>{status.value} {_e(status.phrase)}</h1><p class="sub" id="error">{_e(message)}</p><p><a href="/">All clusters</a></p>'
    return _page(f"{status.value} {status.phrase}", body)


def login_page(presented: bool) -> str:
    reason = "The token given is not valid." if presented else "This collector requires a bearer token."
    body = (
        f'<h1>401 Unauthorized</h1><p class="sub" id="error">{reason}</p>'
        "<p>Open this page once with <code>?token=&lt;token&gt;</code> appended to the address; the "
        "browser then keeps it in a cookie. API clients send <code>Authorization: Bearer &lt;token&gt;</code>.</p>"
    )
    return _page("Unauthorized", body)


def _pretty(doc: Mapping[str, Any] | None, text: str) -> str:
    """`doc` indented, else `text` re-indented when it is JSON, else `text` as stored."""
    if doc is not None:
        return json.dumps(doc, indent=2, ensure_ascii=False)
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text
