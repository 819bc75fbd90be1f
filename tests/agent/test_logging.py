"""Journald-friendly logging: `<N>` priority prefixes and no timestamps when stderr is the journal."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from agent.logs import JournalFormatter, configure_logging, under_journald


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("agent.test", level, __file__, 1, message, None, None)


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.DEBUG, "<7>"),
        (logging.INFO, "<6>"),
        (logging.WARNING, "<4>"),
        (logging.ERROR, "<3>"),
        (logging.CRITICAL, "<2>"),
    ],
)
def test_priority_prefix_per_level(level: int, prefix: str) -> None:
    text = JournalFormatter("%(name)s: %(message)s").format(record(level, "spool dropped count=1"))
    assert text == f"{prefix}agent.test: spool dropped count=1"


def test_every_line_of_a_multiline_message_is_prefixed() -> None:
    text = JournalFormatter("%(message)s").format(record(logging.ERROR, "first\nsecond"))
    assert text.splitlines() == ["<3>first", "<3>second"]


def test_journal_stream_must_name_stderr() -> None:
    st = os.fstat(sys.stderr.fileno())
    assert under_journald({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert not under_journald({"JOURNAL_STREAM": "1:2"})
    assert not under_journald({"JOURNAL_STREAM": "garbage"})
    assert not under_journald({})


def test_configure_logging_picks_the_format() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        st = os.fstat(sys.stderr.fileno())
        configure_logging("warning", {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert isinstance(root.handlers[0].formatter, JournalFormatter)
        assert root.level == logging.WARNING
        configure_logging("info", {})
        formatter = root.handlers[0].formatter
        assert formatter is not None and "%(asctime)s" in (formatter._fmt or "")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
