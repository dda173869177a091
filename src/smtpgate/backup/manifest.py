"""The backup's table of contents: every file with its size, mode and SHA-256."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = 1
CHUNK = 1024 * 1024


class ManifestError(Exception):
    """The backup is incomplete, altered or not a backup; the message names the file."""


@dataclass
class Entry:
    sha256: str
    size: int
    mode: int

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "mode": f"{self.mode:o}"}


@dataclass
class Manifest:
    created_at: str
    version: str
    config: str                      # the config file, relative to data/
    database: dict[str, str]         # kind, file (in the backup), schema (PostgreSQL)
    files: dict[str, Entry] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    not_included: list[str] = field(default_factory=list)

    def write(self, folder: Path) -> None:
        body = {
            "format": FORMAT, "created_at": self.created_at, "smtpgate_version": self.version,
            "config": self.config, "database": self.database, "messages": self.messages,
            "not_included": self.not_included,
            "files": {name: entry.to_json() for name, entry in sorted(self.files.items())},
        }
        path = folder / MANIFEST
        with path.open("w", encoding="utf-8") as out:
            json.dump(body, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        path.chmod(0o600)

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ManifestError(f"{folder} is not a backup: it has no {MANIFEST}") from None
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path} cannot be read: {exc}") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise ManifestError(f"{path}: not a backup manifest of format {FORMAT}")
        try:
            files = {name: Entry(str(e["sha256"]), int(e["size"]), int(str(e["mode"]), 8))
                     for name, e in body["files"].items()}
            return cls(str(body["created_at"]), str(body["smtpgate_version"]), str(body["config"]),
                       dict(body["database"]), files, dict(body.get("messages", {})), list(body.get("not_included", [])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{path}: a field is missing or malformed ({exc})") from None

    def verify(self, folder: Path) -> None:
        """Every listed file is there, whole and unaltered, and nothing else is."""
        for name, entry in self.files.items():
            path = folder / name
            if ".." in Path(name).parts or Path(name).is_absolute():
                raise ManifestError(f"{MANIFEST} names a file outside the backup: {name}")
            try:
                digest, size = checksum(path)
            except FileNotFoundError:
                raise ManifestError(f"{path} is missing from the backup") from None
            if size != entry.size or digest != entry.sha256:
                raise ManifestError(f"{path} does not match its checksum in {MANIFEST}: the backup is damaged or altered")
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MANIFEST}
        extra = sorted(present - set(self.files))
        if extra:
            raise ManifestError(f"{folder / extra[0]} is not listed in {MANIFEST}: the backup was altered")


def checksum(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copy_file(source: Path, target: Path) -> Entry:
    """Copy one file (fsync'd, same mode) and return its entry, checksummed as it is copied."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = source.stat().st_mode & 0o777
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as src, open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    target.chmod(mode)
    return Entry(digest.hexdigest(), size, mode)


def entry_of(path: Path) -> Entry:
    digest, size = checksum(path)
    return Entry(digest, size, path.stat().st_mode & 0o777)


def copy_tree(source: Path, target: Path, manifest: Manifest, prefix: str) -> None:
    """Restore side: copy the backup's files back, with their recorded modes."""
    for name, entry in manifest.files.items():
        if not name.startswith(prefix):
            continue
        destination = target / name[len(prefix):]
        destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(source / name, destination)
        destination.chmod(entry.mode)
