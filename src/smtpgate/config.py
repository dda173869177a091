"""One validated configuration object, loaded once from a TOML file.

Relative paths in the file are relative to the file's own folder, so a data dir can be
moved as a whole. Secrets are never in the TOML: it names files (mode 0600) that hold
them. A bad file raises ConfigError naming the file, the key, what was found and what is
expected; the CLI turns that into exit code 2.
"""

from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from smtpgate.durations import parse_duration

CONFIG_ENV = "SMTPGATE_CONFIG"
CONFIG_NAME = "smtpgate.toml"


class ConfigError(Exception):
    """The config file is missing or wrong; the message says where and how to fix it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _listen(value: str) -> str:
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT, such as 127.0.0.1:587 or [::1]:587")
    return value


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(str(value))


class DatabaseConfig(_Section):
    url: str = ""

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("expected a sqlite:/// or postgresql+psycopg:// URL")
        return value


class SecretsConfig(_Section):
    app_password_key_file: str = "secrets/app-password.key"


class TlsConfig(_Section):
    cert: str = "tls/server.pem"
    key: str = "tls/server.key"
    ca: str = "tls/ca.pem"


class SmtpConfig(_Section):
    submission: str = "127.0.0.1:2587"
    submissions: str = "127.0.0.1:2465"
    max_message_size: int = Field(default=25 * 1024 * 1024, gt=0)
    max_recipients: int = Field(default=100, gt=0)
    max_connections: int = Field(default=20000, gt=0)  # per machine: all workers share it (guard slots)
    max_connections_per_ip: int = Field(default=200, gt=0)
    command_timeout: timedelta = timedelta(minutes=5)
    data_timeout: timedelta = timedelta(minutes=10)
    auth_failure_delay: timedelta = timedelta(milliseconds=250)
    tls_handshake_timeout: timedelta = timedelta(seconds=10)
    shutdown_grace: timedelta = timedelta(seconds=30)
    # Before AUTH (docs/configuration.md, "Connections before AUTH"): idle timeouts, normal
    # and under pressure, the deadline for a successful AUTH, the share of slots kept for
    # sessions that are authenticating or authenticated.
    pre_auth_timeout: timedelta = timedelta(seconds=60)
    pre_auth_stress_timeout: timedelta = timedelta(seconds=10)
    auth_deadline: timedelta = timedelta(minutes=2)
    auth_reserve: float = Field(default=0.2, ge=0, lt=1)
    # A worker over this resident size once idle is replaced by a fresh one (0: never).
    worker_memory_limit_mib: int = Field(default=1024, ge=0)
    # Message policy of authenticated submission (docs/configuration.md, "Message policy").
    allow_null_sender: bool = False
    display_name_address: Literal["refuse", "flag", "allow"] = "refuse"
    received_auth: Literal["token", "none"] = "token"
    # Load balancers that begin each connection with a PROXY protocol header (docs/proxy-protocol.md).
    proxy_protocol_from: list[str] = []
    proxy_protocol_timeout: timedelta = timedelta(seconds=5)

    _check_listen = field_validator("submission", "submissions")(classmethod(lambda cls, v: _listen(v)))
    _check_durations = field_validator(
        "command_timeout", "data_timeout", "auth_failure_delay", "tls_handshake_timeout",
        "shutdown_grace", "pre_auth_timeout", "pre_auth_stress_timeout", "auth_deadline",
        "proxy_protocol_timeout", mode="before"
    )(classmethod(lambda cls, v: _duration(v)))
    _check_balancers = field_validator("proxy_protocol_from")(classmethod(lambda cls, v: _cidrs(v)))


def _cidrs(value: list[str]) -> list[str]:
    import ipaddress

    for text in value:
        try:
            ipaddress.ip_network(str(text).strip(), strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not a network; use CIDR such as 192.0.2.0/24 or 2001:db8::/48") from None
    return value


def is_loopback_host(host: str) -> bool:
    """Whether a listen address reaches this machine only: 127.0.0.0/8, ::1, `localhost`.

    Any other name, and the wildcards 0.0.0.0 and ::, count as reachable from elsewhere.
    """
    import ipaddress

    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AdminConfig(_Section):
    listen: str = "127.0.0.1:8025"
    # proxies whose X-Forwarded-For is believed; empty: the peer's address is the client's
    trusted_proxies: list[str] = []
    # HTTPS on the admin listener (docs/configuration.md, "The admin listener"): "auto" off
    # loopback, "on" everywhere, "off" never (off loopback only with allow_plain_http)
    tls: Literal["auto", "on", "off"] = "auto"
    tls_cert: str = ""   # empty: the SMTP certificate, [tls] cert
    tls_key: str = ""    # empty: [tls] key
    allow_plain_http: bool = False   # plain HTTP on a non-loopback address, with a warning at start
    metrics_token_required: bool = False   # /metrics asks for an operator token (any role)

    _check_listen = field_validator("listen")(classmethod(lambda cls, v: _listen(v)))
    _check_proxies = field_validator("trusted_proxies")(classmethod(lambda cls, v: _cidrs(v)))

    @model_validator(mode="after")
    def _plain_only_when_allowed(self) -> AdminConfig:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("set tls_cert and tls_key together (or neither: the [tls] certificate is used)")
        if self.tls == "off" and not self.on_loopback and not self.allow_plain_http:
            raise ValueError(f'tls = "off" on the non-loopback address {self.listen} sends tokens and passwords '
                             'in clear; remove it (HTTPS with the [tls] certificate) or also set '
                             'allow_plain_http = true')
        return self

    @property
    def on_loopback(self) -> bool:
        return is_loopback_host(self.listen.rpartition(":")[0])

    @property
    def https(self) -> bool:
        """Whether the admin listener speaks TLS: off loopback unless plain HTTP is allowed."""
        if self.tls == "auto":
            return not self.on_loopback and not self.allow_plain_http
        return self.tls == "on"

    @property
    def scheme(self) -> str:
        return "https" if self.https else "http"


class WebConfig(_Section):
    """[web]: the owners' web console on the admin listener (docs/web.md)."""

    # the console's address as owners reach it (e.g. https://mail.example.com:8025); empty: the admin listener's
    public_url: str = ""
    # the WebAuthn relying party (a domain, never an IP address); empty: the host of public_url, or the request's
    rp_id: str = ""
    idle_timeout: timedelta = timedelta(minutes=30)
    absolute_timeout: timedelta = timedelta(hours=12)

    _check_durations = field_validator("idle_timeout", "absolute_timeout", mode="before")(
        classmethod(lambda cls, v: _duration(v)))


