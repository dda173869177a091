"""A session's credential is asked about again before each message: revocation ends open sessions too."""

from __future__ import annotations

from datetime import timedelta


from smtpgate.credentials import CredentialService


def test_revoked_expired_and_disabled_end_what_a_session_may_send(service: CredentialService, clock) -> None:
    service.create_account("lea@example.com")
    kept = service.create_app_password("lea@example.com", "kept")
    revoked = service.create_app_password("lea@example.com", "revoked")
    brief = service.create_app_password("lea@example.com", "brief", expires_in=timedelta(hours=1))
    assert all(service.still_admitted(i.credential.id) for i in (kept, revoked, brief))
    service.revoke(revoked.credential.id)
    assert not service.still_admitted(revoked.credential.id) and service.still_admitted(kept.credential.id)
    clock.advance(hours=2)
    assert not service.still_admitted(brief.credential.id)  # expiry needs no change to be seen
    service.set_account_enabled("lea@example.com", False)
    assert not service.still_admitted(kept.credential.id)
    assert service.still_admitted("idp:corp")  # a bearer token: no row here, its lifetime ends it
