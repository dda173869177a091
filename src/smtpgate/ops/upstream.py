"""The gateway's own credential for the smarthost: set it (encrypted), show its state, test it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtpgate.delivery.routes import upstream_secrets
from smtpgate.delivery.upstream import UpstreamCredentialError
from smtpgate.errors import Invalid, OpError
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern


@dataclass(frozen=True)
class UpstreamState:
    """Where the relay goes and whether a password is set: never the password."""

    host: str
    port: int
    tls: str
    verify: bool
    username: str
    password_set: bool
    password_file: str
    key_source: str
    problem: str
    problem_code: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "tls": self.tls, "verify": self.verify, "username": self.username,
                "password_set": self.password_set, "password_file": self.password_file, "key_source": self.key_source,
                "problem": self.problem}


class Upstream(Concern):
    def set_password(self, actor: Actor, password: str) -> str:
        """Store (or rotate) the password encrypted; the relay re-reads it. Returns the file it went to."""
        with self.journal.step(actor, "upstream.set-password", self.rt.config.delivery.relay.host):
            secrets = upstream_secrets(self.rt.config)
            secrets.set_password(password)
            return str(secrets.password_path)

    def show(self, actor: Actor) -> UpstreamState:
        relay = self.rt.config.delivery.relay
        secrets = upstream_secrets(self.rt.config)
        problem, code = "", ""
        if secrets.is_set():
            try:
                secrets.password()
            except UpstreamCredentialError as exc:
                problem, code = str(exc), exc.code
        return UpstreamState(relay.host, relay.port, relay.tls, relay.verify, relay.username, secrets.is_set(),
                             str(secrets.password_path), secrets.key_source(), problem, code)

    async def test(self, actor: Actor) -> str:
        """Connect with TLS and log in, then quit; no mail is sent. The TLS version on success."""
        from smtpgate.delivery.relay import RelayRoute

        if not self.rt.config.delivery.relay.host:
            raise Invalid("no smarthost is configured", "Set [delivery.relay] host in the config.",
                          code="no-smarthost")
        route = RelayRoute.from_config(self.rt.config)
        try:
            return await route.check()
        except UpstreamCredentialError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is reported plainly
            raise OpError(f"{route.remote}: {exc}", code="smarthost-failed", remote=route.remote) from None