class PasswordConfig(_Section):
    argon2_memory_kib: int = Field(default=19456, ge=8192)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_parallelism: int = Field(default=1, ge=1)
    min_length: int = Field(default=12, ge=8)
    min_strength: int = Field(default=3, ge=0, le=4)
    hibp_file: str = ""


class CredentialConfig(_Section):
    rotation_age: timedelta = timedelta(days=90)
    rotation_overlap: timedelta = timedelta(hours=24)
    dormant_after: timedelta = timedelta(days=90)
    expiring_within: timedelta = timedelta(days=14)
    login_cache_ttl: timedelta = timedelta(minutes=5)
    login_cache_size: int = Field(default=50_000, ge=0)

    _check_durations = field_validator(
        "rotation_age", "rotation_overlap", "dormant_after", "expiring_within", "login_cache_ttl", mode="before"
    )(classmethod(lambda cls, v: _duration(v)))


Route = Literal["capture", "relay", "mx"]


def dns_server_address(text: str) -> tuple[str, int]:
    """"127.0.0.1", "127.0.0.1:5353", "::1" or "[::1]:53" -> (ip, port); ValueError otherwise."""
    import ipaddress

    value = str(text).strip()
    port = "53"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            port = rest.removeprefix(":")
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host = value
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: expected an IP address, optionally with :PORT (127.0.0.1:5353, [::1]:53)") from None
    if not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def _domain(value: str) -> str:
    domain = str(value).strip().lower().rstrip(".")
    if not domain or any(c.isspace() or c in "@[]/:" for c in domain):
        raise ValueError("expected a domain name such as example.com")
    return domain


