"""The schema check every command makes: the revisions are read from the migration files
without Alembic, and must be exactly what Alembic itself computes."""

from __future__ import annotations

import subprocess
import sys

from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

from smtpgate.store import open_store
from smtpgate.store.db import MIGRATIONS, Store, head_revisions


def test_heads_from_the_files_are_alembics_heads() -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert head_revisions() == set(ScriptDirectory.from_config(cfg).get_heads())


def test_heads_follow_branches_and_merges(tmp_path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    files = {
        "a.py": 'revision = "a"\ndown_revision = None\n',
        "b.py": 'revision: str = "b"\ndown_revision: str | None = "a"\n',
        "c.py": "revision = 'c'\ndown_revision = 'a'\n",
        "d.py": 'revision = "d"\ndown_revision = ("b", "c")\n',
        "e.py": 'revision = "e"\ndown_revision = "a"\n',
    }
    for name, text in files.items():
        (versions / name).write_text('"""doc"""\n' + text)
    assert head_revisions(versions) == {"d", "e"}


def test_a_current_schema_is_checked_without_alembic(db_url: str) -> None:
    open_store(db_url).dispose()  # creates and upgrades
    code = (
        "import sys\n"
        "from smtpgate.store import open_store\n"
        f"store = open_store({db_url!r})\n"
        "store.dispose()\n"
        "print(sorted(m for m in sys.modules if m == 'alembic' or m.startswith('alembic.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_an_old_schema_is_still_upgraded(db_url: str) -> None:
    store = Store(db_url)
    assert store.current_revisions() == set()  # a new database: no alembic_version table yet
    store.upgrade()
    assert store.current_revisions() == head_revisions()
    store.dispose()
