"""Where a rotated secret goes: the app's own secret store, written so the app never sees half.

`creds rotate ID --deliver TARGET [--then CMD]` puts the successor where the app reads it
and runs the app's reload hook, so a secret is rotated without anyone copying it by hand.
A target is one of

- ``file:PATH``: the secret alone, one line;
- ``env:PATH:VAR``: the ``VAR=`` line of a dotenv file or a systemd ``EnvironmentFile``
  replaced in place (``export VAR=`` too), every other line kept;
- ``keyring:SERVICE:USER``: the system keyring, through the keyring library.

Files are written to a temporary file beside the target with mode 0600, fsync'd, renamed
over the target and the directory fsync'd: a reader sees the old secret or the new one.
The hook is run without a shell (``shlex.split``): what the operator typed is run as
written, and nothing in a stored target can become a shell command.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from smtpgate.credentials.errors import InvalidOperation

__all__ = ["SecretTarget", "parse_target", "parse_hook", "run_hook"]

_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOOK_TIMEOUT = 120


@dataclass(frozen=True)
class SecretTarget:
    kind: str            # "file", "env" or "keyring"
    path: str = ""       # file and env
    name: str = ""       # env: the variable; keyring: the service
    user: str = ""       # keyring: the user name

    def __str__(self) -> str:
        if self.kind == "file":
            return f"file:{self.path}"
        if self.kind == "env":
            return f"env:{self.path}:{self.name}"
        return f"keyring:{self.name}:{self.user}"

    def check(self) -> None:
        """Refuse, before anything is rotated, a target that cannot be written."""
        if self.kind == "keyring":
            return
        directory = Path(self.path).parent
        if not directory.is_dir():
            raise InvalidOperation(f"cannot deliver to {self}: the folder {directory} does not exist")
        if not os.access(directory, os.W_OK):
            raise InvalidOperation(f"cannot deliver to {self}: the folder {directory} is not writable")

    def write(self, secret: str) -> None:
        if self.kind == "file":
            _atomic_write(Path(self.path), secret + "\n")
        elif self.kind == "env":
            path = Path(self.path)
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            _atomic_write(path, replace_env_line(current, self.name, secret))
        else:
            import keyring

            keyring.set_password(self.name, self.user, secret)

    def read(self) -> str | None:
        """What the target holds now (for tests and `creds show`), None when nothing."""
        if self.kind == "file":
            path = Path(self.path)
            return path.read_text(encoding="utf-8").strip() if path.exists() else None
        if self.kind == "env":
            path = Path(self.path)
            if not path.exists():
                return None
            for line in path.read_text(encoding="utf-8").splitlines():
                key, sep, value = line.removeprefix("export ").partition("=")
                if sep and key.strip() == self.name:
                    return value.strip().strip("\"'")
            return None
        import keyring

        return keyring.get_password(self.name, self.user)


def parse_target(text: str) -> SecretTarget:
    """``file:PATH``, ``env:PATH:VAR`` or ``keyring:SERVICE:USER``, or a message naming the forms."""
    kind, _, rest = text.partition(":")
    forms = "file:PATH, env:PATH:VAR or keyring:SERVICE:USER"
    if kind == "file" and rest:
        return SecretTarget("file", path=str(Path(rest).absolute()))
    if kind == "env":
        path, _, var = rest.rpartition(":")
        if path and _VAR.match(var):
            return SecretTarget("env", path=str(Path(path).absolute()), name=var)
        raise InvalidOperation(f"--deliver {text!r}: an env target is env:PATH:VAR with VAR a variable name")
    if kind == "keyring":
        service, _, user = rest.partition(":")
        if service and user:
            return SecretTarget("keyring", name=service, user=user)
        raise InvalidOperation(f"--deliver {text!r}: a keyring target is keyring:SERVICE:USER")
    raise InvalidOperation(f"--deliver {text!r} is not a target", f"Use {forms}.")


def parse_hook(text: str) -> tuple[str, ...]:
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise InvalidOperation(f"--then {text!r}: {exc}") from None
    if not argv:
        raise InvalidOperation("--then needs a command, e.g. --then 'systemctl reload app'")
    return argv


def run_hook(argv: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """Run the reload hook; its exit status and output are the caller's to report."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=_HOOK_TIMEOUT, check=False)
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(argv), 124, "", f"{argv[0]}: still running after {_HOOK_TIMEOUT} s")


def replace_env_line(current: str, name: str, value: str) -> str:
    lines = current.splitlines()
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        exported = stripped.startswith("export ")
        key, sep, _ = stripped.removeprefix("export ").partition("=")
        if sep and key.strip() == name:
            lines[index] = ("export " if exported else "") + f"{name}={value}"
            break
    else:
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
