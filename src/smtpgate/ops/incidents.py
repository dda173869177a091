"""Incidents: a leaked credential (or a whole account) contained in one step, and its report.

`open` does, in this order, what an operator would otherwise do by hand under pressure:
write the incident record (so a step that fails still leaves a trace), revoke the
credential or every credential of the account (the account password too: the account has
no usable password until its owner sets a new one), hold every queued message it
submitted and every one that arrives later, ban the sources that logged in with it in the
window unless they are the owner's known-good sources, and raise a critical alert to the
configured sinks and the owner. What each step did is written on the record once, so the
report stays true after the queue and the bans have moved on.

`show` is the report: the timeline of logins and messages of the credential(s) from the
start of the window (when, from where, recipients, domains, message ids; never a body),
what was held and what had already left. `close` releases, deletes or keeps what was held.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from smtpgate.audit.events import AUTH, MESSAGE, OK, StoredEvent
from smtpgate.audit.store import Alert
from smtpgate.credentials import CredentialInfo, CredentialKind, CredentialState
from smtpgate.credentials.api_tokens import Role
from smtpgate.errors import Conflict, Invalid, NotFound, OpError
from smtpgate.guard import GuardUnavailable
from smtpgate.guard.service import GuardRefused
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern
from smtpgate.ops.queue import Queue, QueueBusy, Selection
from smtpgate.store.models_incidents import IncidentRow
from smtpgate.timefmt import iso_utc

log = logging.getLogger("smtpgate.incidents")

OPEN, CLOSED = "open", "closed"
RESOLUTIONS = ("released", "deleted", "kept")
TIMELINE_LIMIT = 10_000


@dataclass(frozen=True)
class Incident:
    """One incident as recorded: its subject, what opening it contained, how it ended."""

    id: int
    opened_at: datetime
    opened_by: str
    subject_kind: str          # credential | account
    subject: str
    account: str
    reason: str
    window_start: datetime
    state: str
    contained: dict[str, Any]
    closed_at: datetime | None = None
    closed_by: str = ""
    resolution: str = ""

    @property
    def credential_ids(self) -> list[str]:
        return [c["id"] for c in self.contained.get("revoked", [])] or (
            [self.subject] if self.subject_kind == "credential" else [])

    def to_json(self) -> dict[str, Any]:
        c = self.contained
        return {
            "id": self.id, "state": self.state, "opened_at": iso_utc(self.opened_at), "opened_by": self.opened_by,
            self.subject_kind: self.subject, "account": self.account, "reason": self.reason,
            "window_start": iso_utc(self.window_start),
            "revoked": c.get("revoked", []), "password_reset": c.get("password_reset", False),
            "held": c.get("held", []), "left": c.get("left", []), "banned": c.get("banned", []),
            "spared": c.get("spared", []), "alert_id": c.get("alert_id"), "problems": c.get("problems", []),
            "closed_at": iso_utc(self.closed_at), "closed_by": self.closed_by or None,
            "resolution": self.resolution or None,
        }


@dataclass(frozen=True)
class TimelineEntry:
    """A login or a message of the incident's credentials: metadata only, never a body."""

    time: datetime
    what: str                  # login | login-refused | message | message-refused
    remote_ip: str
    credential_id: str | None
    reason: str
    recipients: int = 0
    domains: tuple[str, ...] = ()
    message_id: str = ""
    fate: str = ""             # for a message: held | left | captured

    def to_json(self) -> dict[str, Any]:
        return {
            "time": iso_utc(self.time), "what": self.what, "remote_ip": self.remote_ip,
            "credential_id": self.credential_id, "reason": self.reason, "recipients": self.recipients,
            "domains": list(self.domains), "message_id": self.message_id or None, "fate": self.fate or None,
        }


@dataclass(frozen=True)
class Report:
    incident: Incident
    timeline: list[TimelineEntry] = field(default_factory=list)

    @property
    def sources(self) -> list[str]:
        return sorted({e.remote_ip for e in self.timeline if e.what == "login" and e.remote_ip})

    def to_json(self) -> dict[str, Any]:
        return {"incident": self.incident.to_json(), "timeline": [e.to_json() for e in self.timeline],
                "sources": self.sources}

    def to_html(self) -> str:
        """A self-contained page (no script, no external asset), every value escaped."""
        from smtpgate.ops.incident_html import render

        return render(self)


