"""[host] labels in the agent's config, hardware-error counts from the live log, and both in the
inventory a heartbeat sends."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent.config import ConfigError, config_from_json, config_to_json, load_config
from agent.hwcount import FILE_NAME, HardwareErrorFile, read_hardware_errors
from agent.kmsg import KmsgReader
from wire import convert


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n\n[host]\n{body}\n')
    return path


def test_labels_load_sorted_and_survive_the_trip_to_the_worker(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, 'labels = { role = "ci", rack = "r12" }'))
    assert config.labels == (("rack", "r12"), ("role", "ci"))
    assert config_from_json(config_to_json(config)).labels == config.labels
    assert load_config(_config(tmp_path, "")).labels == ()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('labels = "ci"', r"\[host\] labels: expected a table"),
        ('labels = { Role = "ci" }', r"'Role': key is not 1-32 of a-z 0-9 _"),
        ("labels = { role = 3 }", "role: expected a string, got int"),
        ('labels = { role = "' + "x" * 200 + '" }', "200 characters, more than 128"),
        ("labels = { " + ", ".join(f'k{i} = "v"' for i in range(33)) + " }", "33 labels, at most 32"),
    ],
)
def test_bad_labels_stop_the_agent_naming_file_key_and_reason(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(_config(tmp_path, body))
    assert str(tmp_path / "agent.toml") in str(info.value)


def test_kmsg_records_are_counted_into_the_state_file(tmp_path: Path) -> None:
    log = tmp_path / "kmsg"
    log.write_text(
        "6,100,5000000,-;EDAC MC0: 2 CE memory read error on DIMM_A1\n"
        "4,101,5000100,-;pcieport 0000:00:1c.0: AER: Corrected error received: 0000:03:00.0\n"
        "6,102,5000200,-;e1000e: eth0 NIC Link is Up\n"
    )
    counts = HardwareErrorFile(tmp_path)
    reader = KmsgReader(log, lambda block: None, quiet_seconds=0.05, on_record=counts.feed)
    reader.start()
    deadline = time.monotonic() + 10
    while reader.records < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    reader.stop()
    assert json.loads((tmp_path / FILE_NAME).read_text()) == {"aer_corrected": 1, "edac_ce": 2}
    assert read_hardware_errors(tmp_path) == (("aer_corrected", 1), ("edac_ce", 2))


def test_unreadable_or_hostile_count_files_send_nothing(tmp_path: Path) -> None:
    assert read_hardware_errors(tmp_path) == ()
    (tmp_path / FILE_NAME).write_text("[1, 2]")
    assert read_hardware_errors(tmp_path) == ()
    (tmp_path / FILE_NAME).write_text('{"edac_ce": 3, "made_up": 4, "mce": "x"}')
    assert read_hardware_errors(tmp_path) == (("edac_ce", 3),)


def test_inventory_carries_labels_and_counts_onto_the_wire() -> None:
    from agent.heartbeat import collect_inventory

    inventory = collect_inventory(
        "web-1", labels=(("role", "ci"),), hardware_errors=(("edac_ce", 2),), dmi_dir=Path("/nonexistent")
    )
    facts = convert.host_facts_to_proto(inventory)
    assert dict(facts.labels) == {"role": "ci"}
    assert [(e.kind, e.count) for e in facts.hardware_errors] == [("edac_ce", 2)]
    record = convert.host_record_from_proto(facts, "web-1")
    assert record.labels == (("role", "ci"),) and record.hardware_errors == (("edac_ce", 2),)
