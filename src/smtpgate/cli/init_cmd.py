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
from smtpgate.runtime import Runtime
from smtpgate.secret_files import write_secret_file

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
max_connections = 20000
max_connections_per_ip = 200
command_timeout = "5m"
data_timeout = "10m"

[admin]
listen = "127.0.0.1:{admin_port}"
trusted_proxies = []   # proxies whose X-Forwarded-For is believed, e.g. ["10.0.0.5/32"]; none by default

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
login_cache_ttl = "5m"         # a repeat login with the same password skips argon2 this long ("0s": never)
login_cache_size = 50000       # logins kept per process (verified passwords, credential lookups)

[delivery]
# The route for sender domains not listed in [delivery.routes]:
#   "capture" keeps every accepted message on disk (`smtpgate capture list`);
#   "relay" sends through the smarthost in [delivery.relay]; "mx" delivers directly.
mode = "capture"
capture_dir = "capture"
queue_dir = "queue"             # the durable queue (used as soon as any route is not capture)
max_queue_lifetime = "5d"       # then the sender gets a bounce (DSN)
retry_initial = "1m"            # first retry after a 4xx or network error, doubling each time
retry_max = "1h"                # longest wait between two attempts
retry_jitter = 0.2              # +/- 20 % randomness on every wait
concurrency = 20                # deliveries in flight at once
dns_servers = []                # empty: the system resolver; or ["127.0.0.1:53"]

[delivery.routes]
# Route per sender domain (the envelope sender's), for example:
# "example.com" = "relay"
# "lab.example.com" = "capture"

[delivery.relay]
host = ""                       # the smarthost, e.g. "smtp.example.net"
port = 587
tls = "starttls"                # or "implicit" (port 465); TLS is always required
verify = true                   # verify the smarthost's certificate
ca_file = ""                    # extra CA file to trust; empty: the system store
username = ""
# The upstream password is set with `smtpgate upstream set-password --stdin` and stored
# encrypted (AES-256-GCM) in password_file; the key is in key_file (0600) or in
# $SMTPGATE_UPSTREAM_KEY.
password_file = "secrets/upstream-password.enc"
key_file = "secrets/upstream.key"
connections = 4                 # connections kept open to the smarthost and reused

[delivery.mx]
port = 25
mta_sts = true                  # honour MTA-STS policies (RFC 8461)

[delivery.dkim]
# One entry per signing domain; `smtpgate dkim keygen DOMAIN` makes the key, e.g.
# "example.com" = {{ selector = "s2026", key_file = "dkim/example.com.s2026.key" }}

[guard]
# Brute-force bans and account-wide quotas; docs/guard.md explains every rule.
backend = "shared"              # "shared" (all workers of this machine), "redis" (all machines), "memory" (one process)
redis_url = "redis://127.0.0.1:6379/0"
redis_prefix = "smtpgate"       # every key the guard writes starts with this
failure_window = "10m"          # failed logins are counted over this window...
ip_failures = 10                # ...this many from one address ban the address,
network_failures = 30           # ...this many from one /24 (IPv4) or /64 (IPv6) ban the network,
login_failures = 20             # ...this many on one login protect the login:
protected_delay = "5s"          # ...account-password tries from new sources wait their turn, one per this
ban_for = "15m"                 # first ban; doubled for each repeat within strike_memory
max_ban = "24h"
strike_memory = "7d"
known_good_for = "30d"          # a source that logged in within this is spared network bans
network_prefix_v4 = 24
network_prefix_v6 = 64
# Never counted, banned or held back. Loopback is listed (as in fail2ban's ignoreip) so that a
# webmail or app on this host, speaking for many users, is not banned for one user's typos.
allow_networks = ["127.0.0.0/8", "::1/128"]   # add your office, e.g. "192.0.2.0/24"
# Password spraying: failures on this many logins from this many sources within failure_window...
spray_logins = 20
spray_sources = 10
spray_ip_failures = 3           # ...then any source is banned at this many failures...
spray_for = "1h"                # ...for this long (and a password-spray alert is raised)
sync_interval = "2s"            # how often a server picks up `smtpgate ban add/remove`
account_max_per_hour = 0        # per-account limits over all its credentials; 0 = none
account_max_per_day = 0
account_max_rcpt_per_hour = 0
account_max_rcpt_per_day = 0

[audit]
retention = "90d"               # audit events and alerts older than this are pruned by the server
json_log = true                 # also write every event as one JSON line to the log
prune_interval = "1h"

[alerts]
# Alerts always go to the log and to `smtpgate alerts list`. A webhook gets each as a JSON
# POST signed with HMAC-SHA256 (header X-Smtpgate-Signature); the shared secret lives in
# webhook_secret_file (mode 0600), e.g. `openssl rand -hex 32 > secrets/alert-webhook.key`.
webhook_url = ""
webhook_secret_file = "secrets/alert-webhook.key"
webhook_attempts = 6            # retried with exponential backoff from webhook_backoff
webhook_backoff = "2s"
webhook_timeout = "10s"
email_owner = false             # also mail the account owner, through this server's own delivery
email_from = ""                 # empty: postmaster@<hostname>
failure_burst = 20              # failed logins on one login within [guard] failure_window
volume_factor = 10              # an hour's messages this many times the credential's baseline...
volume_min_messages = 50        # ...and at least this many
device_volume_min_messages = 10 # the same floor for a legacy device, whose quota is low
volume_baseline = "7d"