def _incident(row: IncidentRow) -> Incident:
    return Incident(row.id, row.opened_at, row.opened_by, row.subject_kind, row.subject, row.account, row.reason,
                    row.window_start, row.state, dict(row.contained or {}), row.closed_at, row.closed_by, row.resolution)


def _network(source: str) -> str:
    """The guard's source key (an IPv4 address or an IPv6 /64) as the network to ban."""
    return source if "/" in source else f"{source}/{128 if ':' in source else 32}"


class Incidents(Concern):
    @property
    def _queue_ops(self) -> Queue:
        return Queue(self.rt, self.journal)

    # ------------------------------------------------------------------ open

    async def open(self, actor: Actor, *, credential: str | None = None, account: str | None = None,
                   reason: str = "") -> Incident:
        """Revoke, hold, ban, alert and record, in one step (operator)."""
        if bool(credential) == bool(account):
            raise Invalid("name what leaked: one credential id or one account", code="incident-subject-required",
                          field="credential")
        if len(reason) > 2000:
            raise Invalid("the reason is longer than 2000 characters", code="reason-too-long", field="reason")
        target = f"credential:{credential}" if credential else f"account:{account}"
        # the database, the queue's locks and the alert run in threads: on a server this runs on the
        # event loop that also serves SMTP and delivers, which must never wait for a lock it holds
        with self.journal.step(actor, "incident.open", target, needs=Role.OPERATOR, reason=reason[:200]) as details:
            credentials, login = await asyncio.to_thread(self._subject, credential, account)
            since = datetime.now(UTC) - self.rt.config.incidents.window
            row_id = await asyncio.to_thread(self._insert, actor, "credential" if credential else "account",
                                             credential or login, login, reason, since)
            details["incident"] = row_id
            contained: dict[str, Any] = {"problems": []}
            ids = [c.id for c in credentials]
            contained["revoked"], contained["password_reset"] = await asyncio.to_thread(self._revoke, actor, credentials)
            contained["held"], contained["left"] = await asyncio.to_thread(
                self._hold, actor, credential, login, ids, since, contained["problems"])
            contained["banned"], contained["spared"] = await self._ban(
                actor, row_id, login, ids, since, account is not None, contained["problems"])
            await asyncio.to_thread(self._save, row_id, contained)
            contained["alert_id"] = await asyncio.to_thread(self._alert, row_id, credential, login, contained, reason)
            await asyncio.to_thread(self._save, row_id, contained)
            details.update(revoked=ids, held=len(contained["held"]), banned=[b["network"] for b in contained["banned"]])
            return await asyncio.to_thread(self._get, row_id)

    def _subject(self, credential: str | None, account: str | None) -> tuple[builtins.list[CredentialInfo], str]:
        if credential:
            info = self.rt.credentials.get_credential(credential)
            return [info], info.account
        assert account is not None
        login = self.rt.credentials.get_account(account).login
        return self.rt.credentials.list_credentials(account=login), login

    def _insert(self, actor: Actor, kind: str, subject: str, login: str, reason: str, window_start: datetime) -> int:
        with self.rt.store.session() as db:
            row = IncidentRow(opened_at=datetime.now(UTC), opened_by=actor.name[:200], subject_kind=kind,
                              subject=subject[:320], account=login[:320], reason=reason, window_start=window_start,
                              state=OPEN, contained={}, closed_by="", resolution="")
            db.add(row)
            db.flush()
            return row.id

    def _save(self, incident_id: int, contained: dict[str, Any]) -> None:
        with self.rt.store.session() as db:
            row = db.get(IncidentRow, incident_id)
            assert row is not None
            row.contained = dict(contained)

    def _revoke(self, actor: Actor, credentials: builtins.list[CredentialInfo]) -> tuple[builtins.list[dict[str, Any]], bool]:
        revoked, password = [], False
        for info in credentials:
            was = info.state is CredentialState.REVOKED
            self.rt.credentials.revoke(info.id, actor=actor.name)
            revoked.append({"id": info.id, "kind": str(info.kind), "name": info.name, "already": was})
            password = password or (info.kind is CredentialKind.PASSWORD and not was)
        return revoked, password

    def _hold(self, actor: Actor, credential: str | None, login: str, ids: builtins.list[str], since: datetime,
              problems: builtins.list[str]) -> tuple[builtins.list[str], builtins.list[str]]:
        """(held message ids, ids accepted in the window that had already left the queue)."""
        accepted = [e for e in self._events(ids, login if not credential else None, since)
                    if e.event.kind == MESSAGE and e.event.result == OK and e.event.details.get("id")]
        if not self.rt.config.delivery.uses_queue:
            return [], []  # capture only: nothing ever leaves
        selection = Selection(credential=credential) if credential else Selection(account=login)
        try:
            self._queue_ops.hold(actor, selection)
        except QueueBusy as exc:
            problems.append(f"{len(exc.result.busy)} message(s) were busy and are held by the rule from their next attempt")
        except OpError as exc:  # the hold rules file is unreadable: all mail is held anyway
            problems.append(f"queue hold: {exc.code}: {exc}")
        queued = {e.message.id for e in self.rt.queue.entries()
                  if (e.message.credential_id in ids if credential else (e.message.account or "").lower() == login.lower())}
        left = sorted({str(e.event.details["id"]) for e in accepted} - queued)
        return sorted(queued), left

    def _sources(self, login: str, ids: builtins.list[str], since: datetime,
                 whole_account: bool) -> tuple[set[str], set[str]]:
        """(the sources that logged in with these credentials in the window, the owner's sources)."""
        audit = self.rt.audit_store
        used = {e.source for e in self._events(ids, login if whole_account else None, since)
                if e.event.kind == AUTH and e.event.result == OK and e.source and e.event.credential_id in ids}
        known_since = datetime.now(UTC) - timedelta(seconds=self.rt.guard.settings.known_good_for)
        # the owner's sources: where other credentials of the account work; for a whole account,
        # where it logged in before the window (every credential of it is the incident's)
        owner = audit.login_sources(login, known_since, excluding=ids)
        if whole_account:
            owner |= audit.login_sources(login, known_since, before=since)
        return used, owner

    async def _ban(self, actor: Actor, incident_id: int, login: str, ids: builtins.list[str], since: datetime,
                   whole_account: bool, problems: builtins.list[str]) -> tuple[builtins.list[dict[str, Any]], builtins.list[dict[str, str]]]:
        """Ban each source that logged in with these credentials in the window, but the owner's."""
        used, owner = await asyncio.to_thread(self._sources, login, ids, since, whole_account)
        banned, spared = [], []
        length = self.rt.config.incidents.ban_for
        for source in sorted(used):
            if source in owner:
                spared.append({"source": source, "why": "known-good: the owner logs in from there"})
                continue
            network = _network(source)
            try:
                ban = await self.rt.guard.ban_network(network, length, reason=f"incident {incident_id}: used a leaked credential",
                                                      actor=actor.name)
            except GuardRefused as exc:
                spared.append({"source": source, "why": str(exc)[:200]})
                continue
            except GuardUnavailable:
                problems.append(f"the ban of {network} is recorded; the guard backend was unreachable")
                banned.append({"network": network, "until": iso_utc(datetime.now(UTC) + length)})
                continue
            banned.append({"network": ban.network, "until": iso_utc(datetime.fromtimestamp(ban.until, UTC))})
        return banned, spared

    def _alert(self, incident_id: int, credential: str | None, login: str, contained: dict[str, Any], reason: str) -> int | None:
        revoked = [c["id"] for c in contained["revoked"]]
        banned = [b["network"] for b in contained["banned"]]
        summary = (f"incident {incident_id}: {'credential ' + credential if credential else 'account ' + login} contained: "
                   f"{len(revoked)} credential(s) revoked, {len(contained['held'])} message(s) held, "
                   f"{len(banned)} source(s) banned")
        alert = Alert(
            rule="incident", severity="critical", summary=summary, dedupe_key=f"incident:{incident_id}",
            time=datetime.now(UTC), login=login, credential_id=credential,
            remote_ip=banned[0].rpartition("/")[0] if banned else "",
            details={"incident": incident_id, "reason": reason[:500], "revoked": revoked, "held": len(contained["held"]),
                     "left": len(contained["left"]), "banned": banned},
        )
        try:
            dispatcher = self.rt.audit.dispatcher
            stored = dispatcher.raise_alert(alert) if dispatcher is not None else None
        except OpError as exc:
            contained["problems"].append(f"the alert was not raised: {exc.code}")
            return None
        return stored.id if stored is not None else None

    # ------------------------------------------------------------------ read

    def list(self, actor: Actor, *, state: str | None = None, limit: int = 200) -> builtins.list[Incident]:
        if state is not None and state not in (OPEN, CLOSED):
            raise Invalid(f"{state!r} is not an incident state: expected open or closed", code="invalid-choice",
                          field="state", value=state)
        q = select(IncidentRow).order_by(IncidentRow.id.desc()).limit(limit)
        if state:
            q = q.where(IncidentRow.state == state)
        with self.rt.store.session() as db:
            return [_incident(r) for r in db.scalars(q)]

    def get(self, actor: Actor, incident_id: int) -> Incident:
        return self._get(incident_id)

    def report(self, actor: Actor, incident_id: int) -> Report:
        incident = self._get(incident_id)
        held, left = set(incident.contained.get("held", [])), set(incident.contained.get("left", []))
        captured = not self.rt.config.delivery.uses_queue
        events = self._events(incident.credential_ids, incident.account if incident.subject_kind == "account" else None,
                              incident.window_start)
        timeline = []
        for stored in sorted(events, key=lambda e: (e.event.time, e.id)):
            e = stored.event
            if e.kind == AUTH:
                what = "login" if e.result == OK else "login-refused"
                timeline.append(TimelineEntry(e.time, what, e.remote_ip, e.credential_id, e.reason))
            elif e.kind == MESSAGE:
                message_id = str(e.details.get("id") or "")
                fate = ("captured" if captured else "held" if message_id in held else "left" if message_id in left
                        else "") if e.result == OK else ""
                timeline.append(TimelineEntry(
                    e.time, "message" if e.result == OK else "message-refused", e.remote_ip, e.credential_id, e.reason,
                    int(e.details.get("rcpts") or 0), tuple(str(d) for d in e.details.get("domains") or ()), message_id, fate))
        return Report(incident, timeline)

    def _events(self, ids: builtins.list[str], account: str | None, since: datetime) -> builtins.list[StoredEvent]:
        audit = self.rt.audit_store
        if account:
            return [e for e in audit.query(account=account, since=since, limit=TIMELINE_LIMIT)
                    if e.event.kind in (AUTH, MESSAGE)]
        found: dict[int, StoredEvent] = {}
        for credential_id in ids:
            for e in audit.query(credential_id=credential_id, since=since, limit=TIMELINE_LIMIT):
                if e.event.kind in (AUTH, MESSAGE):
                    found[e.id] = e
        return list(found.values())

    def _get(self, incident_id: int) -> Incident:
        with self.rt.store.session() as db:
            row = db.get(IncidentRow, incident_id)
            if row is None:
                raise NotFound(f"no incident {incident_id}", code="incident-not-found", field="id", incident=incident_id)
            return _incident(row)

    # ------------------------------------------------------------------ close

    def close(self, actor: Actor, incident_id: int, *, release_held: bool = False, delete_held: bool = False) -> Incident:
        """Release or delete what was held (deleting mail is an admin's), or keep it held; then close."""
        if release_held and delete_held:
            raise Invalid("release or delete the held messages, not both", code="release-and-delete", field="release_held")
        resolution = "released" if release_held else "deleted" if delete_held else "kept"
        with self.journal.step(actor, "incident.close", str(incident_id), needs=Role.ADMIN if delete_held else Role.OPERATOR,
                               resolution=resolution) as details:
            incident = self._get(incident_id)
            if incident.state == CLOSED:
                raise Conflict(f"incident {incident_id} is closed already", code="incident-closed", incident=incident_id)
            if self.rt.config.delivery.uses_queue and resolution != "kept":
                selection = (Selection(credential=incident.subject) if incident.subject_kind == "credential"
                             else Selection(account=incident.account))
                if delete_held:
                    self._queue_ops.delete(actor, selection)
                details["count"] = self._queue_ops.release(actor, selection).count
            with self.rt.store.session() as db:
                row = db.get(IncidentRow, incident_id)
                assert row is not None
                row.state, row.closed_at, row.closed_by, row.resolution = CLOSED, datetime.now(UTC), actor.name[:200], resolution
            return self._get(incident_id)
