from tests.cli.conftest import cli, cli_any_db  # noqa: F401 - the same initialised data dirs
