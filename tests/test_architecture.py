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


SANS_IO = {"sasl", "protocol", "proxy", "replies", "events", "syntax", "body"}  # the protocol and its parts


@pytest.mark.parametrize("module", [*(f"smtp/{m}.py" for m in sorted(SANS_IO)), "pools.py"])
def test_protocol_imports_nothing_of_ours(module: str) -> None:
    names = imports_of(SRC / module)
    ours = [n for n in names if n.startswith("smtpgate") or (n.startswith(".") and n.lstrip(".") not in SANS_IO)]
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


# ------------------------------------------------------------ the allow-list

DOC = Path(__file__).parents[1] / "docs" / "architecture.md"


def _unit(module: str) -> str | None:
    """The row of the table a module belongs to: `credentials`, `smtp.session`, `config`..."""
    parts = module.split(".")
    if parts[0] != "smtpgate" or len(parts) == 1:
        return None
    if parts[1] == "smtp":
        return f"smtp.{parts[2]}" if len(parts) > 2 else "smtp"
    return parts[1]


def _module_name(path: Path) -> str:
    parts = ("smtpgate", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(path: Path, name: str) -> str:
    if not name.startswith("."):
        return name
    level = len(name) - len(name.lstrip("."))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - level + 1]
    rest = name.lstrip(".")
    return ".".join(base + ([rest] if rest else []))


def allow_list() -> dict[str, set[str]]:
    """docs/architecture.md's table: each row's units and what they may use."""
    import re

    rules: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3:
            continue
        may = set() if cells[2] == "nothing of ours" else set(re.findall(r"`([a-z_.]+)`", cells[2]))
        for name in re.findall(r"`([a-z_./]+)`", cells[0]):
            unit = name.removesuffix("/__init__.py").removesuffix("/").removesuffix(".py").replace("/", ".")
            rules[unit] = may
    return rules


def test_every_import_is_on_the_allow_list_of_docs_architecture() -> None:
    rules = allow_list()
    assert {"ops", "credentials", "cli", "admin", "smtp.protocol"} <= rules.keys()
    problems = []
    for path in SRC.rglob("*.py"):
        unit = _unit(_module_name(path))
        if unit is None:
            continue
        if unit not in rules:
            problems.append(f"{path.relative_to(SRC)}: no row of docs/architecture.md covers {unit}")
            continue
        for name in imports_of(path):
            used = _unit(_absolute(path, name))
            if used is not None and used != unit and used not in rules[unit]:
                problems.append(f"{path.relative_to(SRC)} imports {used}, which {unit} may not use")
    assert not problems, "\n".join(problems)


def test_the_allow_list_check_catches_a_forbidden_import() -> None:
    rules = allow_list()
    assert "store" not in rules["cli"] and "store" not in rules["admin"]
    assert _unit(_absolute(SRC / "cli" / "queue.py", "..store.db")) == "store"
    assert "cli" not in rules["credentials"] and rules["smtp.sasl"] == set()


def test_every_admin_router_is_listed() -> None:
    """Routes are listed explicitly (the CLI's command table is checked by tests/cli/test_lazy.py)."""
    app_text = (SRC / "admin" / "app.py").read_text()
    for path in (SRC / "admin").glob("*.py"):
        if "router = APIRouter" in path.read_text():
            assert f"{path.stem}.router" in app_text, f"admin/{path.name} has a router that app.py does not mount"
    api_text = (SRC / "admin" / "api" / "__init__.py").read_text()
    for path in (SRC / "admin" / "api").glob("*.py"):
        if "router = APIRouter" in path.read_text() and path.stem not in ("docs", "__init__"):
            assert path.stem in api_text, f"admin/api/{path.name} has a router that is not included"


def test_the_audit_keeps_no_copy_of_the_credentials_failure_reasons() -> None:
    from smtpgate.audit import events
    from smtpgate.credentials import FailureReason

    copies = {name for name, value in vars(events).items() if isinstance(value, str) and value in set(FailureReason)}
    assert not copies, f"audit/events.py copies FailureReason values: {copies}"
    assert "FailureReason" in (SRC / "audit" / "anomaly.py").read_text()
