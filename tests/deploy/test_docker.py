"""Dockerfile, .dockerignore, compose.yaml and the entrypoint.

No container engine runs here: the files are checked for what they must say (stages, a
non-root user, a health check on /healthz, no secret baked in, PostgreSQL and Redis on an
internal network), and the entrypoint and the health check command run for real, against a
real PostgreSQL, Redis and `smtpgate serve` on loopback.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from smtpgate.config import load_config
from tests.conftest import PG_URL
from tests.smtp.server_harness import free_port

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"
SECRETISH = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE", re.I)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for word, rest in instructions():
        if word == "FROM":
            result.append([])
        if result:
            result[-1].append((word, rest))
    return result


def test_dockerfile_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    build, runtime = stages()
    assert build[0][1].endswith(" AS build") and runtime[0][1].endswith(" AS runtime")
    assert any(w == "COPY" and a.startswith("--from=build /opt/smtpgate ") for w, a in runtime)
    assert not any(w == "RUN" and "pip install" in a for w, a in runtime), "the runtime stage installs nothing"
    words = [w for w, _ in runtime]
    users = [a for w, a in runtime if w == "USER"]
    assert len(users) == 1 and users[0].split(":")[0] not in {"root", "0"}
    assert words.index("USER") < words.index("ENTRYPOINT"), "the user is set before the program starts"
    user = users[0].split(":")[0]
    assert any(w == "RUN" and "useradd --system" in a and user in a.split() for w, a in runtime)
    assert [a for w, a in runtime if w == "EXPOSE"] == ["2587 2465"]


def test_dockerfile_health_check_asks_the_admin_listener() -> None:
    checks = [a for w, a in instructions() if w == "HEALTHCHECK"]
    assert len(checks) == 1 and "CMD" in checks[0]
    assert "http://127.0.0.1:8025/healthz" in checks[0]
    assert "--admin-port 8025" in ENTRYPOINT.read_text()  # where the entrypoint puts the admin listener


def test_no_secret_is_baked_into_the_image() -> None:
    for word, rest in instructions():
        if word in {"ENV", "ARG", "LABEL"}:
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_.]*)=", rest) or rest.split()[:1]
            assert not [n for n in names if SECRETISH.search(n)], f"{word} {rest}"
        if word in {"COPY", "ADD"} and "--from=" not in rest:  # from the build context, not from a stage
            sources = [s for s in shlex.split(rest) if not s.startswith("--")][:-1]
            for source in sources:
                assert not re.search(r"(^|/)(data|secrets|\.venv|tls)(/|$)|\.(key|pem)$", source), source
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not ignored(source), f"COPY {source} is excluded by .dockerignore"
    for secret in ("data/secrets/app-password.key", ".venv/bin/python", "data/tls/server.key", "tests/conftest.py",
                   "deploy/docker/db_password"):
        assert ignored(secret), f".dockerignore lets {secret} into the build context"


def ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    verdict = False
    for pattern in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.replace("**/", "")) for p in prefixes):
            verdict = not negate
    return verdict


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_runs_smtpgate_with_postgresql_and_redis_on_an_internal_network() -> None:
    spec = compose()
    services = spec["services"]
    assert set(services) == {"smtpgate", "postgres", "redis"}
    gate = services["smtpgate"]
    assert gate["build"] == "." and gate["depends_on"] == {
        "postgres": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"}}
    assert gate["ports"] == ["587:2587", "465:2465"]
    assert gate["cap_drop"] == ["ALL"] and gate["read_only"] is True
    assert "no-new-privileges:true" in gate["security_opt"]
    env = gate["environment"]
    url = make_url(env["SMTPGATE_DATABASE_URL"])
    assert url.drivername == "postgresql+psycopg" and url.host == "postgres" and url.password is None
    assert make_url(env["SMTPGATE_REDIS_URL"].replace("redis://", "redis+x://")).host == "redis"
    assert spec["networks"]["backend"]["internal"] is True
    for name in ("postgres", "redis"):
        assert services[name]["networks"] == ["backend"] and "ports" not in services[name]
        assert services[name]["healthcheck"]["test"]
    assert services["postgres"]["environment"]["POSTGRES_USER"] == url.username
    assert services["postgres"]["environment"]["POSTGRES_DB"] == url.database


def test_compose_takes_the_password_from_a_secret_file_kept_out_of_git() -> None:
    spec = compose()
    for name, service in spec["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRETISH.search(key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), f"{name}: {key}={value}"
    secret_file = spec["secrets"]["db_password"]["file"]
    assert secret_file.removeprefix("./") in (ROOT / ".gitignore").read_text().split()
    assert spec["services"]["smtpgate"]["secrets"] == spec["services"]["postgres"]["secrets"] == ["db_password"]


def run_entrypoint(data: Path, env: dict[str, str], *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture
def container_env(tmp_path: Path, pg_schema_url: str) -> dict[str, str]:
    password = tmp_path / "db_password"
    password.write_text("unused-on-a-trust-server\n")
    bin_dir = str(Path(sys.executable).parent)
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SMTPGATE_")},
            "PATH": f"{bin_dir}:{os.environ['PATH']}", "SMTPGATE_DATA": str(tmp_path / "data"),
            "SMTPGATE_CONFIG": str(tmp_path / "data" / "smtpgate.toml"), "SMTPGATE_HOSTNAME": "mail.example.test",
            "SMTPGATE_DATABASE_URL": pg_schema_url, "SMTPGATE_DATABASE_PASSWORD_FILE": str(password),
            "SMTPGATE_REDIS_URL": "redis://127.0.0.1:6379/14", "SMTPGATE_LISTEN": "127.0.0.1"}


def test_entrypoint_initialises_once_for_postgresql_and_redis(container_env: dict[str, str], tmp_path: Path) -> None:
    first = run_entrypoint(tmp_path / "data", container_env, "account", "list", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == []
    config = load_config(tmp_path / "data" / "smtpgate.toml")
    assert config.hostname == "mail.example.test" and config.database.url == container_env["SMTPGATE_DATABASE_URL"]
    assert config.guard.backend == "redis" and config.guard.redis_url == "redis://127.0.0.1:6379/14"
    assert config.smtp.submission == "127.0.0.1:2587" and config.admin.listen == "127.0.0.1:8025"
    key = (tmp_path / "data" / "secrets" / "app-password.key").read_bytes()
    again = run_entrypoint(tmp_path / "data", container_env, "account", "list", "--json")
    assert again.returncode == 0 and "Initialised" not in again.stdout + again.stderr
    assert (tmp_path / "data" / "secrets" / "app-password.key").read_bytes() == key  # never re-made


def test_health_check_command_tells_a_serving_instance_from_none(container_env: dict[str, str], tmp_path: Path) -> None:
    check = next(a for w, a in instructions() if w == "HEALTHCHECK")
    command = json.loads(check[check.index("CMD") + 3:].strip())
    admin = free_port()
    command = [sys.executable if c == "python" else c.replace(":8025/", f":{admin}/") for c in command]
    assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0  # nothing listens yet
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(["sh", str(ENTRYPOINT), "serve", "--workers", "1", "--port", str(free_port()),
                              "--tls-port", str(free_port()), "--admin-port", str(admin)],
                             env=container_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while subprocess.run(command, capture_output=True, timeout=30).returncode != 0:
            assert serve.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
    finally:
        serve.terminate()
        assert serve.wait(60) == 0, (tmp_path / "serve.log").read_text()
