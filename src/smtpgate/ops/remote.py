"""The operations layer of a remote server, reached through its REST API (`smtpgate --api URL`).

`RemoteOperations` has the shape of `Operations`: the same concern names, methods and
value objects, so a CLI command runs unchanged whichever it is given. Each call is one
request under /api/v1 with the operator token; a problem+json answer becomes the same
`OpError` the server raised (its code, kind, field and parameters), so the CLI words it
and exits as it would locally. What has no route (a rotation's delivery to a local file,
a canary) is refused with `not-remote`. The actor argument is ignored: on the server the
token is the actor.
"""

from __future__ import annotations

import builtins
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import httpx

from smtpgate.audit.events import AuditEvent, StoredEvent
from smtpgate.credentials.invites import InviteInfo, IssuedInvite
from smtpgate.credentials.model import AccountInfo, CredentialInfo, CredentialKind, CredentialState, IssuedSecret
from smtpgate.credentials.scopes import ScopeRequest, Scopes
from smtpgate.delivery.capture import CapturedMessage
from smtpgate.delivery.queue import MessageState, QueueEntry
from smtpgate.errors import Invalid, Kind, OpError, Unauthorized, Unavailable
from smtpgate.guard import Ban
from smtpgate.guard.bans import BanRecord
from smtpgate.ops.accounts import AccountWithPassword
from smtpgate.ops.actor import Actor
from smtpgate.ops.journal import OperatorEvent
from smtpgate.ops.queue import QueuedMessage, QueueResult, Selection, Tick

TOKEN_ENV = "SMTPGATE_API_TOKEN"
KINDS = {422: Kind.INVALID, 404: Kind.NOT_FOUND, 409: Kind.CONFLICT, 403: Kind.FORBIDDEN, 401: Kind.UNAUTHORIZED,
         503: Kind.UNAVAILABLE, 502: Kind.FAILED}
PAGE = 1000  # the API's largest page


def not_remote(what: str) -> NoReturn:
    raise Invalid(f"{what} is not available through --api; run it on the server", code="not-remote", what=what)


class Http:
    """One httpx client with the token; answers turned into JSON or the server's OpError."""

    def __init__(self, base: str, token: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.base = base.rstrip("/")
        self.client = httpx.Client(base_url=self.base + "/api/v1", timeout=timeout, transport=transport,
                                   headers={"Authorization": f"Bearer {token}", "User-Agent": "smtpgate-cli"})

    def call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.client.request(method, path, json=json, params=query)
        except httpx.HTTPError as exc:
            raise Unavailable(f"the API at {self.base} is unreachable: {type(exc).__name__}: {exc}",
                              code="api-unreachable", url=self.base) from None
        if response.status_code >= 400:
            raise self.error(response)
        return response.json() if response.content and "json" in response.headers.get("content-type", "") else None

    def error(self, response: httpx.Response) -> OpError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict) or "code" not in body:
            return Unavailable(f"the API at {self.base} answered {response.status_code} {response.reason_phrase}",
                               code="api-unreachable", url=self.base)
        code, detail, params = str(body["code"]), str(body.get("detail", "")), dict(body.get("params") or {})
        if response.status_code == 401:
            return Unauthorized(f"the API at {self.base} refused the operator token: {detail}",
                                f"Set a valid token in ${TOKEN_ENV} or give --api-token-file FILE.",
                                code="api-token-refused")
        kind = KINDS.get(response.status_code, Kind.FAILED)
        params.pop("kind", None)
        error = OpError(detail, str(body.get("hint") or ""), code=code, kind=kind, field=body.get("field"), **params)
        error.malformed = bool(body.get("malformed", kind is Kind.INVALID))
        return error

    def close(self) -> None:
        self.client.close()


# ------------------------------------------------------------- JSON back into value objects

def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC) if value else None


def _at(value: str) -> datetime:
    parsed = _time(value)
    assert parsed is not None
    return parsed


def account(d: dict[str, Any]) -> AccountInfo:
    return AccountInfo(d["id"], d["login"], d["display_name"], d["owner"], d["notes"], d["enabled"],
                       d["require_app_passwords"], d["has_password"], _at(d["created_at"]), _at(d["updated_at"]),
                       role=d.get("role"), require_second_factor=bool(d.get("require_second_factor")))


