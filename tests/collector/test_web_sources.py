"""The source view of the cluster and crash pages (collector.web.source_frames): chains innermost
first, tolerant of malformed documents, every value escaped."""

from __future__ import annotations

from typing import Any

import pytest

from collector.web import SourceFrame, _source_section, source_frames


def _doc(rip: Any, trace: Any) -> dict[str, Any]:
    return {"kind": "bug", "fingerprint_frames": [], "rip": rip, "call_trace": trace}


def test_chains_innermost_first_with_unreliable_and_unsymbolized_frames() -> None:
    doc = _doc(
        {"function": "walk", "offset": 9, "size": 64, "module": None,
         "source": [{"function": "node_empty", "file": "helpers.h", "line": 12},
                    {"function": "walk", "file": "walk.c", "line": 11}]},
        [{"function": "main", "offset": 64, "reliable": True, "source": [{"function": "main", "file": "main.c", "line": 0}]},
         {"function": "guess", "offset": 1, "module": "mod", "reliable": False}],
    )  # fmt: skip
    assert source_frames(doc) == (
        SourceFrame("RIP", "walk+0x9/0x40", (("node_empty", "helpers.h:12"), ("walk", "walk.c:11"))),
        SourceFrame("#0", "main+0x40", (("main", "main.c"),)),  # line 0: unknown, not printed
        SourceFrame("#1", "? guess+0x1 [mod]", ()),
    )


@pytest.mark.parametrize(
    "doc",
    [
        None,
        {},
        _doc(None, None),
        _doc("walk+0x9", "not a list"),
        _doc({"function": "walk"}, [{"function": "main"}]),  # nothing symbolized: no section at all
        _doc({"function": "walk", "source": "walk.c:11"}, [None, 3, {"source": [{"file": "x.c"}]}]),
    ],
    ids=["none", "empty", "nulls", "strings", "unsymbolized", "garbage"],
)
def test_malformed_or_unsymbolized_documents_show_no_source_section(doc: Any) -> None:
    assert source_frames(doc) == ()
    assert _source_section(source_frames(doc)) == ""


def test_hostile_values_are_escaped_and_junk_locations_tolerated() -> None:
    doc = _doc(
        {"function": "<script>", "source": [{"function": "<b>", "file": "\"'&.c", "line": True}, "junk",
                                            {"function": 5, "file": None, "line": "7"}]},
        [],
    )  # fmt: skip
    frames = source_frames(doc)
    assert frames == (SourceFrame("RIP", "<script>", (("<b>", "\"'&.c"), ("??", "??"))),)
    html = _source_section(frames)
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "&#34;&#39;&amp;.c" in html  # markupsafe's entities
