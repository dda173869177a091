"""`python -m smtpgate` is the `smtpgate` command."""

from smtpgate.cli.main import run

run()
