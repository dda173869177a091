"""Finding our secrets where they leaked: files, folders and git history.

Every secret smtpgate issues has a fixed prefix, a fixed length and a CRC32 checksum, so a
scan finds them without false positives: a string that has the shape but a wrong checksum
is not a secret of ours and is not reported. What is found is given back with where it was
(file and line, or commit and file) and shown only as a short prefix; the full value stays
in memory long enough to ask the credential store whether it is live.

Git history is read with ``git log --all -p`` (every commit of every branch, added lines
only): a secret that was committed and later deleted is still out there.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from smtpgate.credentials import api_tokens, app_passwords, service_accounts

__all__ = ["Finding", "SecretKind", "KINDS", "find_in_text", "scan_paths", "scan_git", "shown"]

SHOWN = 8          # characters of a secret ever printed: the prefix and four more
MAX_FILE = 50 * 1024 * 1024
SKIP_DIRS = {".git", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".mypy_cache"}


@dataclass(frozen=True)
class SecretKind:
    name: str                           # "app-password", ...
    prefix: str
    well_formed: Callable[[str], bool]  # prefix, length, alphabet and checksum


KINDS: list[SecretKind] = [
    SecretKind("app-password", app_passwords.PREFIX, app_passwords.is_well_formed),
    SecretKind("service-account-secret", service_accounts.PREFIX, service_accounts.is_well_formed),
    SecretKind("api-token", api_tokens.PREFIX, api_tokens.is_well_formed),
]
_BODY = app_passwords.BODY_LENGTH + app_passwords.CHECK_LENGTH


def _candidates() -> re.Pattern[str]:
    prefixes = "|".join(re.escape(k.prefix) for k in KINDS)
    return re.compile(rf"(?<![A-Za-z0-9_])(?:{prefixes})[a-z2-7]{{{_BODY}}}(?![A-Za-z0-9_])")


@dataclass(frozen=True)
class Finding:
    kind: str
    location: str                         # path:line, or commit:path:line for history
    secret: str = field(repr=False)       # never printed: see `shown`

    @property
    def shown(self) -> str:
        return shown(self.secret)


def shown(secret: str) -> str:
    return secret[:SHOWN] + "…"


def find_in_text(text: str) -> Iterator[tuple[int, str, SecretKind]]:
    """(line number, secret, kind) for every real secret of ours in the text."""
    pattern = _candidates()
    for number, line in enumerate(text.splitlines(), start=1):
        for match in pattern.finditer(line):
            value = match.group(0)
            kind = next((k for k in KINDS if value.startswith(k.prefix)), None)
            if kind is not None and kind.well_formed(value):
                yield number, value, kind


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
        elif path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
                for name in sorted(names):
                    yield Path(root) / name


def scan_paths(paths: Iterable[Path]) -> Iterator[Finding]:
    """Every secret in the files under ``paths`` (binary files too: a secret is ASCII)."""
    for file in _files(paths):
        try:
            if file.stat().st_size > MAX_FILE or file.is_symlink():
                continue
            text = file.read_bytes().decode("latin-1")
        except OSError:
            continue
        for number, secret, kind in find_in_text(text):
            yield Finding(kind.name, f"{file}:{number}", secret)


def scan_git(repo: Path) -> Iterator[Finding]:
    """Every secret ever added in the history of the git repository at ``repo``."""
    proc = subprocess.Popen(
        ["git", "-C", str(repo), "log", "--all", "-p", "--no-color", "--no-ext-diff", "--format=commit %H", "-U0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="latin-1",
    )
    assert proc.stdout is not None
    commit, path, line_no = "", "", 0
    for raw in proc.stdout:
        line = raw.rstrip("\n")
        if line.startswith("commit ") and len(line) == 47:
            commit = line[7:]
        elif line.startswith("+++ "):
            path = line[6:] if line.startswith("+++ b/") else line[4:]
        elif line.startswith("@@"):
            match = re.search(r"\+(\d+)", line)
            line_no = int(match.group(1)) if match else 0
        elif line.startswith("+"):
            for _, secret, kind in find_in_text(line[1:]):
                yield Finding(kind.name, f"{commit[:12]}:{path}:{line_no}", secret)
            line_no += 1
    proc.wait()
    if proc.returncode:
        assert proc.stderr is not None
        raise NotARepository(f"{repo}: {proc.stderr.read().strip()[:300] or 'git failed'}")


class NotARepository(ValueError):
    """git could not read the history (not a repository, or git is missing)."""
