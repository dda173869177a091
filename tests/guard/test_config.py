"""The [guard], [audit] and [alerts] sections: defaults that work, errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpgate.config import ConfigError, load_config


def load(tmp_path: Path, text: str):
    path = tmp_path / "smtpgate.toml"
    path.write_text(text)
    return load_config(path)


def test_defaults_work_out_of_the_box(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.guard.backend == "shared" and config.guard.ip_failures == 10
    assert config.guard.ban_for.total_seconds() == 900 and config.guard.max_ban.total_seconds() == 86400
    assert "127.0.0.0/8" in config.guard.allow_networks
    assert config.audit.retention.days == 90 and config.alerts.webhook_url == ""


@pytest.mark.parametrize(("text", "words"), [
    ('[guard]\nbackend = "memcached"\n', ["guard.backend", "'shared'", "'redis'", "'memory'"]),
    ('[guard]\nallow_networks = ["10.0.0.300/8"]\n', ["guard.allow_networks", "not a network"]),
    ('[guard]\nredis_url = "http://x"\n', ["guard.redis_url", "redis://"]),
    ('[guard]\nban_for = "soon"\n', ["guard.ban_for", "duration"]),
    ('[guard]\nip_failures = 0\n', ["guard.ip_failures"]),
    ('[alerts]\nwebhook_url = "ftp://x"\n', ["alerts.webhook_url", "http://"]),
    ('[audit]\nretention = "forever"\n', ["audit.retention"]),
    ('[guard]\nban_seconds = 5\n', ["guard.ban_seconds", "unknown key"]),
])
def test_bad_values_are_named_with_the_fix(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    for word in words:
        assert word in str(info.value)


def test_the_init_template_holds_every_key(tmp_path: Path) -> None:
    from smtpgate.cli.init_cmd import TEMPLATE
    from smtpgate.config import AlertsConfig, AuditConfig, GuardConfig

    text = TEMPLATE.format(hostname="h", database_url="", listen="127.0.0.1", submission_port=1,
                           submissions_port=2, admin_port=3)
    config = load(tmp_path, text)
    assert config.guard == GuardConfig() and config.audit == AuditConfig() and config.alerts == AlertsConfig()
    import tomllib

    raw = tomllib.loads(text)
    assert set(raw["guard"]) == set(GuardConfig.model_fields)
    assert set(raw["audit"]) == set(AuditConfig.model_fields)
    assert set(raw["alerts"]) == set(AlertsConfig.model_fields)