[deliverability]
# What receivers will make of the mail; docs/deliverability.md. `smtpgate dns records DOMAIN`
# prints what to publish, `smtpgate doctor --domain DOMAIN` checks what is published.
misaligned = "warn"             # From: domain with DMARC reject/quarantine we cannot align:
                                # "accept", "warn" (alert once a day) or "refuse" (550 5.7.26)
outbound_addresses = []         # addresses direct (mx) delivery leaves from, e.g. ["192.0.2.25"]
relay_spf = ""                  # the SPF term your smarthost documents, e.g. "include:_spf.provider.net"
cache_ttl = "1h"                # DNS answers kept for the check at submission
dkim_dir = "dkim"               # DKIM keys and their selectors (`smtpgate dkim rotate DOMAIN`)
dkim_retire_after = "7d"        # an old key keeps being published this long after a switch
dkim_check_interval = "5m"      # how often the server looks for newly published keys to switch to

[deliverability.mta_sts]
mode = "testing"                # the policy served at /.well-known/mta-sts.txt on the admin listener
mx = []                         # your inbound MX names; empty: no policy is published
max_age = "7d"

[reputation]
dnsbl = []                      # DNS blocklist zones to watch the outbound addresses on
check_interval = "1h"
outcome_window = "15m"          # delivery failures (5xx, 421/451) per destination domain are counted
rise_factor = 3                 # ...and a window with this many times the usual failure rate...
rise_min = 10                   # ...and at least this many failures raises an alert

[tokens]
# OAuth 2.0 bearer tokens (SASL XOAUTH2 and OAUTHBEARER) and SCRAM-SHA-256; docs/tokens.md.
enabled = true                  # offer XOAUTH2 and OAUTHBEARER after TLS
scram = true                    # offer SCRAM-SHA-256 and keep its keys beside each password hash
scram_iterations = 4096         # PBKDF2 rounds of the SCRAM keys (RFC 7677 minimum; clients pay them too)
issuer = ""                     # empty: "urn:smtpgate:<hostname>", the `iss` of the tokens issued here
audience = ""                   # empty: "urn:smtpgate:<hostname>:smtp", the `aud` they must carry
access_token_lifetime = "1h"    # what POST /oauth/token (admin listener) hands out
max_token_lifetime = "24h"      # the longest `smtpgate token issue --lifetime` may ask for
algorithm = "ES256"             # signing: "ES256" or "EdDSA" (Ed25519); `smtpgate token rotate-key`
key_dir = "secrets/token-keys"  # signing keys, one 0600 JWK file each, made on first use
leeway = "30s"                  # clock skew allowed on exp, nbf and iat

# External identity providers whose access tokens authenticate existing accounts, e.g.:
# [[tokens.issuers]]
# name = "corp"                                  # shows as credential idp:corp in the audit
# issuer = "https://login.example.com/tenant"    # the tokens' `iss`
# audience = "api://smtpgate"                    # the `aud` they must name
# jwks_url = "https://login.example.com/tenant/discovery/keys"   # or jwks_file = "corp-jwks.json"
# login_claim = "email"                          # the claim naming the account's login
# required_scope = "smtp"                        # in `scope` or `scp`; "" for none
# algorithms = ["RS256", "ES256"]                # asymmetric only; "none" and HS* are refused
# jwks_cache = "1h"
"""


def render_config(
    *, hostname: str = "localhost", database_url: str = "", listen: str = "127.0.0.1",
    submission_port: int = 2587, submissions_port: int = 2465, admin_port: int = 8025,
) -> str:
    """The config file `init` writes (also what docs/configuration.md shows)."""
    return TEMPLATE.format(
        hostname=hostname,
        database_url=database_url,
        listen=listen,
        submission_port=submission_port,
        submissions_port=submissions_port,
        admin_port=admin_port,
    )


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
        render_config(
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
        Runtime(config).close_after_schema()
    out.print(f"Initialised {data_dir.resolve()}", markup=False)
    out.print(f"  config:        {config_path.resolve()}", markup=False)
    if tls.ca_cert:
        out.print(f"  CA for clients: {tls.ca_cert.resolve()}  (trust this file in your mail clients)", markup=False)
    out.print(f"  submission:    {host}:{submission_port} (STARTTLS), {host}:{submissions_port} (implicit TLS)", markup=False)
    err.print(
        f"Next: smtpgate --config {config_path} account add you@example.com --generate",
        markup=False,
    )


def register(root: typer.Typer) -> None:
    root.command("init")(init)
