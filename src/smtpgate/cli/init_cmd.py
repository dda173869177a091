"""`smtpgate init`: a data dir with a config, a server key, a local CA and certificate, a database."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from smtpgate import pki
from smtpgate.cli.common import err, fail, handled_errors, out
from smtpgate.config import CONFIG_NAME, load_config
from smtpgate.credentials.app_passwords import generate_key
from smtpgate.secret_files import write_secret_file
from smtpgate.store import open_store

TEMPLATE = """\
# smtpgate configuration. Relative paths are relative to this file's folder.
# Secrets are never written here: they live in 0600 files under secrets/.
hostname = "{hostname}"

[database]
# Empty: SQLite in this folder (smtpgate.db). For PostgreSQL:
# url = "postgresql+psycopg://smtpgate@db.example.com/smtpgate"
url = "{database_url}"

[secrets]
app_password_key_file = "secrets/app-password.key"

[tls]
# A real deployment points these at its certificate chain and key (reloaded on SIGHUP).
cert = "tls/server.pem"
key = "tls/server.key"
ca = "tls/ca.pem"

[smtp]
submission = "{listen}:{submission_port}"     # STARTTLS (the standard port is 587)
submissions = "{listen}:{submissions_port}"   # implicit TLS (the standard port is 465)
max_message_size = 26214400
max_recipients = 100
max_connections = 10000
max_connections_per_ip = 200
command_timeout = "5m"
data_timeout = "10m"

[admin]
listen = "127.0.0.1:{admin_port}"

[passwords]
# argon2id parameters (OWASP minimum: 19 MiB, 2 passes, 1 lane)
argon2_memory_kib = 19456
argon2_time_cost = 2
argon2_parallelism = 1
min_length = 12
min_strength = 3        # zxcvbn score, 0 to 4
hibp_file = ""          # optional: a Have I Been Pwned SHA-1 file, ordered by hash

[credentials]
rotation_age = "90d"
rotation_overlap = "24h"
dormant_after = "90d"
expiring_within = "14d"

[delivery]
mode = "capture"        # keep every accepted message on disk: `smtpgate capture list`
capture_dir = "capture"
"""


def init(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Folder for config, keys, certificates and data.")],
    hostname: Annotated[str, typer.Option(help="The server's name in greetings and its certificate.")] = "localhost",
    submission_port: Annotated[int, typer.Option(help="STARTTLS listener port.")] = 2587,
    submissions_port: Annotated[int, typer.Option(help="Implicit-TLS listener port.")] = 2465,
    admin_port: Annotated[int, typer.Option(help="Admin HTTP port (metrics, tokens).")] = 8025,
    listen: Annotated[str, typer.Option(help="Address the SMTP listeners bind to.")] = "127.0.0.1",
    database_url: Annotated[str, typer.Option(help="PostgreSQL URL; empty for SQLite in the data dir.")] = "",
) -> None:
    """Create a data dir: config, app-password key, local CA and server certificate, database."""
    for name, port in (("submission", submission_port), ("submissions", submissions_port), ("admin", admin_port)):
        if not 0 < port < 65536:
            fail(f"--{name}-port {port} is not a TCP port", "Use a number from 1 to 65535.", code=2)
    config_path = data_dir / CONFIG_NAME
    if config_path.exists():
        fail(f"{config_path} already exists", "This data dir is initialised; use it with --config, or pick another --data-dir.")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    host = listen if ":" not in listen else f"[{listen}]"
    config_path.write_text(
        TEMPLATE.format(
            hostname=hostname,
            database_url=database_url,
            listen=host,
            submission_port=submission_port,
            submissions_port=submissions_port,
            admin_port=admin_port,
        ),
        encoding="utf-8",
    )
    write_secret_file(data_dir / "secrets" / "app-password.key", generate_key())
    with handled_errors():
        config = load_config(config_path)
        names = list(dict.fromkeys(n for n in (hostname, socket.gethostname()) if n))
        try:
            tls = pki.ensure_local_ca_and_server_cert(data_dir / "tls", names)
        except pki.PkiError as exc:
            fail(str(exc))
        store = open_store(config.database_url)
        store.dispose()
    out.print(f"Initialised {data_dir.resolve()}", markup=False)
    out.print(f"  config:        {config_path.resolve()}", markup=False)
    if tls.ca_cert:
        out.print(f"  CA for clients: {tls.ca_cert.resolve()}  (trust this file in your mail clients)", markup=False)
    out.print(f"  submission:    {host}:{submission_port} (STARTTLS), {host}:{submissions_port} (implicit TLS)", markup=False)
    err.print(
        f"Next: smtpgate --config {config_path} account add you@example.com --generate",
        markup=False,
    )
