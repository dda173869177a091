"""The checks of one reachable port: banner, EHLO, TLS, certificate, AUTH mechanisms.

A probe leaves behind an open, TLS-protected connection after EHLO when the port could
carry a password safely (trusted certificate, or --insecure), so authentication and the
test message reuse it instead of opening yet another connection.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from smtpgate.doctor import explain
from smtpgate.doctor.certs import (
    EXPIRY_WARNING_DAYS,
    CertFacts,
    examine,
    verify_problem,
)
from smtpgate.doctor.report import Check, Report, Status
from smtpgate.doctor.transcript import Transcript
from smtpgate.doctor.wire import ConnectFailed, Reply, Wire, WireError


@dataclass(frozen=True)
class PortSpec:
    """A port and how TLS starts on it: starttls, tls (implicit), or auto (STARTTLS, else TLS)."""

    port: int
    mode: str = "auto"

    @classmethod
    def parse(cls, value: str) -> PortSpec:
        number, _, mode = value.strip().partition(":")
        mode = mode.lower() or ("tls" if number == "465" else "auto")
        if not number.isdigit() or not 0 < int(number) < 65536:
            raise ValueError(f"{value!r}: expected a port number, such as 587 or 2465:tls")
        if mode not in ("auto", "starttls", "tls"):
            raise ValueError(f"{value!r}: the mode after ':' is starttls, tls or auto")
        return cls(int(number), mode)

    def __str__(self) -> str:
        return str(self.port)


@dataclass
class ProbeSettings:
    host: str  # the name TLS verifies (and SNI sends)
    ehlo_name: str
    connect_timeout: float
    timeout: float
    cafile: str
    insecure: bool
    now: Callable[[], datetime]


@dataclass
class PortSession:
    spec: PortSpec
    wire: Wire | None = None  # open after EHLO on TLS, when a password may be sent on it
    mechanisms: list[str] = field(default_factory=list)


def ehlo_features(reply: Reply) -> dict[str, str]:
    """EHLO keywords (upper case) and their parameters; the first line is the greeting."""
    features: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        features[keyword.upper()] = params.strip()
    return features


class PortProbe:
    def __init__(self, report: Report, transcript: Transcript, settings: ProbeSettings) -> None:
        self.report = report
        self.transcript = transcript
        self.s = settings
        self._wires: list[Wire] = []  # every connection this probe opened, closed by run()

    def _connect(self, spec: PortSpec, address: str) -> Wire:
        wire = Wire.connect(address, spec.port, connect_timeout=self.s.connect_timeout,
                            timeout=self.s.timeout, transcript=self.transcript)
        self._wires.append(wire)
        return wire

    def _add(self, kind: str, spec: PortSpec, status: Status, summary: str,
             why: explain.Explanation | None = None, **data: object) -> Check:
        return self.report.add(Check(
            id=f"{kind}:{spec.port}", title=f"{kind} {spec.port}", status=status, summary=summary,
            cause=why.cause if why else "", fix=why.fix if why else "", data=dict(data),
        ))

    def verifying_context(self) -> ssl.SSLContext:
        if self.s.cafile:
            return ssl.create_default_context(cafile=self.s.cafile)
        return ssl.create_default_context()

    @staticmethod
    def looking_context() -> ssl.SSLContext:
        """Accepts any certificate: only to read it after verification failed."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    # ---------------------------------------------------------------- the run

    def run(self, spec: PortSpec, wire: Wire, address: str) -> PortSession:
        """All checks of this port; `wire` is the connection the TCP check opened."""
        session = PortSession(spec)
        self._wires = [wire]
        try:
            self._walk(spec, wire, address, session)
        except WireError as exc:  # a step broke off outside the ones that report it themselves
            self._add("session", spec, Status.FAIL, f"the conversation broke off: {exc}",
                      explain.explain_broken(exc.kind))
            session.wire = None
        for opened in self._wires:
            if opened is not session.wire:
                opened.close(quit=True)
        return session

    def _walk(self, spec: PortSpec, wire: Wire | None, address: str, session: PortSession) -> None:
        implicit, trusted = spec.mode == "tls", False
        if wire is None:  # the TCP check opened none: nothing to walk
            return
        if implicit:
            wire, trusted = self._handshake(spec, wire, address, implicit=True)
            if wire is None:
                return
        greeting = self._banner(spec, wire, may_want_tls=not implicit and spec.mode == "auto")
        if isinstance(greeting, WireError):
            wire, trusted = self._implicit_fallback(spec, wire, address, greeting)
            if wire is None or self._banner(spec, wire, may_want_tls=False) != "ok":
                return
            implicit = True
        elif greeting != "ok":
            return
        plain = self._ehlo(spec, wire, tls=implicit)
        if plain is None:
            return
        after: dict[str, str] | None
        if implicit:
            after, plain = plain, None
        else:
            if "STARTTLS" not in plain:
                mangled = any("XXXXXXX" in keyword for keyword in plain)
                self._add("tls", spec, Status.FAIL, "STARTTLS not offered", explain.explain_no_starttls(mangled))
                self._mechanisms(spec, plain, None)
                return
            reply = wire.command("STARTTLS")
            if reply.code != 220:
                self._add("tls", spec, Status.FAIL, f"STARTTLS refused: {reply}",
                          explain.explain_reply(reply.code, reply.text, "starttls"))
                return
            wire, trusted = self._handshake(spec, wire, address, implicit=False)
            if wire is None:
                return
            after = self._ehlo(spec, wire, tls=True, again=True)
            if after is None:
                return
        mechanisms = self._mechanisms(spec, plain, after)
        if trusted and mechanisms:
            session.wire, session.mechanisms = wire, mechanisms

    # ---------------------------------------------------------------- steps

    def _banner(self, spec: PortSpec, wire: Wire, *, may_want_tls: bool) -> str | WireError:
        """ok, failed, or why an auto port did not greet (it may want TLS first)."""
        try:
            reply = wire.read_reply()
        except WireError as exc:
            # an implicit-TLS port either waits for a ClientHello or, like smtpgate's own after its
            # handshake timeout, closes the connection: both may be a port that wants TLS first
            if exc.kind in ("timeout", "closed") and may_want_tls:
                self.transcript.note("no greeting: trying implicit TLS on this port", wire.label)
                return exc
            what = "no greeting" if exc.kind == "timeout" else "closed without a greeting"
            self._add("banner", spec, Status.FAIL, f"{what} ({exc})",
                      explain.explain_no_greeting(exc.kind, spec.port, self.s.timeout))
            return "failed"
        if reply.code != 220:
            self._add("banner", spec, Status.FAIL, f"refused: {reply}",
                      explain.explain_reply(reply.code, reply.text, "banner"), code=reply.code, reply=reply.text)
            return "failed"
        self._add("banner", spec, Status.PASS, str(reply), reply=reply.text)
        return "ok"

    def _implicit_fallback(self, spec: PortSpec, silent: Wire, address: str,
                           why: WireError) -> tuple[Wire | None, bool]:
        """A port that greets nobody may be waiting for a TLS ClientHello: try that once."""
        silent.close()
        try:
            self._connect(spec, address).start_tls(self.looking_context(), self.s.host)
        except (ConnectFailed, ssl.SSLError, OSError):
            what = f"no greeting in {self.s.timeout:g} s" if why.kind == "timeout" else f"closed without a greeting ({why})"
            self._add("banner", spec, Status.FAIL, f"{what}, and no TLS either",
                      explain.explain_no_greeting(why.kind, spec.port, self.s.timeout))
            return None, False
        self.transcript.note("this port speaks implicit TLS: starting over with TLS first", str(spec.port))
        try:
            fresh = self._connect(spec, address)
        except ConnectFailed as exc:
            self._add("tls", spec, Status.FAIL, f"second connection failed: {exc}",
                      explain.explain_connect_error(exc.kind, spec.port, self.s.connect_timeout))
            return None, False
        return self._handshake(spec, fresh, address, implicit=True)

    def _ehlo(self, spec: PortSpec, wire: Wire, *, tls: bool, again: bool = False) -> dict[str, str] | None:
        reply = wire.command(f"EHLO {self.s.ehlo_name}")
        if reply.code == 250:
            features = ehlo_features(reply)
            if not again:
                self._add("ehlo", spec, Status.PASS, ", ".join(features) or "no extensions",
                          features=features, tls=tls)
            return features
        helo = wire.command(f"HELO {self.s.ehlo_name}")
        why = explain.Explanation(
            "The server does not speak ESMTP (EHLO), so it offers neither STARTTLS nor AUTH."
            if helo.code == 250 else "The server refuses EHLO and HELO from this client.",
            "Use a server that supports ESMTP; ask its administrator.",
        )
        self._add("ehlo", spec, Status.FAIL, f"EHLO refused: {reply}", why, code=reply.code, reply=reply.text)
        return None

    def _handshake(self, spec: PortSpec, wire: Wire, address: str, *, implicit: bool) -> tuple[Wire | None, bool]:
        """TLS with verification; on a certificate failure, a second look without it."""
        try:
            wire.start_tls(self.verifying_context(), self.s.host)
        except ssl.SSLCertVerificationError as exc:
            wire.close()
            problem = verify_problem(exc)
            return self._untrusted(spec, address, implicit, problem, exc.verify_message or str(exc))
        except (ssl.SSLError, OSError) as exc:
            wire.close()
            message = getattr(exc, "reason", None) or str(exc)
            self._add("tls", spec, Status.FAIL, f"TLS handshake failed: {message}",
                      explain.explain_tls_failure(str(exc), implicit, spec.port))
            return None, False
        self._tls_ok(spec, wire, implicit)
        facts = self._facts(wire)
        if facts is None:
            return wire, True
        if facts.days_left < EXPIRY_WARNING_DAYS:
            self._add("cert", spec, Status.WARN, f"trusted, but expires in {facts.days_left} days",
                      explain.explain_certificate("expiring", self.s.host, detail=f"{facts.not_after:%Y-%m-%d}"),
                      **facts.to_json())
        else:
            how = ", self-signed, trusted via --cafile" if facts.self_signed else f", issued by {facts.issuer}"
            self._add("cert", spec, Status.PASS,
                      f"trusted, for {_names(facts)}{how}, expires {facts.not_after:%Y-%m-%d} ({facts.days_left} days)",
                      None, **facts.to_json())
        return wire, True

    def _tls_ok(self, spec: PortSpec, wire: Wire, implicit: bool) -> None:
        how = "implicit TLS" if implicit else "STARTTLS"
        version = wire.tls_version
        if version in ("TLSv1", "TLSv1.1", "SSLv3"):
            self._add("tls", spec, Status.WARN, f"{how} with {version} {wire.tls_cipher}",
                      explain.explain_tls_failure("unsupported protocol", implicit, spec.port),
                      version=version, cipher=wire.tls_cipher, mode=how)
        else:
            self._add("tls", spec, Status.PASS, f"{how} works: {version} {wire.tls_cipher}",
                      version=version, cipher=wire.tls_cipher, mode=how)

    def _facts(self, wire: Wire) -> CertFacts | None:
        der = wire.peer_certificate()
        return examine(der, self.s.host, self.s.now()) if der else None

    def _untrusted(self, spec: PortSpec, address: str, implicit: bool, problem: str,
                   message: str) -> tuple[Wire | None, bool]:
        """Report what is wrong with the certificate, read on a new connection that accepts it."""
        wire = self._reopen(spec, address, implicit)
        facts = self._facts(wire) if wire is not None else None
        problems = list(dict.fromkeys([problem, *(facts.problems if facts else [])]))
        if problems[0] == "unverified":
            problems = problems[1:] or ["unverified"]
        if "self-signed" in problems and "untrusted" in problems:
            problems.remove("untrusted")
        details = {
            "expired": f"{facts.not_after:%Y-%m-%d}" if facts else "",
            "hostname": _names(facts) if facts else "",
        }
        whys = [explain.explain_certificate(p, self.s.host, detail=details.get(p, "") or message) for p in problems]
        words = {"expired": "expired", "not-yet-valid": "not yet valid", "hostname": f"not valid for {self.s.host}",
                 "self-signed": "self-signed", "untrusted": "untrusted issuer"}
        summary = "NOT trusted: " + ", ".join(words.get(p, message) for p in problems)
        if facts is not None:
            summary += f" (for {_names(facts)}, expires {facts.not_after:%Y-%m-%d})"
        if wire is not None:
            self._tls_ok(spec, wire, implicit)
        self._add("cert", spec, Status.FAIL, summary,
                  explain.Explanation(" ".join(w.cause for w in whys), " ".join(w.fix for w in whys)),
                  verify_error=message, **(facts.to_json() if facts else {"problems": problems}))
        if wire is not None and not self.s.insecure:
            self.transcript.note("certificate not trusted: no password will be sent on this port", wire.label)
        return wire, self.s.insecure and wire is not None

    def _reopen(self, spec: PortSpec, address: str, implicit: bool) -> Wire | None:
        """The same path again, accepting any certificate, to read it (and, with --insecure, go on)."""
        self.transcript.note("reconnecting without certificate verification, to examine the certificate",
                             str(spec.port))
        wire: Wire | None = None
        try:
            wire = self._connect(spec, address)
            if not implicit:
                wire.read_reply()
                wire.command(f"EHLO {self.s.ehlo_name}")
                if wire.command("STARTTLS").code != 220:
                    raise WireError("garbled", "STARTTLS refused on the second connection")
            wire.start_tls(self.looking_context(), self.s.host)
            return wire
        except (ConnectFailed, WireError, ssl.SSLError, OSError):
            if wire is not None:
                wire.close()
            return None

    def _mechanisms(self, spec: PortSpec, plain: dict[str, str] | None, tls: dict[str, str] | None) -> list[str]:
        """AUTH as advertised; warns when it is offered before TLS."""
        before = (plain or {}).get("AUTH", "").split() if plain is not None and "AUTH" in plain else []
        after = tls.get("AUTH", "").split() if tls is not None and "AUTH" in tls else []
        if tls is None:
            if before:
                self._add("auth-mechanisms", spec, Status.WARN, f"AUTH offered without TLS: {' '.join(before)}",
                          _AUTH_BEFORE_TLS, before_tls=before, after_tls=[])
            return []
        if not after:
            if spec.port == 25:
                self._add("auth-mechanisms", spec, Status.PASS,
                          "no AUTH (normal on port 25, which is for server-to-server mail)", after_tls=[])
            else:
                self._add("auth-mechanisms", spec, Status.FAIL, "no AUTH offered after TLS", explain.Explanation(
                    "The server offers no authentication on this port: it is a port for server-to-server "
                    "mail, or authentication is switched off.",
                    f"Use your provider's submission port ({explain.SUBMISSION_PORTS}); the administrator "
                    "must enable SMTP AUTH (Postfix: smtpd_sasl_auth_enable = yes).",
                ), after_tls=[])
            return []
        if before:
            self._add("auth-mechanisms", spec, Status.WARN,
                      f"AUTH offered before TLS ({' '.join(before)}); after TLS: {' '.join(after)}",
                      _AUTH_BEFORE_TLS, before_tls=before, after_tls=after)
        else:
            self._add("auth-mechanisms", spec, Status.PASS, f"{' '.join(after)} (only after TLS)",
                      before_tls=[], after_tls=after)
        return [m.upper() for m in after]


_AUTH_BEFORE_TLS = explain.Explanation(
    "The server offers AUTH on the unencrypted connection: a client that does not insist on TLS "
    "sends the password in clear text, readable by anyone on the way.",
    "Clients: always use STARTTLS or port 465. Administrator: offer AUTH only after TLS "
    "(Postfix: smtpd_tls_auth_only = yes; smtpgate does this by itself).",
)


def _names(facts: CertFacts) -> str:
    shown = ", ".join(facts.names[:3]) or facts.subject
    return shown + (f" (+{len(facts.names) - 3} more)" if len(facts.names) > 3 else "")