def scopes(d: dict[str, Any]) -> Scopes:
    return Scopes(tuple(d["allowed_senders"]), tuple(d["allowed_networks"]), d["max_per_hour"], d["max_per_day"],
                  d["max_rcpt_per_hour"], d["max_rcpt_per_day"], tuple(d.get("allowed_recipients") or ()))


def credential(d: dict[str, Any]) -> CredentialInfo:
    legacy = d.get("legacy") or {}
    return CredentialInfo(
        id=d["id"], account=d["account"], kind=CredentialKind(d["kind"]), name=d["name"], notes=d["notes"],
        created_by=d["created_by"], created_at=_at(d["created_at"]), expires_at=_time(d["expires_at"]),
        revoked_at=_time(d["revoked_at"]), last_used_at=_time(d["last_used_at"]), last_used_ip=d["last_used_ip"],
        use_count=d["use_count"], scopes=scopes(d["scopes"]), state=CredentialState(d["state"]),
        rotated_from=d.get("rotated_from"), replaced_by=d.get("replaced_by"), delivery_target=d.get("delivery_target"),
        delivery_hook=tuple(d.get("delivery_hook") or ()), canary=bool(d.get("canary")),
        legacy_auth=legacy.get("auth"), legacy_tls=legacy.get("tls"),
    )


def issued(d: dict[str, Any]) -> IssuedSecret:
    return IssuedSecret(credential(d), d["secret"])


def ban_record(d: dict[str, Any]) -> BanRecord:
    return BanRecord(d["network"], _at(d["since"]), _at(d["until"]), d["strikes"], d["reason"], d["source"],
                     d["created_by"], _time(d.get("lifted_at")), d.get("lifted_by") or "", _at(d["since"]))


def queued(d: dict[str, Any]) -> QueuedMessage:
    return QueuedMessage(QueueEntry(CapturedMessage.from_json(d), MessageState.from_json(d)), bool(d["held"]))


def stored_event(d: dict[str, Any]) -> StoredEvent:
    event = AuditEvent(kind=d["event"], result=d["result"], reason=d["reason"], listener=d["listener"],
                       remote_ip=d["remote_ip"], tls=d["tls"], mechanism=d["mechanism"], login=d["login"],
                       credential_id=d["credential_id"], details=d.get("details") or {}, time=_at(d["time"]))
    return StoredEvent(d["id"], event, d.get("network") or "", "")


def operator_event(d: dict[str, Any]) -> OperatorEvent:
    return OperatorEvent(d["id"], _at(d["time"]), d["actor"], d["role"], d["face"], d["remote_ip"], d["action"],
                         d["target"], d["outcome"], d.get("details") or {})


def _scope_body(request: ScopeRequest | None) -> dict[str, Any]:
    s = request or ScopeRequest()
    return {"allow_from": list(s.allowed_senders), "allow_ip": list(s.allowed_networks), "max_per_hour": s.max_per_hour,
            "max_per_day": s.max_per_day, "max_rcpt_per_hour": s.max_rcpt_per_hour,
            "max_rcpt_per_day": s.max_rcpt_per_day, "allow_foreign_sender": s.allow_foreign_sender}


def _duration(value: str | timedelta | None) -> str | None:
    if isinstance(value, timedelta):
        return f"{int(value.total_seconds())}s"
    return value


# ------------------------------------------------------------------------- concerns

class _Remote:
    def __init__(self, http: Http) -> None:
        self.http = http


