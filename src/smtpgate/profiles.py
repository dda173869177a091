"""Saved SMTP settings, so that a script names a profile and holds no secret.

The settings (server, port, TLS mode, login, sender) live in a TOML file, by default
`~/.config/smtpgate/profiles.toml` (or $SMTPGATE_PROFILES). The secret never goes there:
it is kept in the OS keyring through `keyring` (macOS Keychain, Windows Credential
Locker, Secret Service, KWallet) or, where there is none (servers, containers), in a file
of its own under `secrets/` beside the profiles, mode 0600 in a 0700 folder.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from smtpgate.secret_files import write_secret_file

PROFILES_ENV = "SMTPGATE_PROFILES"
KEYRING_SERVICE = "smtpgate"
TLS_MODES = ("starttls", "tls", "none")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ProfileError(Exception):
    """A profile or its secret cannot be used; `hint` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class Profile:
    name: str
    host: str
    port: int
    tls: str = "starttls"  # starttls, tls (implicit, port 465) or none
    user: str = ""
    sender: str = ""  # default From: and envelope sender; the login when empty and it is an address
    cafile: str = ""  # a CA file to trust besides the system's (a private CA)
    secret_store: str = ""  # keyring or file; empty when the profile has no login

    def to_toml(self) -> dict[str, object]:
        return {"server": self.host, "port": self.port, "tls": self.tls, "user": self.user,
                "from": self.sender, "cafile": self.cafile, "secret": self.secret_store}

    @classmethod
    def from_toml(cls, name: str, raw: dict[str, object], source: Path) -> Profile:
        try:
            profile = cls(name=name, host=str(raw["server"]), port=int(raw.get("port", 587)),  # type: ignore[call-overload]
                          tls=str(raw.get("tls", "starttls")), user=str(raw.get("user", "")),
                          sender=str(raw.get("from", "")), cafile=str(raw.get("cafile", "")),
                          secret_store=str(raw.get("secret", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"{source}: profile {name!r} is incomplete or wrong ({exc})",
                               f"Fix it by hand or add it again: smtpgate profile add {name} --server HOST:PORT") from None
        if profile.tls not in TLS_MODES:
            raise ProfileError(f"{source}: profile {name!r}: tls = {profile.tls!r}; expected one of {', '.join(TLS_MODES)}")
        return profile

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, **self.to_toml()}


def default_path() -> Path:
    if os.environ.get(PROFILES_ENV):
        return Path(os.environ[PROFILES_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "smtpgate" / "profiles.toml"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ProfileError(f"{name!r} is not a usable profile name",
                           "Use letters, digits, '.', '_' and '-' (at most 64), starting with a letter or digit.")
    return name


def read_private_file(path: Path, what: str) -> str:
    """The first line of a secret file that only its owner can read; ProfileError otherwise."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read the {what} file {path}: {exc.strerror}",
                           "Check the path, and that this user may read it.") from None
    if mode & 0o077:
        raise ProfileError(f"the {what} file {path} is readable by others (mode {mode:o})",
                           f"Run `chmod 600 {path}` (containers: mount the secret with mode 0400).")
    secret = text.splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise ProfileError(f"the {what} file {path} is empty")
    return secret


class ProfileStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self.secrets_dir = self.path.parent / "secrets"

    # ------------------------------------------------------------ settings

    def load(self) -> dict[str, Profile]:
        try:
            raw = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ProfileError(f"cannot read the profiles file {self.path}: {exc}") from None
        table = raw.get("profiles", {})
        return {name: Profile.from_toml(name, value, self.path) for name, value in sorted(table.items())}

    def get(self, name: str) -> Profile:
        profiles = self.load()
        if name not in profiles:
            known = ", ".join(profiles) or "none yet"
            raise ProfileError(f"no profile named {name!r} in {self.path} (known: {known})",
                               f"Create it: smtpgate profile add {name} --server HOST:PORT --user LOGIN")
        return profiles[name]

    def _save(self, profiles: dict[str, Profile]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"profiles": {name: p.to_toml() for name, p in sorted(profiles.items())}}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"# smtpgate client profiles: settings only. Secrets are in the OS keyring or secrets/NAME.\n")
            tomli_w.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def add(self, profile: Profile, secret: str | None, *, store: str = "auto", replace: bool = False) -> Profile:
        """Save the profile and its secret; returns it with `secret_store` filled in."""
        check_name(profile.name)
        profiles = self.load()
        if profile.name in profiles and not replace:
            raise ProfileError(f"profile {profile.name!r} already exists",
                               "Remove it first (smtpgate profile remove NAME), or pass --replace.")
        if profile.name in profiles:
            self._forget_secret(profiles[profile.name])
        profile.secret_store = self._keep_secret(profile.name, secret, store) if secret else ""
        profiles[profile.name] = profile
        self._save(profiles)
        return profile

    def remove(self, name: str) -> Profile:
        profiles = self.load()
        profile = self.get(name)
        self._forget_secret(profile)
        del profiles[name]
        self._save(profiles)
        return profile

    # ------------------------------------------------------------ secrets

    def secret(self, profile: Profile) -> str:
        """The profile's password; ProfileError when it has none or it cannot be read."""
        if profile.secret_store == "file":
            return read_private_file(self.secrets_dir / profile.name, f"profile {profile.name} secret")
        if profile.secret_store == "keyring":
            keyring = _keyring()
            try:
                value = keyring.get_password(KEYRING_SERVICE, profile.name)
            except Exception as exc:  # noqa: BLE001 - every backend has its own errors
                raise ProfileError(f"the OS keyring could not be read: {type(exc).__name__}",
                                   "Unlock the keyring (log in to the desktop session), or re-add the profile with --store file.") from None
            if value is None:
                raise ProfileError(f"the keyring has no secret for profile {profile.name!r}",
                                   f"Add it again: smtpgate profile add {profile.name} --replace ...")
            return value
        raise ProfileError(f"profile {profile.name!r} has no saved password",
                           f"Add one: smtpgate profile add {profile.name} --replace --password-stdin ...")

    def _keep_secret(self, name: str, secret: str, store: str) -> str:
        if store not in ("auto", "keyring", "file"):
            raise ProfileError(f"--store {store}: expected auto, keyring or file")
        if store in ("auto", "keyring"):
            usable, backend = keyring_status()
            if usable and (store == "keyring" or not _plaintext(backend)):
                try:
                    _keyring().set_password(KEYRING_SERVICE, name, secret)
                    return "keyring"
                except Exception as exc:  # noqa: BLE001
                    if store == "keyring":
                        raise ProfileError(f"the OS keyring refused the secret: {type(exc).__name__}",
                                           "Unlock the keyring, or use --store file.") from None
            elif store == "keyring":
                raise ProfileError(f"no usable OS keyring here ({backend})",
                                   "Use --store file (a 0600 file), or set up a keyring (Secret Service, KWallet).")
        path = self.secrets_dir / name
        self.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.secrets_dir, 0o700)
        path.unlink(missing_ok=True)
        write_secret_file(path, secret)
        return "file"

    def _forget_secret(self, profile: Profile) -> None:
        (self.secrets_dir / profile.name).unlink(missing_ok=True)
        if profile.secret_store == "keyring":
            try:
                _keyring().delete_password(KEYRING_SERVICE, profile.name)
            except Exception:  # noqa: BLE001 - gone already, or no keyring: nothing to forget
                pass


def _keyring():  # type: ignore[no-untyped-def]
    import keyring

    return keyring


def keyring_status() -> tuple[bool, str]:
    """Whether a real keyring backend is available, and its name."""
    keyring = _keyring()
    from keyring.backends import fail

    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    usable = not isinstance(backend, fail.Keyring) and "null" not in name.lower()
    return usable, name


def _plaintext(backend: str) -> bool:
    """A keyring backend that only writes a plain file is no better than our own 0600 file."""
    return "plaintext" in backend.lower() or "keyrings.alt.file" in backend.lower()
