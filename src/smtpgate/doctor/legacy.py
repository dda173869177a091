"""`smtpgate doctor HOST --legacy`: what a printer or a UPS sees on a legacy listener.

A device there speaks plain SMTP, old TLS, or no AUTH at all. The doctor plays the device:
from its address if asked (`--source`), over the channel it uses (`--port N` plain,
`--port N:starttls` with STARTTLS), and names every weakness it meets in plain words, so an
administrator knows what the listener trades away for that device. It speaks SMTP over the
network only, like the rest of the doctor.
"""

from __future__ import annotations

import ssl
import warnings

from smtpgate.doctor import explain
from smtpgate.doctor.probe import PortSpec, ehlo_features
from smtpgate.doctor.report import Check, Status
from smtpgate.doctor.runner import Doctor, _pair
from smtpgate.doctor.wire import ConnectFailed, Reply, Wire, WireError

DEFAULT_LEGACY_PORT = PortSpec(2525, "auto")

# each weakness: its short name (the summary line) and what it means (the cause)
NO_TLS = "no TLS: the listener offers no STARTTLS, so everything a device sends crosses the network in clear."
PLAIN_SESSION = "no TLS in this session: the device's mail crosses the network in clear, readable by anyone on the way."
AUTH_IN_CLEAR = ("AUTH without TLS: PLAIN and LOGIN are base64, not encryption; the device's password can be read "
                 "by anyone on the network path.")
WEAK_TLS = "weak TLS: the listener accepts {version}, deprecated since 2021 (RFC 8996)."
NO_AUTH = ("no AUTH: this address sends as a device without any password; whoever takes the address "
           "(a laptop plugged in where the device was) sends as that device.")