class RemoteAccounts(_Remote):
    def list(self, actor: Actor) -> builtins.list[AccountInfo]:
        return [account(a) for a in self.http.call("GET", "/accounts")]

    def get(self, actor: Actor, login: str) -> AccountInfo:
        return account(self.http.call("GET", f"/accounts/{login}"))

    def create(self, actor: Actor, login: str, *, password: str | None = None, generate: bool = False,
               display_name: str = "", owner: str = "", notes: str = "",
               require_app_passwords: bool = False, invite: bool = False, invite_expires: str | timedelta | None = None,
               role: str | None = None, require_second_factor: bool = False) -> AccountWithPassword:
        d = self.http.call("POST", "/accounts", json={
            "login": login, "password": password, "generate": generate, "display_name": display_name, "owner": owner,
            "notes": notes, "require_app_passwords": require_app_passwords, "invite": invite,
            "invite_expires": _duration(invite_expires), "role": role, "require_second_factor": require_second_factor})
        return _with_invite(account(d), d.get("password"), d.get("invite"))

    def invite(self, actor: Actor, login: str, *, expires: str | timedelta | None = None) -> AccountWithPassword:
        d = self.http.call("POST", f"/accounts/{login}/invite", json={"expires": _duration(expires)})
        return _with_invite(self.get(actor, login), None, d)

    def set_password(self, actor: Actor, login: str, *, password: str | None = None,
                     generate: bool = False) -> AccountWithPassword:
        d = self.http.call("POST", f"/accounts/{login}/password", json={"password": password, "generate": generate})
        return AccountWithPassword(account(d), d.get("password"))

    def set_enabled(self, actor: Actor, login: str, enabled: bool) -> AccountInfo:
        return account(self.http.call("PATCH", f"/accounts/{login}", json={"enabled": enabled}))

    def update(self, actor: Actor, login: str, **changes: Any) -> AccountInfo:
        body = {k: v for k, v in changes.items() if v is not None}
        return account(self.http.call("PATCH", f"/accounts/{login}", json=body))


def _with_invite(info: AccountInfo, password: str | None, d: dict[str, Any] | None) -> AccountWithPassword:
    """The API shows an invitation's link once, in `url`; its secret stays in the link."""
    if not d:
        return AccountWithPassword(info, password)
    created_at, expires_at = _time(d["created_at"]), _time(d["expires_at"])
    assert created_at is not None and expires_at is not None
    invite = InviteInfo(id=d["id"], login=d["login"], created_by=d["created_by"], created_at=created_at,
                        expires_at=expires_at, used_at=_time(d.get("used_at")), revoked_at=_time(d.get("revoked_at")),
                        state=d["state"], require_second_factor=bool(d["require_second_factor"]))
    return AccountWithPassword(info, password, IssuedInvite(invite, secret=""), d.get("url"))


class RemoteAppPasswords(_Remote):
    def create(self, actor: Actor, login: str, name: str, *, scopes: ScopeRequest | None = None,
               expires: str | timedelta | None = None, notes: str = "", canary: bool = False) -> IssuedSecret:
        if canary:
            not_remote("a canary")
        body = {"name": name, "expires": _duration(expires), "notes": notes, **_scope_body(scopes)}
        return issued(self.http.call("POST", f"/accounts/{login}/app-passwords", json=body))


class RemoteCredentials(_Remote):
    def list(self, actor: Actor, *, account: str | None = None,
             state: CredentialState | None = None) -> builtins.list[CredentialInfo]:
        found = self.http.call("GET", "/credentials", params={"account": account, "state": state and str(state)})
        return [credential(c) for c in found]

    def get(self, actor: Actor, credential_id: str) -> CredentialInfo:
        return credential(self.http.call("GET", f"/credentials/{credential_id}"))

    def due(self, actor: Actor) -> builtins.list[CredentialInfo]:
        return [credential(c) for c in self.http.call("GET", "/credentials/due")]

    def revoke(self, actor: Actor, credential_id: str) -> CredentialInfo:
        return credential(self.http.call("POST", f"/credentials/{credential_id}/revoke"))

    def rotate(self, actor: Actor, credential_id: str, *, overlap: str | timedelta | None = None,
               target: object = None, hook: object = None) -> tuple[IssuedSecret, CredentialInfo]:
        if target is not None or hook is not None:
            not_remote("delivering a rotated secret (--deliver, --then)")
        d = self.http.call("POST", f"/credentials/{credential_id}/rotate", json={"overlap": _duration(overlap)})
        return issued(d["new"]), credential(d["old"])


