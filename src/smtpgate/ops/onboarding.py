"""The invitation link's side: what the invited owner may do with it, before having any credential.

The link's token is the authority here, not a role: whoever holds a valid link may see which
account it is for and set that account's password, once. Each use (and each refusal of a
link that exists) is in the operator trail under `invite:<id>`.
"""

from __future__ import annotations

from smtpgate.credentials import AccountInfo
from smtpgate.credentials.api_tokens import Role
from smtpgate.credentials.invites import InviteInfo
from smtpgate.errors import OpError
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern


def invitee(invite_id: str, remote_ip: str) -> Actor:
    """The person holding a link: no role of their own beyond reading what the link is for."""
    return Actor(f"invite:{invite_id}", Role.VIEWER, "web", remote_ip)


class Onboarding(Concern):
    def invitation(self, secret: str) -> InviteInfo:
        """What the link is for, while it can be used; `InviteInvalid` with why otherwise."""
        return self.rt.credentials.check_invite(secret)

    def accept(self, secret: str, password: str, *, remote_ip: str = "") -> AccountInfo:
        """Set the password through the link; the link is used up by it."""
        info = self.rt.credentials.check_invite(secret)
        actor = invitee(info.id, remote_ip)
        try:
            account = self.rt.credentials.accept_invite(secret, password, remote_ip=remote_ip)
        except OpError as exc:
            self.journal.record(actor, "invite.accept", info.login, exc.code, {})
            raise
        self.journal.record(actor, "invite.accept", info.login, "ok", {"require_second_factor": info.require_second_factor})
        return account
