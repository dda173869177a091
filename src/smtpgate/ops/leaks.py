"""A secret scanner reports our secrets found in public: check the signature, then act by policy.

The reporter is not an operator and holds no API token: the signature over the body
(`credentials.leak_reports`) is what lets it in, and it acts as an operator named after
its key (`leaks:KEY_ID`) in the operator audit trail. A bad or missing signature changes
nothing and counts as a failed login of its source in the guard.

For each live secret, `[incidents] on_leak` decides: "revoke" opens an incident for an app
password (revoke, hold, ban, alert) and revokes a leaked API token or service account at
once; "alert" only raises a critical alert. A canary is never revoked: finding it in
public is what it was planted for, and its use is what sounds the alarm.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from smtpgate.audit.store import Alert
from smtpgate.credentials import api_tokens, app_passwords, service_accounts
from smtpgate.credentials.api_tokens import Role
from smtpgate.credentials.leak_reports import KEY_ID_HEADER, SIGNATURE_HEADER, ReportedToken, ReporterKeys, parse_report
from smtpgate.credentials.redaction import redact
from smtpgate.errors import Forbidden, NotFound, Unauthorized
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern
from smtpgate.ops.journal import Journal

if TYPE_CHECKING:
    from smtpgate.ops.incidents import Incidents
    from smtpgate.runtime import Runtime

log = logging.getLogger("smtpgate.leaks")
GUARD_LOGIN = "-leaks-"  # the guard's login counter for bad leak-report signatures: never a real login
TRUE_POSITIVE, FALSE_POSITIVE = "true_positive", "false_positive"


@dataclass(frozen=True)
class Verdict:
    """One reported token, named only by its hash: what it is here and what was done."""

    token_hash: str
    token_type: str
    label: str
    kind: str = ""               # app-password | api-token | service-account-secret
    state: str = "unknown"       # live | revoked | expired | unknown
    credential_id: str | None = None
    action: str = "none"         # incident | revoked | alerted | none
    incident_id: int | None = None

    def reply(self) -> dict[str, str]:
        """The programme's reply shape."""
        return {"token_hash": self.token_hash, "token_type": self.token_type, "label": self.label}

    def to_json(self) -> dict[str, Any]:
        return {**self.reply(), "kind": self.kind or None, "state": self.state, "credential_id": self.credential_id,
                "action": self.action, "incident_id": self.incident_id}


class Leaks(Concern):
    def __init__(self, runtime: Runtime, journal: Journal, incidents: Incidents) -> None:
        super().__init__(runtime, journal)
        self._incidents = incidents

    async def report(self, body: bytes, *, key_id: str | None, signature: str | None,
                     remote_ip: str = "") -> builtins.list[Verdict]:
        """Verify, then classify each token and act on the live ones by policy."""
        settings = self.rt.config.incidents
        if not key_id or not signature:  # unsigned is refused first, configured or not
            raise Unauthorized(f"a leak report must be signed ({KEY_ID_HEADER} and {SIGNATURE_HEADER})",
                               code="unauthorized")
        if not settings.leak_report_keys:
            raise NotFound("leak reports are not taken here", "Set [incidents] leak_report_keys to the reporters' keys.",
                           code="leak-reports-off")
        keys = ReporterKeys.load(self.rt.config.path(settings.leak_report_keys))
        try:
            reporter = keys.verify(body, key_id, signature)
        except (Unauthorized, Forbidden) as exc:
            log.warning("leak report refused from %s: %s", remote_ip or "-", exc.code)
            if remote_ip:
                await self.rt.guard.auth_failed(remote_ip, GUARD_LOGIN)
            raise
        tokens = parse_report(body)
        actor = Actor(f"leaks:{reporter}"[:200], Role.OPERATOR, "api", remote_ip)
        verdicts = [await self._one(actor, token, settings.on_leak) for token in tokens]
        live = [v for v in verdicts if v.state == "live"]
        self.journal.record(actor, "leak.report", reporter, "ok", {
            "tokens": len(verdicts), "true_positive": sum(v.label == TRUE_POSITIVE for v in verdicts),
            "live": len(live), "policy": settings.on_leak,
            "incidents": [v.incident_id for v in live if v.incident_id is not None],
        })
        log.warning("leak report from %s: %d token(s), %d ours, %d live", reporter, len(verdicts),
                    sum(v.label == TRUE_POSITIVE for v in verdicts), len(live))
        return verdicts

    def _status(self, token: str) -> tuple[str, str, str | None]:
        """(kind, state, id) of a token; state "unknown" for anything not ours or not known here."""
        if token.startswith(app_passwords.PREFIX):
            return ("app-password", *self.rt.credentials.secret_status(token))
        if token.startswith(api_tokens.PREFIX):
            return ("api-token", *self.rt.credentials.api_tokens.secret_status(token))
        if token.startswith(service_accounts.PREFIX):
            return ("service-account-secret", *self.rt.tokens.client_secret_status(token))
        return "", "unknown", None

    async def _one(self, actor: Actor, token: ReportedToken, policy: str) -> Verdict:
        kind, state, ident = await asyncio.to_thread(self._status, token.token)
        label = TRUE_POSITIVE if ident is not None else FALSE_POSITIVE
        verdict = Verdict(token.token_hash, token.type, label, kind, state, ident)
        if state != "live" or ident is None:
            return verdict
        where = redact(token.url) or "an unnamed place"
        reason = f"leaked: reported by {actor.name.removeprefix('leaks:')} at {where}" + (
            f" ({redact(token.source)})" if token.source else "")
        info = await asyncio.to_thread(self.rt.credentials.get_credential, ident) if kind == "app-password" else None
        canary, login = (info.canary, info.account) if info is not None else (False, "")
        if policy == "revoke" and not canary:
            if kind == "app-password":
                incident = await self._incidents.open(actor, credential=ident, reason=reason)
                return _with(verdict, action="incident", incident_id=incident.id)
            await asyncio.to_thread(self._revoke, actor, kind, ident)
            await asyncio.to_thread(self._alert, verdict, reason, login, revoked=True)
            return _with(verdict, action="revoked")
        await asyncio.to_thread(self._alert, verdict, reason, login, revoked=False)
        return _with(verdict, action="alerted")

    def _revoke(self, actor: Actor, kind: str, ident: str) -> None:
        """A leaked API token or service account: revoked at once (an app password gets an incident)."""
        if kind == "api-token":
            with self.journal.step(actor, "api-token.revoke", ident, needs=Role.OPERATOR, reason="leaked"):
                self.rt.credentials.api_tokens.revoke(ident, actor=actor.name)
        else:
            with self.journal.step(actor, "service-account.revoke", ident, needs=Role.OPERATOR, reason="leaked"):
                self.rt.tokens.revoke_service_account(ident, actor=actor.name)

    def _alert(self, verdict: Verdict, reason: str, login: str, *, revoked: bool) -> None:
        summary = f"the {verdict.kind} {verdict.credential_id} was found in public" + (
            " and revoked" if revoked else "; revoke it (incident open --credential)")
        alert = Alert(rule="leaked-secret", severity="critical", summary=summary,
                      dedupe_key=f"leak:{verdict.token_hash[:32]}:{int(revoked)}", time=datetime.now(UTC), login=login,
                      credential_id=verdict.credential_id, details={"reason": reason[:500], "kind": verdict.kind,
                                                                    "token_hash": verdict.token_hash})
        dispatcher = self.rt.audit.dispatcher
        if dispatcher is not None:
            dispatcher.raise_alert(alert)


def _with(verdict: Verdict, **changes: Any) -> Verdict:
    from dataclasses import replace

    return replace(verdict, **changes)