def legacy_context(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context as permissive as an old device: any certificate, TLS 1.0 and up
    (or exactly `version`), security level 0. Only for looking, never for a real password."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version or ssl.TLSVersion.TLSv1
        if version is not None:
            context.maximum_version = version
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


class LegacyDoctor(Doctor):
    """One port, seen as a device sees it: greeting, EHLO, TLS on offer, AUTH or none, a test message."""

    def _run(self) -> None:
        host = self.o.host.strip().rstrip(".")
        addresses = self._addresses(host)
        if not addresses:
            return
        spec = (self.o.ports or [DEFAULT_LEGACY_PORT])[0]
        self.weaknesses: list[str] = []
        wire, address = self._connect(spec, addresses)
        if wire is None:
            return
        try:
            self._walk(spec, wire, address)
        except WireError as exc:
            self.report.add(Check("session", "session", Status.FAIL, f"the conversation broke off: {exc}",
                                  *_pair(explain.explain_broken(exc.kind))))
        finally:
            wire.close(quit=True)
        self._summarise()

    def _connect(self, spec: PortSpec, addresses: list[str]) -> tuple[Wire | None, str]:
        wire, address, failure = self._reach(spec, addresses)
        check_id, title = f"tcp:{spec.port}", f"tcp {spec.port}"
        if wire is None:
            assert failure is not None
            why = explain.explain_connect_error(failure.kind, spec.port, self.o.connect_timeout)
            self.report.add(Check(check_id, title, Status.FAIL, str(failure), *_pair(why), data={"error": failure.kind}))
            return None, ""
        source = f" from {self.o.source}" if self.o.source else ""
        self.report.add(Check(check_id, title, Status.PASS, f"connected to {address}{source}",
                              data={"address": address, "source": self.o.source}))
        return wire, address

    def _walk(self, spec: PortSpec, wire: Wire, address: str) -> None:
        if not self._greeting(wire):
            return
        features = self._ehlo(wire)
        if features is None:
            return
        starttls = "STARTTLS" in features
        auth_in_clear = "AUTH" in features
        self._tls_offer(spec, address, starttls)
        if spec.mode in ("starttls", "tls") and starttls:
            features = self._start_tls(wire)
            if features is None:
                return
        elif starttls:
            self.weaknesses.append(PLAIN_SESSION)
        mechanisms = features.get("AUTH", "").upper().split()
        if self.o.user:
            if not wire.tls_version and auth_in_clear:
                self.weaknesses.append(AUTH_IN_CLEAR)
            self._device_login(wire, spec, mechanisms)
        else:
            self._no_auth(wire)

    def _greeting(self, wire: Wire) -> bool:
        try:
            reply = wire.read_reply()
        except WireError as exc:
            if exc.kind != "closed":
                raise
            self.report.add(Check("greeting", "greeting", Status.FAIL, "closed before the greeting", *_pair(
                explain.Explanation(
                    "The legacy listener closes on every address outside its [legacy] networks, before a word: "
                    f"{'the address ' + self.o.source if self.o.source else 'the address of this machine'} "
                    "is not among them.",
                    "Run the doctor from the device's network (--source ADDRESS on a machine there), or add "
                    "the device's network to [legacy] networks in smtpgate.toml and restart the server.",
                ))))
            return False
        if reply.code != 220:
            self.report.add(Check("greeting", "greeting", Status.FAIL, f"refused: {reply}",
                                  *_pair(explain.explain_reply(reply.code, reply.text, "banner"))))
            return False
        self.report.add(Check("greeting", "greeting", Status.PASS, str(reply)))
        return True

    def _ehlo(self, wire: Wire) -> dict[str, str] | None:
        reply = wire.command(f"EHLO {self.o.ehlo_name or 'device.local'}")
        if reply.code != 250:
            self.report.add(Check("ehlo", "ehlo", Status.FAIL, f"EHLO refused: {reply}",
                                  *_pair(explain.explain_reply(reply.code, reply.text, "ehlo"))))
            return None
        features = ehlo_features(reply)
        offered = ", ".join(f"{k} {v}".strip() for k, v in features.items() if k in ("STARTTLS", "AUTH")) or "no STARTTLS, no AUTH"
        self.report.add(Check("ehlo", "ehlo", Status.PASS, f"offers {offered}", data={"features": features}))
        return features

    # ---------------------------------------------------------------- TLS

    def _tls_offer(self, spec: PortSpec, address: str, starttls: bool) -> None:
        """What TLS a device can get here: the best version, and whether TLS 1.0/1.1 pass."""
        if not starttls:
            self.weaknesses.append(NO_TLS)
            self.report.add(Check("tls", "tls", Status.WARN, "no STARTTLS", NO_TLS,
                                  "Devices that can do TLS get it only where the listener offers it."))
            return
        best = self._handshake(spec, address, None)
        accepted = [name for name, version in (("TLS 1.0", ssl.TLSVersion.TLSv1), ("TLS 1.1", ssl.TLSVersion.TLSv1_1))
                    if self._handshake(spec, address, version)]
        data = {"best": best, "old_versions_accepted": accepted}
        if accepted:
            weak = WEAK_TLS.format(version=" and ".join(accepted))
            self.weaknesses.append(weak)
            self.report.add(Check("tls", "tls", Status.WARN, f"STARTTLS up to {best or '?'}; also {', '.join(accepted)}",
                                  weak, "Fine for a device that can do nothing better; any device that can do "
                                  "TLS 1.2 should use it (set it up with --tls modern).", data=data))
        else:
            self.report.add(Check("tls", "tls", Status.PASS, f"STARTTLS with {best or 'TLS'}; no TLS 1.0 or 1.1", data=data))

    def _handshake(self, spec: PortSpec, address: str, version: ssl.TLSVersion | None) -> str:
        """The version a fresh connection negotiates with this client (empty: refused)."""
        try:
            probe = Wire.connect(address, spec.port, connect_timeout=self.o.connect_timeout, timeout=self.o.timeout,
                                 transcript=self.transcript, source=self.o.source)
        except ConnectFailed:
            return ""
        try:
            probe.read_reply()
            probe.command("EHLO device.local")
            if probe.command("STARTTLS").code != 220:
                return ""
            probe.start_tls(legacy_context(version), None)
            return probe.tls_version
        except (WireError, ssl.SSLError, OSError, ValueError):
            return ""  # the local OpenSSL may not even offer that version: not accepted, as far as we can tell
        finally:
            probe.close(quit=True)

    def _start_tls(self, wire: Wire) -> dict[str, str] | None:
        reply = wire.command("STARTTLS")
        if reply.code != 220:
            self.report.add(Check("starttls", "starttls", Status.FAIL, f"STARTTLS refused: {reply}",
                                  *_pair(explain.explain_reply(reply.code, reply.text, "starttls"))))
            return None
        try:
            wire.start_tls(legacy_context(), None)
        except (ssl.SSLError, OSError) as exc:
            self.report.add(Check("starttls", "starttls", Status.FAIL, f"TLS handshake failed: {exc}"))
            return None
        self.report.add(Check("starttls", "starttls", Status.PASS, f"{wire.tls_version} {wire.tls_cipher}"))
        return self._ehlo(wire)

    # ---------------------------------------------------------------- AUTH, or none

    def _device_login(self, wire: Wire, spec: PortSpec, mechanisms: list[str]) -> None:
        mechanism = next((m for m in ("PLAIN", "LOGIN") if m in mechanisms), "")
        if not mechanism:
            self.report.add(Check("auth", "auth", Status.FAIL, "AUTH PLAIN/LOGIN not offered here", *_pair(
                explain.Explanation("The listener offers no password mechanism on this channel.",
                                    "Check the port: the legacy listener offers AUTH PLAIN and LOGIN with or without TLS."))))
            return
        reply = self._auth_exchange(wire, mechanism)
        data = {"port": spec.port, "mechanism": mechanism, "code": reply.code, "reply": reply.text,
                "tls": wire.tls_version}
        if reply.code == 235:
            over = f"over {wire.tls_version}" if wire.tls_version else "without TLS"
            self.report.add(Check("auth", "auth", Status.PASS, f"logged in as {self.o.user} with {mechanism} {over}",
                                  data=data))
            if self.o.send_to:
                self._send(wire)
            return
        why = explain.explain_reply(reply.code, reply.text, "auth")
        if reply.code == 535:
            why = explain.Explanation(
                "The legacy listener takes device secrets only, each from its own address: an account password "
                "or an app password is refused here, and so is a device secret from another address.",
                "Check the device's secret (smtpgate device list shows its address), and run this from that address "
                "(--source).")
        elif reply.code == 530:
            why = explain.Explanation("This device is set up for TLS, and TLS was not used.",
                                      f"Use --port {spec.port}:starttls, as the device should.")
        self.report.add(Check("auth", "auth", Status.FAIL, f"{self.o.user} refused: {reply}", *_pair(why), data=data))

    def _no_auth(self, wire: Wire) -> None:
        """Without a login: is this address a device known by its address?"""
        sender = self.o.mail_from or f"postmaster@{self.report.target}"
        reply = wire.command(f"MAIL FROM:<{sender}>")
        self._no_auth_verdict(reply, sender)
        if reply.code in (250, 553):
            wire.command("RSET")
        if reply.code == 250 and self.o.send_to:
            self._send(wire)

    def _no_auth_verdict(self, reply: Reply, sender: str) -> None:
        if reply.code == 250:
            self.weaknesses.append(NO_AUTH)
            self.report.add(Check("no-auth", "no-auth", Status.PASS, f"this address sends as a device without AUTH, as {sender}"))
        elif reply.code == 553:
            self.weaknesses.append(NO_AUTH)
            self.report.add(Check("no-auth", "no-auth", Status.WARN, f"a device is known by this address, not as {sender}: {reply}",
                                  "A device known by its address sends as its one sender address.",
                                  "Give the device's sender with --from (smtpgate device list shows it)."))
        else:
            self.report.add(Check("no-auth", "no-auth", Status.SKIP,
                                  f"no device is known by this address without AUTH ({reply}); give --user to test a login"))

    # ---------------------------------------------------------------- the verdict

    def _summarise(self) -> None:
        if not any(c.id == "ehlo" and c.status is Status.PASS for c in self.report.checks):
            return
        found = list(dict.fromkeys(self.weaknesses))
        if not found:
            self.report.add(Check("weaknesses", "weaknesses", Status.PASS, "none seen: TLS 1.2+ and AUTH"))
            return
        names = ", ".join(w.partition(":")[0] for w in found)
        self.report.add(Check("weaknesses", "weaknesses", Status.WARN, f"{len(found)}: {names}",
                              " ".join(w[0].upper() + w[1:] for w in found) + " The legacy listener is there for devices that cannot do "
                              "better; this is what it costs them.",
                              "Keep [legacy] networks to the devices' own network, each device bound to its "
                              "address with a short recipient list; give every device that can do TLS 1.2 "
                              "--tls modern.", data={"weaknesses": found}))
