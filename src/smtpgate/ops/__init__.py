"""The operations layer: every use case a face offers, in one place.

The CLI and the HTTP API are thin adapters over `Operations`: they turn their input into
calls here and the results (or the `OpError` raised) into their own output. Every call
takes the `Actor` who asks; every mutation goes through `Journal.step`, which checks the
actor's role and writes the operator audit trail. Nothing here prints, parses argv or
knows HTTP. See docs/architecture.md.
"""

from __future__ import annotations

from functools import cached_property

from smtpgate.ops.accounts import Accounts
from smtpgate.ops.actor import Actor, Role
from smtpgate.ops.alerts import Alerts
from smtpgate.ops.api_tokens import ApiTokens
from smtpgate.ops.app_passwords import AppPasswords
from smtpgate.ops.audit import Audit
from smtpgate.ops.bans import Bans
from smtpgate.ops.capture import Capture
from smtpgate.ops.credentials import Credentials
from smtpgate.ops.dkim import Dkim
from smtpgate.ops.journal import Journal
from smtpgate.ops.queue import Queue
from smtpgate.ops.service_accounts import ServiceAccounts
from smtpgate.ops.tokens import Tokens
from smtpgate.ops.upstream import Upstream
from smtpgate.runtime import Runtime

__all__ = ["Actor", "Operations", "Role"]


class Operations:
    """One per runtime; each concern is built on first use."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @cached_property
    def journal(self) -> Journal:
        return Journal(self.runtime.store)

    @cached_property
    def accounts(self) -> Accounts:
        return Accounts(self.runtime, self.journal)

    @cached_property
    def app_passwords(self) -> AppPasswords:
        return AppPasswords(self.runtime, self.journal)

    @cached_property
    def credentials(self) -> Credentials:
        return Credentials(self.runtime, self.journal)

    @cached_property
    def service_accounts(self) -> ServiceAccounts:
        return ServiceAccounts(self.runtime, self.journal)

    @cached_property
    def tokens(self) -> Tokens:
        return Tokens(self.runtime, self.journal)

    @cached_property
    def api_tokens(self) -> ApiTokens:
        return ApiTokens(self.runtime, self.journal)

    @cached_property
    def bans(self) -> Bans:
        return Bans(self.runtime, self.journal)

    @cached_property
    def audit(self) -> Audit:
        return Audit(self.runtime, self.journal)

    @cached_property
    def alerts(self) -> Alerts:
        return Alerts(self.runtime, self.journal)

    @cached_property
    def queue(self) -> Queue:
        return Queue(self.runtime, self.journal)

    @cached_property
    def capture(self) -> Capture:
        return Capture(self.runtime, self.journal)

    @cached_property
    def dkim(self) -> Dkim:
        return Dkim(self.runtime, self.journal)

    @cached_property
    def upstream(self) -> Upstream:
        return Upstream(self.runtime, self.journal)
