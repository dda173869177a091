"""The arrows of docs/architecture.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "smtpgate"
FACES = ("smtpgate.smtp", "smtpgate.admin", "smtpgate.cli")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.add("." * node.level + (node.module or ""))
            elif node.module:
                found.add(node.module)
    return found


@pytest.mark.parametrize("package", ["credentials", "guard", "audit", "delivery", "deliverability", "mailauth", "store", "backup"])
def test_core_packages_never_import_the_faces(package: str) -> None:
    for path in (SRC / package).rglob("*.py"):
        bad = [name for name in imports_of(path) if name.startswith(FACES)]
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


@pytest.mark.parametrize("module", ["smtp/protocol.py", "smtp/sasl.py", "smtp/proxy.py", "pools.py"])
def test_protocol_imports_nothing_of_ours(module: str) -> None:
    names = imports_of(SRC / module)
    ours = [n for n in names if n.startswith("smtpgate") or (n.startswith(".") and n.lstrip(".") not in {"sasl", "protocol", "proxy"})]
    assert not ours, ours


def test_only_the_credential_service_touches_credential_rows() -> None:
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(("credentials/", "store/")):
            continue
        assert "CredentialRow" not in path.read_text(), f"{rel} uses CredentialRow"


def test_doctor_is_a_client_of_any_server() -> None:
    for path in (SRC / "doctor").rglob("*.py"):
        bad = [n for n in imports_of(path) if n.startswith(("smtpgate.smtp", "smtpgate.credentials", "smtpgate.store",
                                                             "smtpgate.delivery", "smtpgate.config", "smtpgate.runtime",
                                                             "smtpgate.audit", "smtpgate.guard"))]
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_mail_authentication_records_are_neutral() -> None:
    """SPF, DKIM and DMARC are judged by one code, for the doctor and the server alike: it knows neither."""
    for path in (SRC / "mailauth").rglob("*.py"):
        bad = [n for n in imports_of(path) if n.startswith("smtpgate") and not n.startswith("smtpgate.mailauth")]
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_the_wire_never_imports_the_other_faces() -> None:
    for path in (SRC / "smtp").rglob("*.py"):
        bad = [n for n in imports_of(path) if n.startswith(("smtpgate.admin", "smtpgate.cli"))]
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"
