"""The API's bodies: what each route takes and returns, as the OpenAPI document shows them.

Response models are built from the same `to_json()` the CLI prints with `--json`, and
forbid extra fields: a value object that grows a field without its model here fails
the tests instead of drifting from the published schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from smtpgate.credentials.scopes import MAX_LIMIT


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def of(cls, value: Any) -> Any:
        return cls.model_validate(value.to_json() if hasattr(value, "to_json") else value)


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ problems

class Problem(BaseModel):
    """RFC 9457 problem details; `code` is stable (docs/api.md lists them)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    field: str | None = None
    hint: str | None = None
    errors: list[dict[str, Any]] | None = None
    params: dict[str, Any] | None = Field(None, description="The values the detail was made from (never a secret).")
    malformed: bool | None = Field(None, description="422 only: the input is not well-formed, rather than refused.")


# ------------------------------------------------------------------ accounts

class Scopes(Out):
    allowed_senders: list[str]
    allowed_networks: list[str]
    max_per_hour: int | None
    max_per_day: int | None
    max_rcpt_per_hour: int | None
    max_rcpt_per_day: int | None
    allowed_recipients: list[str] | None = Field(None, description="A device credential's only recipients.")


class Account(Out):
    id: int
    login: str
    display_name: str
    owner: str
    notes: str
    enabled: bool
    require_app_passwords: bool
    has_password: bool
    created_at: datetime
    updated_at: datetime
    role: Literal["viewer", "operator", "admin"] | None = Field(None, description="The operators' console role; null: none.")
    require_second_factor: bool = Field(False, description="The owner must have a second factor.")


class Invite(Out):
    id: str
    login: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    state: Literal["pending", "used", "expired", "revoked"]
    require_second_factor: bool
    url: str | None = Field(None, description="The one-time link, only in the answer that made it.")


class AccountCreated(Account):
    password: str | None = Field(None, description="Only when generate was true: the one time it is shown.")
    invite: Invite | None = Field(None, description="Only when invite was true: the link, the one time it is shown.")


class AccountCreate(In):
    login: str = Field(max_length=320, description="An email address.")
    password: str | None = Field(None, max_length=1024, description="Omit for app passwords only, or use generate.")
    generate: bool = False
    display_name: str = Field("", max_length=200)
    owner: str = Field("", max_length=320)
    notes: str = Field("", max_length=4000)
    require_app_passwords: bool = False
    invite: bool = Field(False, description="No password: answer a one-time link where the owner sets it.")
    invite_expires: str | None = Field(None, max_length=40, description="The link's lifetime such as 7d (default), at most 30d.")
    role: Literal["viewer", "operator", "admin"] | None = Field(None, description="Opens the operators' console.")
    require_second_factor: bool = Field(False, description="The owner must add a second factor, first of all.")


class InviteCreate(In):
    expires: str | None = Field(None, max_length=40, description="The link's lifetime such as 7d (default), at most 30d.")


class AccountPatch(In):
    display_name: str | None = Field(None, max_length=200)
    owner: str | None = Field(None, max_length=320)
    notes: str | None = Field(None, max_length=4000)
    require_app_passwords: bool | None = None
    enabled: bool | None = None
    role: Literal["viewer", "operator", "admin", "none"] | None = Field(None, description="none: no console.")
    require_second_factor: bool | None = None


class PasswordSet(In):
    password: str | None = Field(None, max_length=1024)
    generate: bool = False


class ScopeFields(In):
    allow_from: list[str] = Field(default_factory=list, max_length=100, description="ADDRESS or @DOMAIN.")
    allow_ip: list[str] = Field(default_factory=list, max_length=100, description="CIDR networks; empty: any.")
    max_per_hour: int | None = Field(None, ge=1, le=MAX_LIMIT)
    max_per_day: int | None = Field(None, ge=1, le=MAX_LIMIT)
    max_rcpt_per_hour: int | None = Field(None, ge=1, le=MAX_LIMIT)
    max_rcpt_per_day: int | None = Field(None, ge=1, le=MAX_LIMIT)
    allow_foreign_sender: bool = Field(False, description="Allow allow_from outside the account's own domain.")


class AppPasswordCreate(ScopeFields):
    name: str = Field(min_length=1, max_length=200)
    expires: str | None = Field(None, max_length=40, description="A lifetime such as 90d.")
    notes: str = Field("", max_length=4000)


# --------------------------------------------------------------- credentials

class Credential(Out):
    id: str
    account: str
    kind: str
    name: str
    notes: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    use_count: int
    state: str
    scopes: Scopes
    rotated_from: str | None
    replaced_by: str | None
    delivery_target: str | None = Field(description="Where rotation writes the successor's secret (never the secret).")
    delivery_hook: list[str] = Field(description="The command run after such a delivery.")
    canary: bool = Field(description="A decoy that must never be used; any use raises an alert.")
    legacy: dict[str, Any] | None = Field(None, description="Devices on the legacy listener: auth, tls, weaknesses.")


