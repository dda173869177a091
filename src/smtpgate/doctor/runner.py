"""The doctor's run, in the order a person would check by hand.

DNS, TCP reach of every port, then per reachable port its greeting, EHLO, TLS, certificate
and AUTH mechanisms; then one authentication (on the first port that can carry a password
safely, so a wrong password counts once against your address, not once per port) and, when
asked, one test message on the same connection.
"""

from __future__ import annotations

import base64
import email.utils
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.message import EmailMessage

from smtpgate.doctor import explain
from smtpgate.doctor.lookup import Lookup, is_ip
from smtpgate.doctor.probe import PortProbe, PortSession, PortSpec, ProbeSettings
from smtpgate.doctor.report import Check, Report, Status
from smtpgate.doctor.transcript import REDACTED, Transcript, redact_auth_command
from smtpgate.doctor.wire import ConnectFailed, Reply, Wire, WireError

DEFAULT_PORTS = (PortSpec(587, "auto"), PortSpec(465, "tls"), PortSpec(25, "auto"))


@dataclass
class DoctorOptions:
    host: str  # a server name or IP; or an address user@domain to find its server by SRV
    ports: list[PortSpec] = field(default_factory=list)  # empty: 587, 465, 25 (or the SRV ports)
    user: str = ""
    password: str = field(default="", repr=False)
    send_to: str = ""
    check_recipient_domain: bool = False  # also look up the MX of send_to's domain (advice only)
    mail_from: str = ""
    cafile: str = ""
    connect_timeout: float = 5.0
    timeout: float = 15.0
    dns_server: str | None = None
    insecure: bool = False
    ehlo_name: str = ""
    legacy: bool = False  # play a device on a legacy listener (doctor/legacy.py)
    source: str = ""  # connect from this local address (a device's, on a machine that has several)
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)


def diagnose(options: DoctorOptions) -> Report:
    """Run every check; the report says what passed, what failed, why, and what to do."""
    if options.legacy:
        from smtpgate.doctor.legacy import LegacyDoctor

        return LegacyDoctor(options).run()
    return Doctor(options).run()


