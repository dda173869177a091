"""The database part of a backup: SQLite's online backup API, or pg_dump / pg_restore.

Both take a transactionally consistent snapshot while the server keeps writing. For
PostgreSQL only smtpgate's schema (the url's search_path, else `public`) is dumped, and a
password in the url reaches the tools through PGPASSWORD, never their command line.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy.engine import URL, make_url

SQLITE_FILE = "database.sqlite"
PGDUMP_FILE = "database.pgdump"
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


class DatabaseBackupError(Exception):
    """A snapshot or a restore of the database failed; the message says what to do."""


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite:/// url, None for any other database."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise DatabaseBackupError("an in-memory SQLite database cannot be backed up")
    return Path(parsed.database)


def snapshot_sqlite(database: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (WAL included), page by page."""
    if not database.exists():
        raise DatabaseBackupError(f"the database {database} does not exist; run `smtpgate init` first")
    source = sqlite3.connect(database, timeout=30)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy, pages=1024)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        finally:
            copy.close()
    finally:
        source.close()
    os.chmod(target, 0o600)


def restore_sqlite(snapshot: Path, database: Path) -> None:
    database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for suffix in SQLITE_SIDECARS:  # a stale WAL would be replayed over the restored file
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(snapshot, database)
    os.chmod(database, 0o600)
    check = sqlite3.connect(database)
    try:
        if check.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise DatabaseBackupError(f"{database}: the restored SQLite database fails its integrity check")
    finally:
        check.close()


def postgres_schema(url: URL) -> str:
    """The schema smtpgate uses: `-csearch_path=...` in the url's options, else public."""
    options = url.query.get("options", "")
    text = unquote(" ".join(options) if isinstance(options, tuple) else options)
    for part in text.replace("-c ", "-c").split():
        if part.startswith("-csearch_path="):
            return part.split("=", 1)[1].split(",")[0].strip().strip('"') or "public"
    return "public"


def _libpq(url_text: str) -> tuple[str, dict[str, str], str]:
    """(libpq url without password, environment, schema) for the PostgreSQL client tools."""
    url = make_url(url_text)
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env, postgres_schema(url)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise DatabaseBackupError(f"{name} is not installed; install the PostgreSQL client (apt-get install postgresql-client)")
    return found


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
        raise DatabaseBackupError(f"{what} failed: {detail}")


def dump_postgres(url_text: str, target: Path) -> str:
    """pg_dump of smtpgate's schema, custom format; the schema's name."""
    url, env, schema = _libpq(url_text)
    _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--schema={schema}",
          f"--file={target}", f"--dbname={url}"], env, "pg_dump")
    os.chmod(target, 0o600)
    return schema


def postgres_schema_in_use(url_text: str) -> bool:
    """Whether smtpgate's schema already has tables (a restore would overwrite them)."""
    import psycopg

    url, _env, schema = _libpq(url_text)
    password = make_url(url_text).password
    with psycopg.connect(url, password=password, connect_timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)).fetchone()
    return bool(row and row[0])


def restore_postgres(dump: Path, url_text: str, *, replace: bool) -> None:
    url, env, _schema = _libpq(url_text)
    command = [_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", f"--dbname={url}"]
    if replace:
        command += ["--clean", "--if-exists"]
    _run([*command, str(dump)], env, "pg_restore")
