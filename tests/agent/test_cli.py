"""`crashfleet agent` start-up: configuration and mTLS mistakes are clear errors before anything runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from crashfleet.cli import main


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed; cannot make test certificates")
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=host-1",
        "-keyout",
        str(d / "host.key"),
        "-out",
        str(d / "host.csr"),
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(d / "host.csr"),
        "-CA",
        str(d / "ca.pem"),
        "-CAkey",
        str(d / "ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        str(d / "host.pem"),
    )
    openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(d / "other.key")
    )
    (d / "garbage.pem").write_text("not a certificate\n")
    return d


def run_agent(tmp_path: Path, collector: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    config = tmp_path / "agent.toml"
    config.write_text(f'[collector]\naddress = "127.0.0.1:7443"\n{collector}\n[kmsg]\nenabled = false\n')
    rc = main(["agent", "--config", str(config), "--state-dir", str(tmp_path / "state"), "--check-config"])
    return rc, capsys.readouterr().err


def test_good_mtls_files_pass(tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run_agent(
        tmp_path, f'ca = "{pki}/ca.pem"\ncert = "{pki}/host.pem"\nkey = "{pki}/host.key"', capsys
    )
    assert (rc, err) == (0, "")


@pytest.mark.parametrize(
    ("collector", "message"),
    [
        ('ca = "{pki}/absent.pem"', "[collector] ca: {pki}/absent.pem is not a readable file"),
        ('ca = "{pki}/garbage.pem"', "[collector] ca: {pki}/garbage.pem: not a PEM file"),
        (
            'ca = "{pki}/ca.pem"\ncert = "{pki}/host.pem"\nkey = "{pki}/other.key"',
            "[collector] key: {pki}/other.key: the key does not match the certificate",
        ),
        (
            'ca = "{pki}/ca.pem"\ncert = "{pki}/garbage.pem"\nkey = "{pki}/host.key"',
            "[collector] cert: {pki}/garbage.pem: not a PEM file",
        ),
        ('cert = "{pki}/host.pem"\nkey = "{pki}/host.key"', "a client cert needs the ca"),
        ('token_file = "{pki}/empty-token"', "token file is empty"),
    ],
)
def test_bad_mtls_files_are_a_clear_startup_error(
    tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str], collector: str, message: str
) -> None:
    (pki / "empty-token").write_text("\n")
    rc, err = run_agent(tmp_path, collector.format(pki=pki), capsys)
    assert rc == 2
    assert err.startswith("crashfleet agent: configuration error: ")
    assert message.format(pki=pki) in err


def test_bad_collector_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "--collector", "nohost", "--check-config"]) == 2
    assert "--collector: 'nohost' is not HOST:PORT" in capsys.readouterr().err


def test_unknown_config_key_is_a_startup_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("[watch]\nsettle_secs = 1\n")
    assert main(["agent", "--config", str(config), "--check-config"]) == 2
    assert "[watch] unknown key 'settle_secs'" in capsys.readouterr().err
