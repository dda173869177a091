"""Accounts brought from the server users leave: Dovecot passwd-files and CSV.

Reading is separate from importing: the readers turn a file into numbered records or
problems (a bad line never stops the rest), and `import_records` hands each record to
the credential service, which alone creates accounts. `--dry-run` runs the same path
without writing, so its report is what a real run will do.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smtpgate.credentials.errors import CredentialError
from smtpgate.credentials.imported_hashes import UnsupportedHash, normalise, scheme_of

if TYPE_CHECKING:
    from smtpgate.credentials.service import CredentialService

__all__ = ["ImportRecord", "ImportProblem", "ImportReport", "read_dovecot_passwd", "read_csv", "import_records"]

LOGIN_COLUMNS = ("login", "email", "user", "username")
HASH_COLUMNS = ("hash", "password_hash", "crypt")
PASSWORD_COLUMNS = ("password",)


@dataclass(frozen=True)
class ImportRecord:
    line: int
    login: str
    stored_hash: str          # "{SCHEME}value", or "" when the file held a plaintext password
    password: str | None = field(default=None, repr=False)

    @property
    def scheme(self) -> str:
        return scheme_of(self.stored_hash) or "PLAIN"


@dataclass(frozen=True)
class ImportProblem:
    line: int
    reason: str
    login: str = ""


@dataclass
class ImportReport:
    dry_run: bool
    created: list[ImportRecord] = field(default_factory=list)
    existing: list[ImportRecord] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def rec(r: ImportRecord) -> dict[str, Any]:
            return {"line": r.line, "login": r.login, "scheme": r.scheme}
        return {
            "dry_run": self.dry_run,
            "created": [rec(r) for r in self.created],
            "existing": [rec(r) for r in self.existing],
            "problems": [{"line": p.line, "login": p.login, "reason": p.reason} for p in self.problems],
        }


def _login(user: str, domain: str) -> str:
    user = user.strip()
    if domain and "@" not in user:
        return f"{user}@{domain}"
    return user


def _record(line: int, login: str, value: str, *, plaintext: bool = False) -> ImportRecord | ImportProblem:
    if not login:
        return ImportProblem(line, "no login")
    if plaintext:
        return ImportRecord(line, login, "", value) if value else ImportProblem(line, "empty password", login)
    if not value:
        return ImportProblem(line, "no password hash (an account without a password cannot be imported; "
                                   "create it with `account add --no-password`)", login)
    try:
        stored, password = normalise(value)
    except UnsupportedHash as exc:
        return ImportProblem(line, str(exc), login)
    return ImportRecord(line, login, stored, password)


def read_dovecot_passwd(text: str, *, domain: str = "") -> Iterator[ImportRecord | ImportProblem]:
    """``user:{SCHEME}hash:uid:gid:gecos:home:shell:extra`` lines; ``#`` comments and blanks skipped.

    ``domain`` completes bare user names (``alice`` -> ``alice@domain``), since smtpgate's
    logins are addresses.
    """
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, rest = line.partition(":")
        if not sep:
            yield ImportProblem(number, "not a passwd-file line (user:password:...)")
            continue
        yield _record(number, _login(user, domain), rest.split(":", 1)[0])


def read_csv(text: str, *, domain: str = "") -> Iterator[ImportRecord | ImportProblem]:
    """A header row naming a login column and a hash or password column, then one account a row."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        return
    login_col = next((header.index(n) for n in LOGIN_COLUMNS if n in header), None)
    hash_col = next((header.index(n) for n in HASH_COLUMNS if n in header), None)
    password_col = next((header.index(n) for n in PASSWORD_COLUMNS if n in header), None)
    if login_col is None or (hash_col is None and password_col is None):
        yield ImportProblem(1, f"the header row must name a login column ({', '.join(LOGIN_COLUMNS)}) and a "
                               f"hash ({', '.join(HASH_COLUMNS)}) or password column; found {', '.join(header)}")
        return
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        cells = row + [""] * len(header)
        login = _login(cells[login_col], domain)
        if hash_col is not None and cells[hash_col].strip():
            yield _record(number, login, cells[hash_col].strip())
        elif password_col is not None:
            yield _record(number, login, cells[password_col], plaintext=True)
        else:
            yield _record(number, login, "")


def import_records(service: CredentialService, records: Iterable[ImportRecord | ImportProblem], *,
                   actor: str = "", dry_run: bool = False) -> ImportReport:
    """Each record to ``service.import_account``; each refusal becomes a numbered problem."""
    report = ImportReport(dry_run=dry_run)
    seen: set[str] = set()
    for item in records:
        if isinstance(item, ImportProblem):
            report.problems.append(item)
            continue
        if item.login.lower() in seen:
            report.problems.append(ImportProblem(item.line, "the login appears earlier in the file", item.login))
            continue
        seen.add(item.login.lower())
        try:
            outcome = service.import_account(item.login, stored_hash=item.stored_hash, password=item.password,
                                             actor=actor, dry_run=dry_run)
        except CredentialError as exc:
            report.problems.append(ImportProblem(item.line, str(exc), item.login))
            continue
        (report.created if outcome == "created" else report.existing).append(item)
    return report
