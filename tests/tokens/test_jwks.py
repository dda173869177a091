"""Signing keys on disk (life cycle, permissions, several workers) and external key sets
(TTL cache, one refresh per unknown kid, outages), the latter over real HTTP on loopback."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from smtpgate.credentials.jwks import KeysUnavailable, RemoteKeySet, SigningKeys
from tests.tokens.idp import TestIdP


class Ticker:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_first_key_is_made_on_first_use_private_and_0600(tmp_path: Path) -> None:
    keys = SigningKeys(tmp_path / "keys", "ES256", keep_retired=3600)
    assert keys.published() == []
    active = keys.active()
    files = list((tmp_path / "keys").glob("*.jwk.json"))
    assert [f.name for f in files] == [f"{active.kid}.jwk.json"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    (public,) = keys.jwks()["keys"]
    assert public["kid"] == active.kid and public["alg"] == "ES256" and public["use"] == "sig"
    assert "d" not in public and "d" in json.loads(files[0].read_text())["jwk"]
    assert keys.active().kid == active.kid  # stable


def test_another_worker_sees_a_rotation_at_once(tmp_path: Path) -> None:
    ticker = Ticker()
    one = SigningKeys(tmp_path, "ES256", keep_retired=3600, clock=ticker)
    two = SigningKeys(tmp_path, "ES256", keep_retired=3600, clock=ticker)
    first = one.active()
    assert two.active().kid == first.kid
    ticker.now += 10
    second = one.rotate()
    assert two.active().kid == second.kid
    assert two.verification_key(first.kid) is not None  # still verifies
    ticker.now += 3601
    assert two.verification_key(first.kid) is None  # retired for longer than any token lives
    assert one.prune() == [first.kid]
    assert [k.kid for k in two.published()] == [second.kid]


def test_eddsa_keys(tmp_path: Path) -> None:
    keys = SigningKeys(tmp_path, "EdDSA", keep_retired=60)
    keys.active()
    (public,) = keys.jwks()["keys"]
    assert public["kty"] == "OKP" and public["crv"] == "Ed25519" and public["alg"] == "EdDSA"


def test_a_key_file_others_can_read_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    keys = SigningKeys(tmp_path, "ES256", keep_retired=60)
    leaked = keys.active()
    path = tmp_path / f"{leaked.kid}.jwk.json"
    path.chmod(0o644)
    fresh = SigningKeys(tmp_path, "ES256", keep_retired=60)
    with caplog.at_level(logging.ERROR, logger="smtpgate.tokens"):
        assert fresh.verification_key(leaked.kid) is None
        assert fresh.active().kid != leaked.kid
    assert "chmod 600" in caplog.text


def test_unsupported_algorithm(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SigningKeys(tmp_path, "HS256", keep_retired=60)


# ---------------------------------------------------------------------- remote sets


@pytest.fixture
def idp():
    provider = TestIdP()
    yield provider
    provider.close()


def test_cached_for_the_ttl(idp: TestIdP) -> None:
    ticker = Ticker()
    keys = RemoteKeySet(url=idp.jwks_url, ttl=600, min_refresh=30, clock=ticker)
    kid = str(idp.rsa.kid)
    assert keys.key(kid) is not None and keys.key(kid) is not None
    assert idp.fetches == 1
    ticker.now += 601
    assert keys.key(kid) is not None
    assert idp.fetches == 2


def test_unknown_kid_refreshes_once_and_not_too_often(idp: TestIdP) -> None:
    ticker = Ticker()
    keys = RemoteKeySet(url=idp.jwks_url, ttl=3600, min_refresh=30, clock=ticker)
    keys.key(str(idp.rsa.kid))
    new = idp.rotate()
    assert keys.key(str(new.kid)) is None  # fetched moments ago: no refresh yet
    assert idp.fetches == 1
    ticker.now += 31
    assert keys.key(str(new.kid)) is not None  # one refresh finds the new key
    assert keys.key("made-up") is None
    assert idp.fetches == 2  # and a made-up kid right after does not fetch again


def test_outages(idp: TestIdP) -> None:
    ticker = Ticker()
    keys = RemoteKeySet(url=idp.jwks_url, ttl=60, min_refresh=30, clock=ticker)
    idp.fail = True
    with pytest.raises(KeysUnavailable):
        keys.key(str(idp.rsa.kid))
    idp.fail = False
    assert keys.key(str(idp.rsa.kid)) is not None
    idp.fail = True
    ticker.now += 61
    assert keys.key(str(idp.rsa.kid)) is not None  # stale keys beat no keys during an outage


def test_without_kid_only_a_single_key_set_answers(idp: TestIdP, tmp_path: Path) -> None:
    both = RemoteKeySet(file=idp.write_jwks(tmp_path / "jwks.json"))
    assert both.key(None) is None
    idp.published = [idp.ec]
    one = RemoteKeySet(file=idp.write_jwks(tmp_path / "one.json"))
    assert one.key(None) is not None and one.key(str(idp.ec.kid)) is not None


def test_bad_key_sets(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KeysUnavailable, match="cannot read"):
        RemoteKeySet(file=tmp_path / "bad.json").key("x")
    (tmp_path / "empty.json").write_text('{"keys": []}')
    with pytest.raises(KeysUnavailable, match="not a valid JWKS"):
        RemoteKeySet(file=tmp_path / "empty.json").key("x")
    with pytest.raises(KeysUnavailable):
        RemoteKeySet(url="http://127.0.0.1:9/jwks.json", timeout=2).key("x")
    with pytest.raises(ValueError):
        RemoteKeySet()