class RemoteBans(_Remote):
    def list(self, actor: Actor) -> builtins.list[BanRecord]:
        return [ban_record(b) for b in self.http.call("GET", "/bans")]

    async def add(self, actor: Actor, network: str, length: str | timedelta = "1h", *, reason: str = "") -> Ban:
        d = self.http.call("POST", "/bans", json={"network": network, "duration": _duration(length), "reason": reason})
        return Ban(d["network"], 0.0, _at(d["until"]).timestamp(), 0, d["reason"], "manual")

    async def remove(self, actor: Actor, network: str) -> None:
        self.http.call("DELETE", f"/bans/{network}")

    async def close(self) -> None:
        return None


class RemoteAudit(_Remote):
    def _pages(self, params: dict[str, Any], limit: int) -> builtins.list[dict[str, Any]]:
        items: builtins.list[dict[str, Any]] = []
        cursor = None
        while len(items) < limit:
            page = self.http.call("GET", "/audit", params={**params, "limit": min(PAGE, limit - len(items)),
                                                           "cursor": cursor})
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return items

    def events(self, actor: Actor, *, since_: str | None = None, account: str | None = None,
               credential: str | None = None, result: str | None = None, kind: str | None = None,
               limit: int = 200) -> builtins.list[StoredEvent]:
        params = {"since": since_, "account": account, "credential": credential, "result": result, "kind": kind}
        return [stored_event(e) for e in self._pages(params, limit)]

    def operator(self, actor: Actor, *, since_: str | None = None, who: str | None = None, action: str | None = None,
                 limit: int = 200) -> builtins.list[OperatorEvent]:
        params = {"kind": "operator", "since": since_, "actor": who, "action": action}
        return [operator_event(e) for e in self._pages(params, limit)]


class RemoteQueue(_Remote):
    def list(self, actor: Actor, *, held_only: bool = False) -> builtins.list[QueuedMessage]:
        return [queued(m) for m in self.http.call("GET", "/queue", params={"held": "true" if held_only else None})]

    def show(self, actor: Actor, message_id: str) -> QueuedMessage:
        return queued(self.http.call("GET", f"/queue/{message_id}"))

    def _result(self, d: dict[str, Any], selection: Selection) -> QueueResult:
        return QueueResult(d["count"], selection, still_held=list(d["still_held"]), rule=d["rule"])

    def _act(self, verb: str, selection: Selection) -> QueueResult:
        if selection.message_id and not (selection.credential or selection.account or selection.everything):
            return self._result(self.http.call("POST", f"/queue/{selection.message_id}/{verb}"), selection)
        if selection.message_id:  # with a credential or an account too: the server refuses the mix
            raise Invalid("name the messages: one id, a credential or an account", code="selection-required",
                          field="message_id")
        body = {"credential": selection.credential, "account": selection.account,
                **({"all": True} if selection.everything else {})}
        return self._result(self.http.call("POST", f"/queue/{verb}", json=body), selection)

    def hold(self, actor: Actor, selection: Selection, tick: Tick | None = None) -> QueueResult:
        return self._act("hold", selection)

    def release(self, actor: Actor, selection: Selection, tick: Tick | None = None) -> QueueResult:
        return self._act("release", selection)

    def retry(self, actor: Actor, message_id: str | None = None, tick: Tick | None = None) -> QueueResult:
        if message_id is None:
            not_remote("retrying every message")
        return self._result(self.http.call("POST", f"/queue/{message_id}/retry"), Selection(message_id=message_id))

    def delete(self, actor: Actor, selection: Selection, tick: Tick | None = None) -> QueueResult:
        if not selection.message_id or selection.credential or selection.account:
            not_remote("deleting by credential or account")
        return self._result(self.http.call("DELETE", f"/queue/{selection.message_id}"), selection)


class RemoteOperations:
    """`Operations` over HTTP: the concerns a remote CLI drives."""

    def __init__(self, base: str, token: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self.http = Http(base, token, transport=transport)
        self.accounts = RemoteAccounts(self.http)
        self.app_passwords = RemoteAppPasswords(self.http)
        self.credentials = RemoteCredentials(self.http)
        self.bans = RemoteBans(self.http)
        self.audit = RemoteAudit(self.http)
        self.queue = RemoteQueue(self.http)

    def __getattr__(self, name: str) -> Any:
        not_remote("this command")  # e.g. one that reads the server's own config

    def close(self) -> None:
        self.http.close()