class RelayConfig(_Section):
    """The smarthost; its password lives encrypted in `password_file`, never here."""

    host: str = ""
    port: int = Field(default=587, gt=0, lt=65536)
    tls: Literal["starttls", "implicit"] = "starttls"
    verify: bool = True
    ca_file: str = ""
    username: str = ""
    password_file: str = "secrets/upstream-password.enc"
    key_file: str = "secrets/upstream.key"
    connections: int = Field(default=4, ge=1, le=200)
    timeout: timedelta = timedelta(seconds=60)

    _check_durations = field_validator("timeout", mode="before")(classmethod(lambda cls, v: _duration(v)))


class MxConfig(_Section):
    port: int = Field(default=25, gt=0, lt=65536)
    timeout: timedelta = timedelta(seconds=60)
    ca_file: str = ""
    mta_sts: bool = True
    mta_sts_policy_host: str = ""
    mta_sts_ca_file: str = ""

    _check_durations = field_validator("timeout", mode="before")(classmethod(lambda cls, v: _duration(v)))

    @field_validator("mta_sts_policy_host")
    @classmethod
    def _check_policy_host(cls, value: str) -> str:
        return _listen(value) if value else value


class DkimKeyConfig(_Section):
    selector: str
    key_file: str


class DeliveryConfig(_Section):
    mode: Route = "capture"
    capture_dir: str = "capture"
    queue_dir: str = "queue"
    routes: dict[str, Route] = {}
    dns_servers: list[str] = []
    max_queue_lifetime: timedelta = timedelta(days=5)
    retry_initial: timedelta = timedelta(minutes=1)
    retry_max: timedelta = timedelta(hours=1)
    retry_jitter: float = Field(default=0.2, ge=0, le=1)
    concurrency: int = Field(default=20, ge=1, le=1000)
    poll_interval: timedelta = timedelta(seconds=1)
    relay: RelayConfig = RelayConfig()
    mx: MxConfig = MxConfig()
    dkim: dict[str, DkimKeyConfig] = {}

    _check_durations = field_validator(
        "max_queue_lifetime", "retry_initial", "retry_max", "poll_interval", mode="before"
    )(classmethod(lambda cls, v: _duration(v)))

    @field_validator("routes", "dkim", mode="before")
    @classmethod
    def _domain_keys(cls, value: Any) -> Any:
        return {_domain(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("dns_servers")
    @classmethod
    def _check_dns_servers(cls, value: list[str]) -> list[str]:
        for server in value:
            dns_server_address(server)
        return value

    @model_validator(mode="after")
    def _relay_needs_host(self) -> DeliveryConfig:
        if "relay" in (self.mode, *self.routes.values()) and not self.relay.host:
            raise ValueError("a relay route is configured but [delivery.relay] host is empty; set the smarthost's host")
        return self

    @property
    def uses_queue(self) -> bool:
        """Capture alone keeps mail in the capture store; any other route needs the queue."""
        return any(route != "capture" for route in (self.mode, *self.routes.values()))


class MtaStsPublishConfig(_Section):
    """The MTA-STS policy smtpgate publishes for its domains (served on the admin listener)."""

    mode: Literal["none", "testing", "enforce"] = "testing"
    mx: list[str] = []               # the inbound MX names the policy allows; empty: no policy
    max_age: timedelta = timedelta(days=7)

    _check_durations = field_validator("max_age", mode="before")(classmethod(lambda cls, v: _duration(v)))


class DeliverabilityConfig(_Section):
    """What receivers will make of our mail: records to publish, DKIM keys, DMARC foreseen."""

    misaligned: Literal["accept", "warn", "refuse"] = "warn"
    outbound_addresses: list[str] = []   # the addresses direct (mx) delivery leaves from
    relay_spf: str = ""                  # the SPF term the smarthost documents, e.g. "include:_spf.provider.net"
    dmarc_rua: str = ""                  # empty: mailto:postmaster@<domain>
    tlsrpt_rua: str = ""                 # empty: mailto:postmaster@<domain>
    cache_ttl: timedelta = timedelta(hours=1)
    dkim_dir: str = "dkim"
    dkim_retire_after: timedelta = timedelta(days=7)
    dkim_check_interval: timedelta = timedelta(minutes=5)
    mta_sts: MtaStsPublishConfig = MtaStsPublishConfig()

    _check_durations = field_validator("cache_ttl", "dkim_retire_after", "dkim_check_interval", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )

    @field_validator("outbound_addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        import ipaddress

        for text in value:
            try:
                ipaddress.ip_address(str(text).strip())
            except ValueError:
                raise ValueError(f"{text!r} is not an IP address; list the addresses mail leaves from, e.g. 192.0.2.25") from None
        return value

    @field_validator("relay_spf")
    @classmethod
    def _spf_term(cls, value: str) -> str:
        if value and not value.startswith(("include:", "ip4:", "ip6:", "a:", "mx:", "a", "mx")):
            raise ValueError("expected one SPF term such as include:_spf.provider.net or ip4:192.0.2.0/24")
        return value


class ReputationConfig(_Section):
    """DNS blocklists watched for the outbound addresses, and delivery outcomes watched for rises."""

    dnsbl: list[str] = []                # blocklist zones, e.g. ["bl.example.net"]; none by default
    check_interval: timedelta = timedelta(hours=1)
    outcome_window: timedelta = timedelta(minutes=15)
    rise_factor: float = Field(default=3.0, gt=1)
    rise_min: int = Field(default=10, ge=1)

    _check_durations = field_validator("check_interval", "outcome_window", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )

    @field_validator("dnsbl")
    @classmethod
    def _zones(cls, value: list[str]) -> list[str]:
        return [_domain(v) for v in value]


class GuardConfig(_Section):
    """Bans, failure counting and account-wide quotas; see docs/guard.md."""

    backend: Literal["shared", "redis", "memory"] = "shared"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = Field(default="smtpgate", min_length=1)
    failure_window: timedelta = timedelta(minutes=10)
    ip_failures: int = Field(default=10, ge=1)
    network_failures: int = Field(default=30, ge=1)
    login_failures: int = Field(default=20, ge=1)
    ban_for: timedelta = timedelta(minutes=15)
    max_ban: timedelta = timedelta(hours=24)
    strike_memory: timedelta = timedelta(days=7)
    known_good_for: timedelta = timedelta(days=30)
    network_prefix_v4: int = Field(default=24, ge=8, le=32)
    network_prefix_v6: int = Field(default=64, ge=16, le=128)
    allow_networks: list[str] = ["127.0.0.0/8", "::1/128"]  # like fail2ban's ignoreip: local services
    protected_delay: timedelta = timedelta(seconds=5)
    spray_logins: int = Field(default=20, ge=2)
    spray_sources: int = Field(default=10, ge=2)
    spray_ip_failures: int = Field(default=3, ge=1)
    spray_for: timedelta = timedelta(hours=1)
    sync_interval: timedelta = timedelta(seconds=2)
    account_max_per_hour: int = Field(default=0, ge=0)
    account_max_per_day: int = Field(default=0, ge=0)
    account_max_rcpt_per_hour: int = Field(default=0, ge=0)
    account_max_rcpt_per_day: int = Field(default=0, ge=0)

    _check_durations = field_validator(
        "failure_window", "ban_for", "max_ban", "strike_memory", "known_good_for", "sync_interval",
        "protected_delay", "spray_for", mode="before"
    )(classmethod(lambda cls, v: _duration(v)))

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return value

    _check_networks = field_validator("allow_networks")(classmethod(lambda cls, v: _cidrs(v)))


class AuditConfig(_Section):
    retention: timedelta = timedelta(days=90)
    json_log: bool = True
    prune_interval: timedelta = timedelta(hours=1)

    _check_durations = field_validator("retention", "prune_interval", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )


class AlertsConfig(_Section):
    webhook_url: str = ""
    webhook_secret_file: str = "secrets/alert-webhook.key"
    webhook_attempts: int = Field(default=6, ge=1, le=50)
    webhook_backoff: timedelta = timedelta(seconds=2)
    webhook_timeout: timedelta = timedelta(seconds=10)
    email_owner: bool = False
    email_from: str = ""
    failure_burst: int = Field(default=20, ge=1)
    volume_factor: float = Field(default=10.0, gt=1)
    volume_min_messages: int = Field(default=50, ge=1)
    device_volume_min_messages: int = Field(default=10, ge=1)  # devices on the legacy listener
    volume_baseline: timedelta = timedelta(days=7)

    _check_durations = field_validator(
        "webhook_backoff", "webhook_timeout", "volume_baseline", mode="before"
    )(classmethod(lambda cls, v: _duration(v)))

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL, or empty for no webhook")
        return value


class LegacyConfig(_Section):
    """The opt-in listener for devices that cannot do modern TLS or AUTH (docs/legacy-devices.md).

    Off unless `listen` is set; then `networks` must name who may connect at all: everyone
    else is closed on before the greeting.
    """

    listen: str = ""
    networks: list[str] = []

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        return _listen(value) if value else value

    _check_networks = field_validator("networks")(classmethod(lambda cls, v: _cidrs(v)))

    @model_validator(mode="after")
    def _networks_when_on(self) -> LegacyConfig:
        if self.listen and not self.networks:
            raise ValueError("[legacy] listen is set but networks is empty: list the networks of the devices, "
                             "such as networks = [\"192.0.2.0/24\"]")
        return self


class IncidentsConfig(_Section):
    """Incident response (docs/incidents.md): how far back an incident looks, how long it bans,
    and what a secret scanner's leak report does."""

    window: timedelta = timedelta(days=7)       # the timeline and the sources to ban: this far back
    ban_for: timedelta = timedelta(days=7)      # how long the sources that used a leaked credential stay out
    on_leak: Literal["revoke", "alert"] = "revoke"
    leak_report_keys: str = ""                  # the reporters' public keys (JSON); empty: POST /api/v1/leaks is off

    _check_durations = field_validator("window", "ban_for", mode="before")(classmethod(lambda cls, v: _duration(v)))


_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519")


class TokenIssuerConfig(_Section):
    """An external identity provider whose access tokens may authenticate accounts."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,29}$")
    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_url: str = ""
    jwks_file: str = ""
    login_claim: str = Field(default="email", min_length=1)
    required_scope: str = "smtp"      # empty: no scope needed
    algorithms: list[str] = ["RS256", "ES256", "EdDSA", "Ed25519"]
    jwks_cache: timedelta = timedelta(hours=1)

    _check_durations = field_validator("jwks_cache", mode="before")(classmethod(lambda cls, v: _duration(v)))

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        for alg in value:
            if alg not in _TOKEN_ALGORITHMS:
                raise ValueError(
                    f"{alg!r} is not allowed; use asymmetric algorithms only ({', '.join(_TOKEN_ALGORITHMS)}): "
                    "'none' and HMAC algorithms are refused"
                )
        if not value:
            raise ValueError("list at least one algorithm, such as RS256")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> TokenIssuerConfig:
        if bool(self.jwks_url) == bool(self.jwks_file):
            raise ValueError("set exactly one of jwks_url (fetched and cached) or jwks_file (a local JWKS)")
        loopback = ("http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:", "http://localhost/", "http://[::1]")
        if self.jwks_url and not self.jwks_url.startswith(("https://", *loopback)):
            raise ValueError("jwks_url must be an https:// URL (plain http only on loopback, for testing)")
        return self


class TokensConfig(_Section):
    """OAuth bearer tokens (XOAUTH2, OAUTHBEARER) and SCRAM-SHA-256; see docs/tokens.md."""

    enabled: bool = True
    scram: bool = True
    scram_iterations: int = Field(default=4096, ge=4096, le=10_000_000)
    issuer: str = ""                   # empty: urn:smtpgate:<hostname>
    audience: str = ""                 # empty: urn:smtpgate:<hostname>:smtp
    access_token_lifetime: timedelta = timedelta(hours=1)
    max_token_lifetime: timedelta = timedelta(hours=24)
    algorithm: Literal["ES256", "EdDSA", "Ed25519"] = "ES256"
    key_dir: str = "secrets/token-keys"
    leeway: timedelta = timedelta(seconds=30)
    issuers: list[TokenIssuerConfig] = []

    _check_durations = field_validator(
        "access_token_lifetime", "max_token_lifetime", "leeway", mode="before"
    )(classmethod(lambda cls, v: _duration(v)))

    @model_validator(mode="after")
    def _consistent(self) -> TokensConfig:
        if self.access_token_lifetime <= timedelta(0) or self.access_token_lifetime > self.max_token_lifetime:
            raise ValueError("access_token_lifetime must be positive and at most max_token_lifetime")
        if self.leeway > timedelta(minutes=5):
            raise ValueError("leeway is for clock skew: at most 5m")
        names = [i.name for i in self.issuers]
        if len(names) != len(set(names)):
            raise ValueError("every [[tokens.issuers]] needs its own name")
        return self


def _incoming_server(value: str) -> str:
    """"imap:HOST:PORT:SSL|STARTTLS|plain" or "pop3:...": the organisation's mailbox server."""
    if not value:
        return value
    parts = str(value).split(":")
    if len(parts) != 4 or parts[0] not in ("imap", "pop3") or not parts[1] or not parts[2].isdigit() \
            or not 0 < int(parts[2]) < 65536 or parts[3] not in ("SSL", "STARTTLS", "plain"):
        raise ValueError('expected PROTOCOL:HOST:PORT:SECURITY such as "imap:imap.example.com:993:SSL" '
                         "(imap or pop3; SSL, STARTTLS or plain)")
    return value


class AutoconfigConfig(_Section):
    """Client auto-configuration (docs/autoconfig.md): what mail clients are told to use."""

    incoming: str = ""            # "imap:imap.example.com:993:SSL"; empty: no document is served (404)
    hostname: str = ""            # the submission host clients connect to; empty: `hostname`
    submission_port: int = Field(default=0, ge=0, lt=65536)    # 0: the port [smtp] submission listens on
    submissions_port: int = Field(default=0, ge=0, lt=65536)   # 0: the port [smtp] submissions listens on
    domains: list[str] = []       # the mail domains described; empty: any
    provider_name: str = ""       # shown by clients; empty: the hostname

    _check_incoming = field_validator("incoming")(classmethod(lambda cls, v: _incoming_server(v)))

    @field_validator("domains")
    @classmethod
    def _check_domains(cls, value: list[str]) -> list[str]:
        return [_domain(v) for v in value]


class ClusterConfig(_Section):
    """Several nodes on one PostgreSQL and one Redis; see docs/cluster.md."""

    enabled: bool = False
    node_name: str = ""            # "": the host name; unique per node
    address: str = ""              # how operators reach this node (shown by `cluster status`)
    master_key_file: str = "cluster-master.key"  # the same file on every node: seals keys in the database
    lease: timedelta = timedelta(seconds=30)          # a dead node's messages go back after this
    heartbeat_interval: timedelta = timedelta(seconds=5)
    cache_fallback_ttl: timedelta = timedelta(seconds=2)  # login caches while notifications are down
    listen_url: str = ""           # LISTEN connection, past a pooler (pgbouncer); "": [database] url

    _check_durations = field_validator("lease", "heartbeat_interval", "cache_fallback_ttl", mode="before")(
        classmethod(lambda cls, v: _duration(v)))

    @field_validator("lease")
    @classmethod
    def _lease_floor(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("a lease shorter than 1s would lapse while it is renewed; use at least 1s")
        return value

    @field_validator("listen_url")
    @classmethod
    def _listen_scheme(cls, value: str) -> str:
        if value and not value.startswith("postgresql"):
            raise ValueError("expected a postgresql+psycopg:// URL (LISTEN needs a direct session)")
        return value


class Config(_Section):
    """The whole configuration; `base_dir` is the folder of the file it came from."""

    hostname: str = "localhost"
    database: DatabaseConfig = DatabaseConfig()
    secrets: SecretsConfig = SecretsConfig()
    tls: TlsConfig = TlsConfig()
    smtp: SmtpConfig = SmtpConfig()
    admin: AdminConfig = AdminConfig()
    passwords: PasswordConfig = PasswordConfig()
    credentials: CredentialConfig = CredentialConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    guard: GuardConfig = GuardConfig()
    audit: AuditConfig = AuditConfig()
    alerts: AlertsConfig = AlertsConfig()
    tokens: TokensConfig = TokensConfig()
    deliverability: DeliverabilityConfig = DeliverabilityConfig()
    reputation: ReputationConfig = ReputationConfig()
    legacy: LegacyConfig = LegacyConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    autoconfig: AutoconfigConfig = AutoconfigConfig()
    web: WebConfig = WebConfig()
    cluster: ClusterConfig = ClusterConfig()
    base_dir: Path = Field(default=Path("."), exclude=True)
    source: Path | None = Field(default=None, exclude=True)

    def path(self, value: str) -> Path:
        """Resolve a path from the file against the config's folder."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.path('smtpgate.db')}"

    def cluster_problem(self) -> str | None:
        """Why `[cluster] enabled = true` cannot work with the rest of this config, if it cannot."""
        if not self.cluster.enabled:
            return None
        wrong = []
        if not self.database_url.startswith("postgresql"):
            wrong.append("`[database] url` must be a postgresql+psycopg:// URL (the nodes share the queue there)")
        if self.guard.backend != "redis":
            wrong.append('`[guard] backend` must be "redis" (bans, quotas and connection caps across nodes)')
        if not wrong:
            return None
        return "`[cluster] enabled = true` needs " + " and ".join(wrong) + "."

    @property
    def console_url(self) -> str:
        """Where owners reach the web console: [web] public_url, or the admin listener."""
        if self.web.public_url:
            return self.web.public_url.rstrip("/")
        host, _, port = self.admin.listen.rpartition(":")
        if host.strip("[]") in ("0.0.0.0", "::"):  # every interface: the name clients use, as in the certificate
            host = self.hostname
        return f"{self.admin.scheme}://{host}:{port}"

    @property
    def capture_dir(self) -> Path:
        return self.path(self.delivery.capture_dir)

    def with_ports(self, *, submission: int | None = None, submissions: int | None = None,
                   admin: int | None = None) -> Config:
        """The same config listening on other ports (same addresses): `serve --port` and `make run PORT=`."""
        def moved(listen: str, port: int | None, option: str) -> str:
            if port is None:
                return listen
            if not 0 < port < 65536:
                raise ConfigError(f"{option} {port} is not a TCP port; use a number from 1 to 65535.")
            return f"{listen.rpartition(':')[0]}:{port}"

        smtp = self.smtp.model_copy(update={
            "submission": moved(self.smtp.submission, submission, "--port"),
            "submissions": moved(self.smtp.submissions, submissions, "--tls-port"),
        })
        admin_section = self.admin.model_copy(update={"listen": moved(self.admin.listen, admin, "--admin-port")})
        return self.model_copy(update={"smtp": smtp, "admin": admin_section})

    def read_secret_file(self, value: str, what: str) -> bytes:
        """Read a secret file, refusing one that others can read."""
        path = self.path(value)
        try:
            mode = path.stat().st_mode & 0o777
            data = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(
                f"{self.source}: cannot read the {what} file {path}: {exc.strerror}. "
                "Run `smtpgate init` to create it, or fix the path in the config."
            ) from None
        if mode & 0o077:
            raise ConfigError(
                f"{path}: the {what} file is readable by others (mode {mode:o}); "
                f"run `chmod 600 {path}`."
            )
        if not data:
            raise ConfigError(f"{path}: the {what} file is empty.")
        return data


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or CONFIG_NAME)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format_error(path: Path, error: Any) -> str:  # a pydantic ErrorDetails
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key `{key}` (a typo?); remove it or check the documented keys"
    message = error["msg"].removeprefix("Value error, ")
    found = _describe(error.get("input"))
    return f"{path}: key `{key}`: found {found}; {message[0].lower()}{message[1:]}"


def load_config(path: Path | str | None = None) -> Config:
    """Load and validate the config file, or raise ConfigError."""
    file = Path(path) if path else default_config_path()
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: no such config file. Create one with "
            "`smtpgate init --data-dir DIR`, then pass --config DIR/smtpgate.toml "
            f"or set {CONFIG_ENV}."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config file: {exc.strerror}") from None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        lines = [_format_error(file, err) for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    config.base_dir = file.resolve().parent
    config.source = file.resolve()
    problem = config.cluster_problem()
    if problem:
        raise ConfigError(f"{file}: {problem}")
    return config
