"""Login caches, batched usage and invalidation across processes, on real databases.

A second `CredentialService` on the same database stands for another process (another
worker, the CLI): its changes must reach the first one's caches on the next login.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, select, text

from smtpgate.credentials import AuthFailure, CredentialService, FailureReason, Principal
from smtpgate.credentials.cache import CacheSettings, CredentialCache
from smtpgate.credentials.invalidation import Change, DatabaseChannel, LocalChannel
from smtpgate.credentials.passwords import PasswordHashing, PasswordPolicy
from smtpgate.store import Store
from smtpgate.store.models import CredentialRow
from tests.conftest import FAST_HASH

PASSWORD = "tulip-anvil-orbit-quartz-59"
IP = "192.0.2.10"


def process(store: Store, clock) -> CredentialService:
    """A credential service as a server process builds it (database channel)."""
    return CredentialService(
        store, app_key=b"k" * 32, hashing=PasswordHashing(FAST_HASH), policy=PasswordPolicy(),
        clock=clock, channel=DatabaseChannel(store),
    )


@pytest.fixture
def worker(store: Store, clock) -> CredentialService:
    return process(store, clock)


@pytest.fixture
def cli(store: Store, clock) -> CredentialService:
    return process(store, clock)


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement.split()[0].upper() + " " + statement)

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", before)


def auth(service: CredentialService, login: str, secret: str) -> Principal | AuthFailure:
    return service.authenticate(login, secret, IP, True)


def reason(result: Principal | AuthFailure) -> FailureReason | None:
    return result.reason if isinstance(result, AuthFailure) else None


def counted_verify(service: CredentialService) -> list[str]:
    calls: list[str] = []
    hashing = service._hashing
    real = hashing.verify

    def verify(stored: str, password: str) -> bool:
        calls.append(password)
        return real(stored, password)

    hashing.verify = verify  # type: ignore[method-assign]
    return calls


def test_a_repeat_app_password_login_reads_one_version_row_and_writes_nothing(worker, cli, store) -> None:
    cli.create_account("a@example.com")
    issued = cli.create_app_password("a@example.com", "x")
    assert isinstance(auth(worker, "a@example.com", issued.secret), Principal)
    with statements(store) as seen:
        for _ in range(3):
            assert isinstance(auth(worker, "a@example.com", issued.secret), Principal)
    assert all("credential_epoch" in s for s in seen), seen  # the change check, nothing else
    assert not any(s.startswith(("UPDATE", "INSERT", "DELETE")) for s in seen)


def test_usage_is_counted_in_memory_and_written_in_one_batch(worker, cli, store, clock) -> None:
    cli.create_account("a@example.com")
    issued = cli.create_app_password("a@example.com", "x")
    for _ in range(5):
        assert isinstance(auth(worker, "a@example.com", issued.secret), Principal)

    def stored() -> tuple[int, object]:
        with store.session() as db:
            row = db.scalar(select(CredentialRow).where(CredentialRow.id == issued.credential.id))
            return row.use_count, row.last_used_ip

    assert stored() == (0, None)
    with statements(store) as seen:
        assert worker.flush_usage() == 1
    assert [s for s in seen if s.startswith("UPDATE")] and len([s for s in seen if s.startswith("UPDATE")]) == 1
    assert stored() == (5, IP)
    assert worker.flush_usage() == 0
    assert cli.get_credential(issued.credential.id).use_count == 5


def test_a_failed_flush_keeps_the_counts_for_the_next(worker, cli, store, monkeypatch) -> None:
    cli.create_account("a@example.com")
    issued = cli.create_app_password("a@example.com", "x")
    auth(worker, "a@example.com", issued.secret)
    real = store.session

    def broken():
        raise RuntimeError("database gone")

    monkeypatch.setattr(store, "session", broken)
    with pytest.raises(RuntimeError):
        worker.flush_usage()
    monkeypatch.setattr(store, "session", real)
    auth(worker, "a@example.com", issued.secret)
    assert worker.flush_usage() == 1
    assert cli.get_credential(issued.credential.id).use_count == 2


@pytest.mark.parametrize("change", ["revoke", "disable", "rotate-now"])
def test_a_change_made_by_another_process_refuses_the_next_login(worker, cli, change: str) -> None:
    cli.create_account("a@example.com")
    issued = cli.create_app_password("a@example.com", "x")
    assert isinstance(auth(worker, "a@example.com", issued.secret), Principal)  # cached now
    if change == "revoke":
        cli.revoke(issued.credential.id)
        expected = FailureReason.REVOKED
    elif change == "disable":
        cli.set_account_enabled("a@example.com", False)
        expected = FailureReason.DISABLED
    else:
        cli.rotate(issued.credential.id, overlap=timedelta(0))
        expected = FailureReason.EXPIRED
    assert reason(auth(worker, "a@example.com", issued.secret)) is expected


def test_a_repeat_password_login_costs_no_argon2_and_a_wrong_one_always_does(worker, cli) -> None:
    cli.create_account("a@example.com", password=PASSWORD)
    calls = counted_verify(worker)
    for _ in range(3):
        assert isinstance(auth(worker, "a@example.com", PASSWORD), Principal)
    assert len(calls) == 1
    for _ in range(2):
        assert reason(auth(worker, "a@example.com", PASSWORD + "x")) is FailureReason.BAD_SECRET
    assert len(calls) == 3  # failures are never cached


def test_password_change_disable_and_revocation_empty_the_verified_logins(worker, cli) -> None:
    cli.create_account("a@example.com", password=PASSWORD)
    calls = counted_verify(worker)
    assert isinstance(auth(worker, "a@example.com", PASSWORD), Principal)
    cli.set_password("a@example.com", "quartz-tulip-orbit-anvil-73")
    assert reason(auth(worker, "a@example.com", PASSWORD)) is FailureReason.BAD_SECRET
    assert isinstance(auth(worker, "a@example.com", "quartz-tulip-orbit-anvil-73"), Principal)
    cli.set_account_enabled("a@example.com", False)
    assert reason(auth(worker, "a@example.com", "quartz-tulip-orbit-anvil-73")) is FailureReason.DISABLED
    cli.set_account_enabled("a@example.com", True)
    before = len(calls)
    assert isinstance(auth(worker, "a@example.com", "quartz-tulip-orbit-anvil-73"), Principal)
    assert len(calls) == before + 1  # emptied by the change: argon2 again
    credential = [c for c in cli.list_credentials(account="a@example.com") if c.kind.value == "password"][0]
    cli.revoke(credential.id)  # a revoked account password no longer exists for a login
    assert reason(auth(worker, "a@example.com", "quartz-tulip-orbit-anvil-73")) is FailureReason.BAD_SECRET


def test_a_change_during_a_cache_fill_is_not_lost(store, clock) -> None:
    cache = CredentialCache(LocalChannel())
    generation = cache.fresh()
    snapshot = _snapshot_for(store, clock)
    cache.invalidate(Change(account_id=snapshot.account_id))  # the change lands while the row was read
    cache.put_app_password("key", snapshot, generation)
    assert cache.app_password("key") is None
    cache.put_app_password("key", snapshot, cache.fresh())
    assert cache.app_password("key") == snapshot


def test_entries_are_bounded_and_short_lived(store, clock) -> None:
    now = [0.0]
    cache = CredentialCache(LocalChannel(), CacheSettings(size=2, ttl=10, verified_ttl=5), clock=lambda: now[0])
    snapshot = _snapshot_for(store, clock)
    generation = cache.fresh()
    for key in ("k1", "k2", "k3"):
        cache.put_app_password(key, snapshot, generation)
    assert cache.app_password("k1") is None and cache.app_password("k3") == snapshot
    cache.remember_verified("a@example.com", PASSWORD, snapshot, generation)
    assert cache.verified("a@example.com", PASSWORD, snapshot)
    assert not cache.verified("a@example.com", PASSWORD + "x", snapshot)
    now[0] = 6
    assert not cache.verified("a@example.com", PASSWORD, snapshot)
    assert cache.app_password("k3") == snapshot
    now[0] = 11
    assert cache.app_password("k3") is None


def test_the_database_channel_counts_changes_in_their_transaction(store, worker, cli) -> None:
    def version() -> int:
        with store.session() as db:
            return int(db.execute(text("SELECT version FROM credential_epoch WHERE id = 1")).scalar_one())

    start = version()
    cli.create_account("a@example.com")
    issued = cli.create_app_password("a@example.com", "x")
    assert version() == start  # nothing cached can be stale from a creation
    cli.revoke(issued.credential.id)
    assert version() == start + 1
    with pytest.raises(Exception):
        cli.revoke("ap_missing")
    assert version() == start + 1


def _snapshot_for(store: Store, clock):
    from smtpgate.credentials.service import _snapshot

    service = CredentialService(store, app_key=b"k" * 32, hashing=PasswordHashing(FAST_HASH),
                                policy=PasswordPolicy(), clock=clock)
    service.create_account("a@example.com")
    issued = service.create_app_password("a@example.com", "x")
    with store.session() as db:
        row = db.get(CredentialRow, issued.credential.id)
        return _snapshot(row, row.account)


def test_the_verified_login_cache_can_be_switched_off(store, clock) -> None:
    service = CredentialService(store, app_key=b"k" * 32, hashing=PasswordHashing(FAST_HASH),
                                policy=PasswordPolicy(), clock=clock, cache=CacheSettings(verified_ttl=0))
    service.create_account("a@example.com", password=PASSWORD)
    calls = counted_verify(service)
    for _ in range(2):
        assert isinstance(auth(service, "a@example.com", PASSWORD), Principal)
    assert len(calls) == 2


def test_the_config_sets_the_login_cache(tmp_path) -> None:
    from smtpgate.config import Config

    config = Config.model_validate({"credentials": {"login_cache_ttl": "0s", "login_cache_size": 10}})
    assert config.credentials.login_cache_ttl == timedelta(0) and config.credentials.login_cache_size == 10
