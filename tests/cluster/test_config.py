"""`[cluster] enabled = true` needs PostgreSQL and the Redis guard: refused at load otherwise,
with the keys named."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpgate.config import ConfigError, load_config

PG = 'url = "postgresql+psycopg://smtpgate@db.example.net/smtpgate"'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "smtpgate.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, named", [
    ('[cluster]\nenabled = true\n', ["`[database] url`", "`[guard] backend`"]),
    (f'[database]\n{PG}\n[cluster]\nenabled = true\n', ["`[guard] backend` must be \"redis\""]),
    ('[guard]\nbackend = "redis"\n[cluster]\nenabled = true\n', ["`[database] url` must be a postgresql"]),
])
def test_a_cluster_without_postgresql_or_redis_is_refused_naming_the_keys(tmp_path: Path, text: str, named: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    message = str(caught.value)
    assert "`[cluster] enabled = true` needs" in message and str(tmp_path) in message
    for key in named:
        assert key in message


def test_a_complete_cluster_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f'[database]\n{PG}\n[guard]\nbackend = "redis"\n'
                                          '[cluster]\nenabled = true\nnode_name = "a"\nlease = "10s"\n'))
    assert config.cluster.enabled and config.cluster.lease.total_seconds() == 10
    assert not load_config(write(tmp_path, "")).cluster.enabled  # off by default


def test_a_lease_under_a_second_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cluster.lease"):
        load_config(write(tmp_path, '[cluster]\nlease = "500ms"\n'))
