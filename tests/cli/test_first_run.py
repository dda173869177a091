"""What a new user meets on a freshly initialised data dir, found by following the README."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli


def test_an_apple_profile_that_cannot_be_made_creates_no_app_password(cli: Cli, tmp_path: Path) -> None:
    """Autoconfig is off after `init`: the profile is refused before the app password is made, so the
    command can simply be run again once `[autoconfig]` is set (a second one of that name is refused)."""
    cli.ok("account", "add", "ada@example.com", "--generate")
    profile = tmp_path / "phone.mobileconfig"
    refused = cli("app-password", "create", "ada@example.com", "--name", "phone", "--apple-profile", str(profile))
    assert refused.code == 1 and "[autoconfig]" in refused.stderr and "sgp_" not in refused.stdout
    assert not profile.exists()
    kinds = [c["kind"] for c in cli.ok("creds", "list", "--json").json()]
    assert kinds == ["password"]
