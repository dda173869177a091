"""Helpers for the doctor's tests: run a diagnosis with short timeouts, certificates for fakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpgate.doctor import DoctorOptions, PortSpec, Report, diagnose
from tests.doctor.fakes import self_signed


def doctor(*ports: str, host: str = "127.0.0.1", **options: object) -> Report:
    """`smtpgate doctor` in-process, with short timeouts (tests never wait 15 s)."""
    settings: dict[str, object] = {"timeout": 2.0, "connect_timeout": 2.0, **options}
    return diagnose(DoctorOptions(host=host, ports=[PortSpec.parse(p) for p in ports], **settings))  # type: ignore[arg-type]


@pytest.fixture
def fake_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (trust it with cafile=its path)."""
    return self_signed(tmp_path / "fake-tls")