class Doctor:
    def __init__(self, options: DoctorOptions) -> None:
        self.o = options
        self.report = Report(options.host)
        self.transcript = Transcript()
        self.transcript.add_secret(options.password, options.user)
        self.lookup = Lookup(options.dns_server, timeout=options.connect_timeout)
        self._mx_done: set[str] = set()

    def run(self) -> Report:
        try:
            self._run()
        finally:
            self.report.transcript = self.transcript.lines
        return self.report

    def _run(self) -> None:
        target = self._target()
        if target is None:
            return
        host, ports = target
        addresses = self._addresses(host)
        if self.o.send_to and self.o.check_recipient_domain:
            self._mx(self.o.send_to.rpartition("@")[2], for_what="recipient")
        if not addresses:
            return
        reached = self._reach_all(ports, addresses)
        probe = PortProbe(self.report, self.transcript, ProbeSettings(
            host=host, ehlo_name=self.o.ehlo_name or _ehlo_name(), connect_timeout=self.o.connect_timeout,
            timeout=self.o.timeout, cafile=self.o.cafile, insecure=self.o.insecure, now=self.o.now,
        ))
        usable = [s for s in (probe.run(spec, wire, address) for spec, wire, address in reached) if s.wire]
        # port 25 is for server-to-server mail: log in there only when nothing else works
        chosen = next((s for s in usable if s.spec.port != 25), usable[0] if usable else None)
        for other in usable:
            if other is not chosen and other.wire is not None:
                other.wire.close(quit=True)
        try:
            self._authenticate(chosen)
        finally:
            if chosen is not None and chosen.wire is not None:
                chosen.wire.close(quit=True)

    # ---------------------------------------------------------------- DNS

    def _target(self) -> tuple[str, list[PortSpec]] | None:
        """The server to test: HOST itself, or for user@domain the domain's SRV records."""
        host = self.o.host.strip().rstrip(".")
        if "@" not in host:
            return host, list(self.o.ports or DEFAULT_PORTS)
        domain = host.rpartition("@")[2]
        self._mx(domain, for_what="address")
        found = [(t, "tls") for t in self.lookup.srv(f"_submissions._tcp.{domain}")]
        found += [(t, "starttls") for t in self.lookup.srv(f"_submission._tcp.{domain}")]
        if not found:
            self.report.add(Check("srv", "srv", Status.FAIL, f"{domain} publishes no submission server", *_pair(
                explain.Explanation(
                    f"{domain} has no _submissions._tcp or _submission._tcp SRV record (RFC 6186), so "
                    "the server cannot be found from the address alone.",
                    "Run the doctor with the server's name instead (your provider's help page lists it, "
                    f"often smtp.{domain} or mail.{domain}).",
                ))))
            return None
        server = found[0][0].host
        ports = list(self.o.ports) or [PortSpec(t.port, mode) for t, mode in found if t.host == server]
        self.report.add(Check("srv", "srv", Status.PASS,
                              f"{domain} submits through {server} port {', '.join(str(p) for p in ports)}",
                              data={"server": server, "ports": [p.port for p in ports]}))
        return server, ports

    def _mx(self, domain: str, *, for_what: str) -> None:
        domain = domain.strip().lower().rstrip(".")
        if not domain or domain in self._mx_done:
            return
        self._mx_done.add(domain)
        hosts, answer = self.lookup.mx(domain)
        check_id, title = f"mx:{domain}", f"mx {domain}"
        if hosts and all(m.host in ("", ".", "@") for m in hosts):
            check = Check(check_id, title, Status.FAIL, f"{domain} accepts no mail (null MX)", *_pair(
                explain.Explanation(
                    f"{domain} publishes a null MX (RFC 7505): it declares that it receives no mail.",
                    f"Check the {for_what}'s domain; mail to {domain} cannot be delivered.",
                )))
        elif hosts:
            shown = ", ".join(f"{m.preference} {m.host}" for m in hosts[:4])
            check = Check(check_id, title, Status.PASS, f"MX {shown}", data={"mx": answer.values})
        elif answer.error == "noanswer":
            has_address = bool(self.lookup.addresses(domain).values)
            status = Status.WARN if has_address else Status.FAIL
            why = explain.Explanation(
                f"{domain} has no MX record" + (
                    "; mail goes to the domain's own address (implicit MX), which often is a web server."
                    if has_address else " and no address: it cannot receive mail."),
                f"Check the {for_what}'s domain; its DNS administrator should publish an MX record.",
            )
            check = Check(check_id, title, status, f"no MX for {domain}", *_pair(why))
        else:
            why = explain.explain_dns(answer.error, domain, "MX")
            if for_what == "recipient":  # not a server name: the usual fix does not apply
                why = explain.Explanation(why.cause, f"Check the spelling of the recipient's domain {domain}.")
            status = Status.WARN if answer.error == "timeout" else Status.FAIL
            check = Check(check_id, title, status, f"MX lookup failed: {answer.message}", *_pair(why))
        if for_what == "recipient":
            # The recipient's domain is not the server under test: what is found there is
            # advice (the server may relay or hold the message), never a failed run.
            check = replace(check, id=f"recipient-domain:{domain}", title=f"recipient domain {domain}",
                            status=Status.WARN if check.status is Status.FAIL else check.status)
        self.report.add(check)

    def _addresses(self, host: str) -> list[str]:
        if is_ip(host):
            self.report.add(Check("dns", "dns", Status.PASS, f"{host} is an IP address (no lookup needed)",
                                  data={"addresses": [host]}))
            return [host]
        answer = self.lookup.addresses(host)
        if answer.values:
            source = " (system resolver)" if answer.source == "system" else ""
            self.report.add(Check("dns", "dns", Status.PASS, f"{host} has {', '.join(answer.values)}{source}",
                                  data={"addresses": answer.values, "source": answer.source}))
            return answer.values
        why = explain.explain_dns(answer.error, host)
        self.report.add(Check("dns", "dns", Status.FAIL, f"{host}: {answer.message}", *_pair(why),
                              data={"error": answer.error}))
        return []

    # ---------------------------------------------------------------- TCP

    def _reach_all(self, ports: list[PortSpec], addresses: list[str]) -> list[tuple[PortSpec, Wire, str]]:
        """TCP to every port; with the default ports, one blocked port is a warning if another works."""
        reached: list[tuple[PortSpec, Wire, str]] = []
        failed: list[Check] = []
        for spec in ports:
            wire, address, failure = self._reach(spec, addresses)
            check_id, title = f"tcp:{spec.port}", f"tcp {spec.port}"
            if wire is not None:
                self.report.add(Check(check_id, title, Status.PASS, f"connected to {address}",
                                      data={"address": address}))
                reached.append((spec, wire, address))
                continue
            assert failure is not None
            why = explain.explain_connect_error(failure.kind, spec.port, self.o.connect_timeout)
            failed.append(self.report.add(Check(check_id, title, Status.FAIL, str(failure), *_pair(why),
                                                data={"error": failure.kind})))
        if reached and not self.o.ports:
            for check in failed:
                check.status = Status.WARN
                check.fix += f" Port {reached[0][0].port} works, so this is only a problem if a client insists on this port."
        return reached

    def _reach(self, spec: PortSpec, addresses: list[str]) -> tuple[Wire | None, str, ConnectFailed | None]:
        failure: ConnectFailed | None = None
        for address in addresses:
            try:
                wire = Wire.connect(address, spec.port, connect_timeout=self.o.connect_timeout,
                                    timeout=self.o.timeout, transcript=self.transcript, source=self.o.source)
            except ConnectFailed as exc:
                # a timeout says more than a refusal on another address family
                if failure is None or exc.kind == "timeout":
                    failure = exc
                continue
            return wire, address, None
        return None, "", failure

    # ---------------------------------------------------------------- AUTH and a message

    def _authenticate(self, session: PortSession | None) -> None:
        if not self.o.user:
            self.report.add(Check("auth", "auth", Status.SKIP,
                                  "not tested: give --user LOGIN and --password-stdin, --password-env VAR or --profile NAME"))
            if self.o.send_to:
                self.report.add(Check("send", "send", Status.SKIP, "not tested: sending needs a login"))
            return
        if session is None or session.wire is None:
            self.report.add(Check("auth", "auth", Status.SKIP,
                                  "not tested: no port offered AUTH over trusted TLS, so the password was not sent"))
            if self.o.send_to:
                self.report.add(Check("send", "send", Status.SKIP, "not tested: no authenticated connection"))
            return
        wire, port = session.wire, session.spec.port
        mechanism = next((m for m in ("PLAIN", "LOGIN") if m in session.mechanisms), "")
        if not mechanism:
            self.report.add(Check("auth", "auth", Status.FAIL,
                                  f"no mechanism the doctor speaks: server offers {' '.join(session.mechanisms)}",
                                  *_pair(explain.explain_reply(504, "5.5.4", "auth"))))
            return
        try:
            reply = self._auth_exchange(wire, mechanism)
        except WireError as exc:
            why = explain.explain_reply(421, "4.7.0", "auth") if exc.kind == "closed" else explain.explain_broken(exc.kind)
            self.report.add(Check("auth", "auth", Status.FAIL, f"no answer to AUTH: {exc}", *_pair(why),
                                  data={"port": port, "mechanism": mechanism}))
            return
        data = {"port": port, "mechanism": mechanism, "code": reply.code, "enhanced": reply.enhanced, "reply": reply.text}
        if reply.code != 235:
            self.report.add(Check("auth", "auth", Status.FAIL, f"{self.o.user} refused on port {port}: {reply}",
                                  *_pair(explain.explain_reply(reply.code, reply.text, "auth")), data=data))
            if self.o.send_to:
                self.report.add(Check("send", "send", Status.SKIP, "not tested: authentication failed"))
            return
        self.report.add(Check("auth", "auth", Status.PASS,
                              f"authenticated as {self.o.user} with {mechanism} on port {port}", data=data))
        if self.o.send_to:
            self._send(wire)

    def _auth_exchange(self, wire: Wire, mechanism: str) -> Reply:
        user, password = self.o.user, self.o.password
        if mechanism == "PLAIN":
            blob = _b64(f"\0{user}\0{password}")
            return wire.command(f"AUTH PLAIN {blob}", shown=redact_auth_command(f"AUTH PLAIN {blob}"))
        reply = wire.command("AUTH LOGIN")
        for value in (user, password):
            if reply.code != 334:
                return reply
            reply = wire.command(_b64(value), shown=REDACTED)
        return reply

    def _send(self, wire: Wire) -> None:
        sender = self.o.mail_from or (self.o.user if "@" in self.o.user else "")
        message = _test_message(sender, self.o.send_to, self.report.target)
        steps = [("mail", f"MAIL FROM:<{sender}>", (250,)), ("rcpt", f"RCPT TO:<{self.o.send_to}>", (250, 251)),
                 ("data", "DATA", (354,))]
        try:
            for stage, line, good in steps:
                reply = wire.command(line)
                if reply.code not in good:
                    self._send_failed(stage, reply)
                    return
            reply = wire.send_message(message)
        except WireError as exc:
            self.report.add(Check("send", "send", Status.FAIL, f"the connection broke off: {exc}",
                                  *_pair(explain.explain_broken(exc.kind))))
            return
        if reply.code != 250:
            self._send_failed("data", reply)
            return
        self.report.add(Check("send", "send", Status.PASS, f"test message to {self.o.send_to} accepted: {reply}",
                              data={"code": reply.code, "reply": reply.text, "to": self.o.send_to, "from": sender}))

    def _send_failed(self, stage: str, reply: Reply) -> None:
        what = {"mail": "sender", "rcpt": "recipient", "data": "message"}[stage]
        self.report.add(Check("send", "send", Status.FAIL, f"{what} refused: {reply}",
                              *_pair(explain.explain_reply(reply.code, reply.text, stage)),
                              data={"stage": stage, "code": reply.code, "reply": reply.text}))


def _pair(why: explain.Explanation) -> tuple[str, str]:
    return why.cause, why.fix


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _ehlo_name() -> str:
    name = socket.getfqdn()
    return name if "." in name else "localhost.localdomain"


def _test_message(sender: str, recipient: str, target: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = "smtpgate doctor test message"
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(
        f"This message was sent by `smtpgate doctor {target}` to confirm that sending works.\n"
        "If it arrived, the server, the login and the network are all fine. No reply is needed.\n"
    )
    return message.as_bytes()
