"""The operations layer: every use case a face offers, in one place.

The CLI and the HTTP API are thin adapters over `Operations`: they turn their input into
calls here and the results (or the `OpError` raised) into their own output. Every call
takes the `Actor` who asks; every mutation goes through `Journal.step`, which checks the
actor's role and writes the operator audit trail. Each concern is imported on first use, so a command pays
only for its own. Nothing here prints, parses argv or
knows HTTP. See docs/architecture.md.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from smtpgate.ops.actor import Actor, Role
from smtpgate.ops.journal import Journal

if TYPE_CHECKING:
    from smtpgate.ops.accounts import Accounts
    from smtpgate.ops.alerts import Alerts
    from smtpgate.ops.api_tokens import ApiTokens
    from smtpgate.ops.app_passwords import AppPasswords
    from smtpgate.ops.audit import Audit
    from smtpgate.ops.bans import Bans
    from smtpgate.ops.capture import Capture
    from smtpgate.ops.client_setup import ClientSetup
    from smtpgate.ops.console import Console
    from smtpgate.ops.cluster import Cluster
    from smtpgate.ops.credentials import Credentials
    from smtpgate.ops.dkim import Dkim
    from smtpgate.ops.incidents import Incidents
    from smtpgate.ops.leaks import Leaks
    from smtpgate.ops.onboarding import Onboarding
    from smtpgate.ops.portal import Portal
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
        from smtpgate.ops.accounts import Accounts

        return Accounts(self.runtime, self.journal)

    @cached_property
    def app_passwords(self) -> AppPasswords:
        from smtpgate.ops.app_passwords import AppPasswords

        return AppPasswords(self.runtime, self.journal)

    @cached_property
    def credentials(self) -> Credentials:
        from smtpgate.ops.credentials import Credentials

        return Credentials(self.runtime, self.journal)

    @cached_property
    def service_accounts(self) -> ServiceAccounts:
        from smtpgate.ops.service_accounts import ServiceAccounts

        return ServiceAccounts(self.runtime, self.journal)

    @cached_property
    def tokens(self) -> Tokens:
        from smtpgate.ops.tokens import Tokens

        return Tokens(self.runtime, self.journal)

    @cached_property
    def api_tokens(self) -> ApiTokens:
        from smtpgate.ops.api_tokens import ApiTokens

        return ApiTokens(self.runtime, self.journal)

    @cached_property
    def bans(self) -> Bans:
        from smtpgate.ops.bans import Bans

        return Bans(self.runtime, self.journal)

    @cached_property
    def audit(self) -> Audit:
        from smtpgate.ops.audit import Audit

        return Audit(self.runtime, self.journal)

    @cached_property
    def alerts(self) -> Alerts:
        from smtpgate.ops.alerts import Alerts

        return Alerts(self.runtime, self.journal)

    @cached_property
    def queue(self) -> Queue:
        from smtpgate.ops.queue import Queue

        return Queue(self.runtime, self.journal)

    @cached_property
    def capture(self) -> Capture:
        from smtpgate.ops.capture import Capture

        return Capture(self.runtime, self.journal)

    @cached_property
    def dkim(self) -> Dkim:
        from smtpgate.ops.dkim import Dkim

        return Dkim(self.runtime, self.journal)

    @cached_property
    def upstream(self) -> Upstream:
        from smtpgate.ops.upstream import Upstream

        return Upstream(self.runtime, self.journal)

    @cached_property
    def incidents(self) -> Incidents:
        from smtpgate.ops.incidents import Incidents

        return Incidents(self.runtime, self.journal)

    @cached_property
    def leaks(self) -> Leaks:
        from smtpgate.ops.leaks import Leaks

        return Leaks(self.runtime, self.journal, self.incidents)

    @cached_property
    def client_setup(self) -> ClientSetup:
        from smtpgate.ops.client_setup import ClientSetup

        return ClientSetup(self.runtime, self.journal)

    @cached_property
    def onboarding(self) -> Onboarding:
        from smtpgate.ops.onboarding import Onboarding

        return Onboarding(self.runtime, self.journal)

    @cached_property
    def portal(self) -> Portal:
        """Self-service for account owners (the web console)."""
        from smtpgate.ops.portal import Portal

        return Portal(self.runtime, self.journal)

    @cached_property
    def console(self) -> Console:
        from smtpgate.ops.console import Console

        return Console(self.runtime, self.journal)

    @cached_property
    def cluster(self) -> Cluster:
        from smtpgate.ops.cluster import Cluster

        return Cluster(self.runtime, self.journal)
