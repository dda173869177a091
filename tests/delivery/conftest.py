"""Delivery tests use the CLI fixture too: `smtpgate queue|dkim|upstream` through the real entry point."""

from tests.cli.conftest import cli  # noqa: F401 - a fixture, re-exported for this folder
