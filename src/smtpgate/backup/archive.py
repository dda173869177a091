"""Take a backup of a data dir while the server runs, and restore one into a data dir."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from smtpgate import __version__
from smtpgate.backup import database as db
from smtpgate.backup.manifest import Manifest, ManifestError, copy_file, copy_tree, entry_of
from smtpgate.config import CONFIG_NAME, Config, ConfigError, load_config

DATA = "data/"
# Rebuilt or removed by the server itself: Prometheus' per-process files, in-flight messages.
SKIPPED_DIRS = ("metrics",)


class BackupError(Exception):
    """The backup or restore cannot be done; the message names the problem and the fix."""


@dataclass(frozen=True)
class BackupSummary:
    folder: Path
    files: int
    size: int
    database: str
    messages: dict[str, int]
    not_included: tuple[str, ...]
    config: str = CONFIG_NAME      # the config file, relative to the data dir
    replaced: Path | None = None   # restore --force: where the previous contents went


def create_backup(config: Config, destination: Path) -> BackupSummary:
    """Write a complete backup to `destination` (a new or empty folder)."""
    data_dir = config.base_dir.resolve()
    destination = destination.resolve()
    if destination == data_dir or data_dir in destination.parents:
        raise BackupError(f"{destination} is inside the data dir {data_dir}; write the backup somewhere else")
    _refuse_non_empty(destination, "Pick a new folder for the backup.")
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=_parent(destination)))
    try:
        manifest = _take(config, data_dir, staging)
        manifest.write(staging)
        if destination.exists():
            destination.rmdir()
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _summary(destination, manifest)


def restore_backup(source: Path, data_dir: Path, *, force: bool = False) -> BackupSummary:
    """Check the backup whole, then make `data_dir` what it was when the backup was taken."""
    source, data_dir = source.resolve(), data_dir.resolve()
    try:
        manifest = Manifest.read(source)
        manifest.verify(source)
    except ManifestError as exc:
        raise BackupError(str(exc)) from None
    if not force:
        _refuse_non_empty(data_dir, "Restore into a new or empty folder, or pass --force to replace its contents "
                                    "(they are moved aside, not deleted). Stop the server that uses it first.")
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restoring.", dir=_parent(data_dir)))
    replaced: Path | None = None
    try:
        copy_tree(source, staging, manifest, DATA)
        config = _load(staging / manifest.config)
        _restore_database(source, manifest, config, force=force)
        if data_dir.exists() and any(data_dir.iterdir()):
            replaced = data_dir.with_name(f"{data_dir.name}.replaced-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
            data_dir.rename(replaced)
        elif data_dir.exists():
            data_dir.rmdir()
        staging.chmod(0o700)
        staging.rename(data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _summary(data_dir, manifest, replaced)


# ------------------------------------------------------------------ backup


def _take(config: Config, data_dir: Path, staging: Path) -> Manifest:
    sqlite_file = db.sqlite_path(config.database_url)
    manifest = Manifest(
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=__version__,
        config=(config.source or data_dir / CONFIG_NAME).resolve().relative_to(data_dir).as_posix(),
        database={},
    )
    try:
        if sqlite_file is not None:
            db.snapshot_sqlite(sqlite_file, staging / db.SQLITE_FILE)
            manifest.database = {"kind": "sqlite", "file": db.SQLITE_FILE}
        else:
            schema = db.dump_postgres(config.database_url, staging / db.PGDUMP_FILE)
            manifest.database = {"kind": "postgresql", "file": db.PGDUMP_FILE, "schema": schema}
    except db.DatabaseBackupError as exc:
        raise BackupError(str(exc)) from None
    manifest.files[manifest.database["file"]] = entry_of(staging / manifest.database["file"])

    spools = {"queue": config.path(config.delivery.queue_dir).resolve(), "capture": config.capture_dir.resolve()}
    skipped = {config.path(name).resolve() for name in SKIPPED_DIRS} | set(spools.values())
    database_files = set()
    if sqlite_file is not None:
        resolved = sqlite_file.resolve()
        database_files = {resolved, *(Path(f"{resolved}{suffix}") for suffix in db.SQLITE_SIDECARS)}
    for path in _files(data_dir, skipped):
        if path not in database_files:
            _add(manifest, staging, data_dir, path)
    for name, spool in spools.items():
        if data_dir not in spool.parents:
            manifest.not_included.append(f"{name} spool {spool} (outside the data dir)")
            continue
        manifest.messages[name] = _copy_spool(spool, manifest, staging, data_dir)
    manifest.not_included += _outside(config, data_dir)
    return manifest


def _files(root: Path, skipped: set[Path]) -> list[Path]:
    found = []
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if (here / d).resolve() not in skipped)
        found += [here / n for n in sorted(names) if (here / n).is_file() and not (here / n).is_symlink()]
    return found


def _add(manifest: Manifest, staging: Path, data_dir: Path, path: Path) -> bool:
    """Copy one file into data/; False when it vanished meanwhile (a message delivered, a file replaced)."""
    name = DATA + path.relative_to(data_dir).as_posix()
    try:
        manifest.files[name] = copy_file(path, staging / name)
    except FileNotFoundError:
        (staging / name).unlink(missing_ok=True)
        return False
    return True


def _copy_spool(spool: Path, manifest: Manifest, staging: Path, data_dir: Path) -> int:
    """Every committed message whole (its one file, then its state), none of tmp/.

    A message is one immutable file (`messages/<id>.msg`, see delivery/capture.py), visible
    once renamed into place, so copying it never pairs a message with someone else's bytes;
    one removed meanwhile (delivered, deleted) is left out entirely. A store not yet opened
    since the one-file layout still has `<id>.eml` + `<id>.json` pairs: data first, then
    metadata, and it is converted when the restored store is opened.
    """
    messages = spool / "messages"
    count = 0
    for path in sorted(messages.glob("*.msg")) if messages.is_dir() else []:
        if not _add(manifest, staging, data_dir, path):
            continue
        state = spool / "state" / f"{path.stem}.json"
        if state.exists():
            _add(manifest, staging, data_dir, state)
        count += 1
    for meta in sorted(messages.glob("*.json")) if messages.is_dir() else []:
        data = meta.with_suffix(".eml")
        state = spool / "state" / meta.name
        if not _add(manifest, staging, data_dir, data):
            continue
        if not _add(manifest, staging, data_dir, meta):
            _drop(manifest, staging, data_dir, data)
            continue
        if state.exists():
            _add(manifest, staging, data_dir, state)
        count += 1
    for extra in ("holds.json",):
        if (spool / extra).is_file():
            _add(manifest, staging, data_dir, spool / extra)
    return count


def _drop(manifest: Manifest, staging: Path, data_dir: Path, path: Path) -> None:
    name = DATA + path.relative_to(data_dir).as_posix()
    manifest.files.pop(name, None)
    (staging / name).unlink(missing_ok=True)


def _outside(config: Config, data_dir: Path) -> list[str]:
    """Files the config names outside the data dir: the backup does not hold them."""
    named = {
        "TLS certificate": config.tls.cert, "TLS key": config.tls.key, "TLS CA": config.tls.ca,
        "app-password key": config.secrets.app_password_key_file, "token keys": config.tokens.key_dir,
        "upstream password": config.delivery.relay.password_file, "upstream key": config.delivery.relay.key_file,
        "alert webhook secret": config.alerts.webhook_secret_file,
        "DKIM keys": config.deliverability.dkim_dir,
        **{f"DKIM key of {domain}": key.key_file for domain, key in config.delivery.dkim.items()},
    }
    return [f"{what} {config.path(value)} (outside the data dir)" for what, value in named.items()
            if value and data_dir not in config.path(value).resolve().parents and config.path(value).exists()]


# ----------------------------------------------------------------- restore


def _restore_database(source: Path, manifest: Manifest, config: Config, *, force: bool) -> None:
    kind, file = manifest.database.get("kind"), source / manifest.database.get("file", "")
    try:
        target = db.sqlite_path(config.database_url)
        if kind == "sqlite":
            if target is None:
                raise BackupError("the backup holds a SQLite database but the restored config names PostgreSQL; "
                                  "restore with the config it was taken with")
            outside = config.base_dir.resolve() not in target.resolve().parents
            if outside and target.exists() and not force:
                raise BackupError(f"the database {target} exists; pass --force to replace it")
            db.restore_sqlite(file, target)
        elif kind == "postgresql":
            if target is not None:
                raise BackupError("the backup holds a PostgreSQL dump but the restored config names SQLite")
            if not force and db.postgres_schema_in_use(config.database_url):
                raise BackupError(f"the PostgreSQL schema {manifest.database.get('schema', 'public')} already has tables; "
                                  "pass --force to replace them with the backup's")
            db.restore_postgres(file, config.database_url, replace=True)
        else:
            raise BackupError(f"the manifest names an unknown database kind {kind!r}")
    except db.DatabaseBackupError as exc:
        raise BackupError(str(exc)) from None


# ----------------------------------------------------------------- helpers


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise BackupError(f"the backup's config does not load: {exc}") from None


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


def _refuse_non_empty(folder: Path, hint: str) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BackupError(f"{folder} exists and is not empty. {hint}")


def _summary(folder: Path, manifest: Manifest, replaced: Path | None = None) -> BackupSummary:
    return BackupSummary(folder, len(manifest.files), sum(e.size for e in manifest.files.values()),
                         manifest.database.get("kind", ""), dict(manifest.messages), tuple(manifest.not_included),
                         manifest.config, replaced)


def describe(summary: BackupSummary) -> dict[str, object]:
    """The summary as JSON for `--json`."""
    return {
        "folder": str(summary.folder), "files": summary.files, "bytes": summary.size, "database": summary.database,
        "messages": summary.messages, "not_included": list(summary.not_included),
        "replaced": str(summary.replaced) if summary.replaced else None,
    }
