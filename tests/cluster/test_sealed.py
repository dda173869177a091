"""Keys in the database, sealed under the cluster master key (real PostgreSQL)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from smtpgate.cluster.sealed import SealedFiles, load_master_key
from smtpgate.config import ConfigError
from smtpgate.store import Store, open_store
from smtpgate.store.models_cluster import SealedSecretRow


def files(root: Path) -> dict[str, Path]:
    return {"secrets/app-password.key": root / "secrets" / "app.key", "tokens/": root / "token-keys"}


def test_a_new_node_gets_every_key_from_the_database_and_only_ciphertext_is_stored(pg_schema_url: str, tmp_path: Path) -> None:
    store: Store = open_store(pg_schema_url)
    try:
        key = load_master_key(tmp_path / "master.key", create=True)
        assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
        first = tmp_path / "first"
        (first / "secrets").mkdir(parents=True)
        (first / "secrets" / "app.key").write_bytes(b"app-key-secret-material")
        (first / "token-keys").mkdir()
        (first / "token-keys" / "kid1.jwk.json").write_bytes(b'{"d": "private-jwk"}')
        assert sorted(SealedFiles(store, key, files(first)).push()) == ["secrets/app-password.key", "tokens/kid1.jwk.json"]
        with store.session() as db:
            blobs = b"".join(db.scalars(select(SealedSecretRow.ciphertext)))
        assert b"app-key-secret-material" not in blobs and b"private-jwk" not in blobs

        new = tmp_path / "new"
        other = SealedFiles(store, load_master_key(tmp_path / "master.key", create=False), files(new))
        assert sorted(other.pull()) == ["secrets/app-password.key", "tokens/kid1.jwk.json"]
        assert (new / "secrets" / "app.key").read_bytes() == b"app-key-secret-material"
        assert (new / "token-keys" / "kid1.jwk.json").stat().st_mode & 0o777 == 0o600
        assert other.pull() == [] and other.push() == []  # nothing ping-pongs

        time.sleep(0.02)  # a rotation on the first node reaches the new one
        (first / "token-keys" / "kid2.jwk.json").write_bytes(b'{"d": "second"}')
        assert SealedFiles(store, key, files(first)).push() == ["tokens/kid2.jwk.json"]
        assert other.pull() == ["tokens/kid2.jwk.json"]

        wrong = SealedFiles(store, os.urandom(32), files(tmp_path / "wrong"))
        with pytest.raises(ConfigError, match="same master key file"):
            wrong.pull()
    finally:
        store.dispose()


def test_a_missing_or_loose_master_key_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Copy it from another node"):
        load_master_key(tmp_path / "absent.key", create=False)
    loose = tmp_path / "loose.key"
    load_master_key(loose, create=True)
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_master_key(loose, create=False)