class IssuedCredential(Credential):
    secret: str = Field(description="The only time this secret is ever returned.")


class Rotated(Out):
    new: IssuedCredential
    old: Credential


class RotateRequest(In):
    overlap: str | None = Field(None, max_length=40, description="How long the old secret keeps working, e.g. 24h.")


# ---------------------------------------------------------- service accounts

class ServiceAccount(Out):
    id: str
    client_id: str
    login: str
    name: str
    notes: str
    state: str
    scopes: Scopes
    token_lifetime: int | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    last_issued_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    use_count: int


class ServiceAccountIssued(ServiceAccount):
    client_secret: str = Field(description="The only time this secret is ever returned.")


class ServiceAccountCreate(ScopeFields):
    login: str = Field(max_length=320)
    name: str = Field("", max_length=200)
    token_lifetime: str | None = Field(None, max_length=40)
    notes: str = Field("", max_length=4000)


class Token(Out):
    jti: str
    issuer: str
    service_account: str | None
    subject: str
    scope: str
    issued_at: datetime | None
    expires_at: datetime | None
    issued_via: str
    revoked_at: datetime | None


# ------------------------------------------------------------------ API tokens

class ApiToken(Out):
    id: str
    name: str
    role: Literal["viewer", "operator", "admin"]
    allowed_networks: list[str]
    notes: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    state: str


class ApiTokenIssued(ApiToken):
    token: str = Field(description="The only time this token is ever returned.")


class ApiTokenCreate(In):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["viewer", "operator", "admin"]
    expires: str | None = Field(None, max_length=40)
    allow_ip: list[str] = Field(default_factory=list, max_length=100)
    notes: str = Field("", max_length=4000)


# ----------------------------------------------------------------------- bans

class BanRecord(Out):
    network: str
    since: datetime
    until: datetime
    strikes: int
    reason: str
    source: str
    created_by: str
    lifted_at: datetime | None
    lifted_by: str


class BanCreate(In):
    network: str = Field(min_length=1, max_length=64, description="An address or CIDR network.")
    duration: str = Field("1h", max_length=40, description="How long, e.g. 30m, 1h, 7d.")
    reason: str = Field("", max_length=500)


class Ban(Out):
    network: str
    until: datetime
    reason: str


# ---------------------------------------------------------------------- audit

class AuditEvent(Out):
    id: int
    time: datetime
    event: str
    result: str
    reason: str
    listener: str
    remote_ip: str
    tls: str
    mechanism: str
    login: str
    credential_id: str | None
    details: dict[str, Any] | None = None
    network: str


class OperatorEvent(Out):
    id: int
    time: datetime
    event: Literal["operator"]
    actor: str
    role: str
    face: str
    remote_ip: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]


class AuditPage(Out):
    items: list[AuditEvent | OperatorEvent]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


class Alert(Out):
    id: int | None
    time: datetime
    rule: str
    severity: str
    summary: str
    login: str
    credential_id: str | None
    remote_ip: str
    details: dict[str, Any]
    webhook: str
    email: str


# ---------------------------------------------------------------------- queue

class RecipientResult(Out):
    status: str
    reply: str
    remote: str
    at: str


class CapturedMessage(Out):
    id: str
    received_at: datetime
    credential_id: str | None
    account: str | None
    mail_from: str
    rcpt_to: list[str]
    subject: str
    size: int
    client_ip: str
    helo: str


class QueuedMessage(CapturedMessage):
    format: int
    attempts: int
    next_attempt: datetime | None
    held: bool
    last_error: str
    recipients: dict[str, RecipientResult]
    pending: list[str]


class QueueSelection(In):
    credential: str | None = Field(None, max_length=40)
    account: str | None = Field(None, max_length=320)
    all: bool = False


class QueueResult(Out):
    count: int
    target: str
    rule: bool
    still_held: list[str]


# ----------------------------------------------------------------------- dkim

class DkimRecord(Out):
    domain: str
    selector: str
    algorithm: str
    state: str = Field(description="pending (publish it), active (signing), retiring, or config.")
    dns_name: str
    dns_txt: str
    key_file: str | None = None
    config: str | None = None


class DkimKeygen(In):
    domain: str = Field(min_length=1, max_length=253)
    selector: str | None = Field(None, max_length=63)
    algorithm: Literal["rsa", "ed25519"] = "rsa"
    bits: int = Field(2048, ge=1024, le=8192)


# ------------------------------------------------------------------- upstream

class UpstreamState(Out):
    host: str
    port: int
    tls: str
    verify: bool
    username: str
    password_set: bool
    password_file: str
    key_source: str
    problem: str


class UpstreamPassword(In):
    password: str = Field(min_length=1, max_length=1024)


class UpstreamTest(Out):
    ok: bool
    tls: str
