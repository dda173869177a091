"""Scripted SMTP dialogs, run against the sans-I/O protocol machine.

Why: a dialog file reads like a transcript, so protocol rules (pipelining,
STARTTLS injection, smuggling) are reviewed as conversations rather than as
assertions.  ``parse_dialog`` is independent of the runner so that
server-level dialogs can reuse the format.

Format, one directive per line (blank lines and ``#`` comments ignored):

``features: key=value ...``  ServerFeatures overrides (header only)
``limits: key=value ...``    ProtocolLimits overrides (header only)
``sasl: scram_nonce=NONCE``  a fixed SCRAM server nonce, for a fixed transcript (header only)
``c: TEXT``                  client line, sent with CRLF appended
``raw: TEXT``                client bytes with Python escapes, no CRLF added
``s: TEXT``                  next server line; exact, or a prefix ending in ``...``
``s+: PREFIX``               one or more server lines starting with PREFIX
``app: accept [TEXT]``       answer the pending decision
``app: reject CODE ENH TEXT``
``app: challenge BYTES CODE ENH TEXT``  reject an AuthAttempt with a challenge
``app: scram-keys SALT_HEX ITERATIONS [REF:PASSWORD ...]``  answer AuthKeysNeeded
``app: tls``                 the TLS handshake after STARTTLS succeeded
``pending: Name k=v ...``    the pending decision event has this type/fields
``events: A, B?, ...``       events since the last check (MessageData runs
                             merged; a ``?`` suffix marks an optional event)
``message: BYTES``           content of the last finished message (escapes)
``eof``                      the client closes the connection
``closed``                   the server has closed the session

Consecutive client directives are delivered together, which is how
pipelining is exercised; the runner can also deliver them byte by byte.
"""

from __future__ import annotations

import codecs
from collections import deque
from dataclasses import dataclass
from typing import Literal

from functools import partial

from smtpgate.smtp.protocol import (
    NEED_DATA,
    PAUSED,
    Event,
    MessageComplete,
    MessageData,
    MessageRejected,
    ProtocolLimits,
    Reply,
    ServerConnection,
    ServerFeatures,
    State,
)
from smtpgate.smtp.sasl import DEFAULT_MECHANISMS, ScramCandidate, ScramKeys, ScramSha256Mechanism

DEFAULT_HOSTNAME = "mx.example.test"
CLIENT_KINDS = frozenset({"client", "raw"})
HEADER_KINDS = frozenset({"features", "limits", "sasl"})
_PREFIXES = {
    "c": "client",
    "raw": "raw",
    "s": "server",
    "s+": "server-run",
    "app": "app",
    "pending": "pending",
    "events": "events",
    "message": "message",
    "features": "features",
    "limits": "limits",
    "sasl": "sasl",
}
_BARE_DIRECTIVES = {"eof": "eof", "closed": "closed"}

Chunking = Literal["whole", "bytes"]


class DialogError(AssertionError):
    """A dialog did not go as scripted (or could not be parsed)."""


@dataclass(frozen=True)
class Step:
    kind: str
    text: str = ""
    data: bytes = b""
    line: int = 0


def unescape(text: str) -> bytes:
    """Python-style escapes (``\\r``, ``\\n``, ``\\x00``) to bytes."""
    return codecs.escape_decode(text.encode("utf-8"))[0]


def parse_dialog(text: str) -> list[Step]:
    """Parse a dialog transcript into steps (see the module docstring)."""
    steps = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        steps.append(_parse_line(line, number))
    return steps


def _parse_line(line: str, number: int) -> Step:
    if line.strip() in _BARE_DIRECTIVES:
        return Step(_BARE_DIRECTIVES[line.strip()], line=number)
    prefix, colon, rest = line.partition(":")
    kind = _PREFIXES.get(prefix)
    if not colon or kind is None:
        raise DialogError(f"line {number}: unknown directive {line!r}")
    value = rest[1:] if rest.startswith(" ") else rest
    if kind == "client":
        return Step(kind, value, value.encode("utf-8") + b"\r\n", number)
    if kind in ("raw", "message"):
        return Step(kind, value, unescape(value), number)
    return Step(kind, value, line=number)


def settings(steps: list[Step], kind: str) -> dict[str, str]:
    """``key=value`` pairs of every header step of ``kind``."""
    values: dict[str, str] = {}
    for step in steps:
        if step.kind == kind:
            for word in step.text.split():
                key, _, value = word.partition("=")
                values[key] = value
    return values


def _convert(value: str, default: object) -> object:
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, tuple):
        return tuple(item for item in value.split(",") if item)
    return value


def _apply(instance: object, overrides: dict[str, str]) -> None:
    for key, value in overrides.items():
        if not hasattr(instance, key):
            raise DialogError(f"unknown setting {key!r}")
        setattr(instance, key, _convert(value, getattr(instance, key)))


def build_connection(steps: list[Step]) -> ServerConnection:
    features = ServerFeatures(hostname=DEFAULT_HOSTNAME)
    limits = ProtocolLimits()
    _apply(features, settings(steps, "features"))
    _apply(limits, settings(steps, "limits"))
    nonce = settings(steps, "sasl").get("scram_nonce")
    mechanisms = dict(DEFAULT_MECHANISMS)
    if nonce:
        mechanisms["SCRAM-SHA-256"] = partial(ScramSha256Mechanism, server_nonce=nonce)
    return ServerConnection(features, limits, mechanisms=mechanisms)


def scram_keys(argument: str) -> ScramKeys:
    """``SALT_HEX ITERATIONS REF:PASSWORD ...`` -> the keys scramp derives from them."""
    from scramp import ScramMechanism

    salt_hex, iterations, *pairs = argument.split()
    salt, count = bytes.fromhex(salt_hex), int(iterations)
    candidates = []
    for pair in pairs:
        ref, _, password = pair.partition(":")
        _, stored, server, _ = ScramMechanism("SCRAM-SHA-256").make_auth_info(password, count, salt)
        candidates.append(ScramCandidate(ref, stored, server))
    return ScramKeys(salt, count, tuple(candidates))


def parse_reply(text: str) -> Reply:
    """``535 5.7.8 Some text`` -> Reply."""
    code, enhanced, human = [*text.split(" ", 2), "", ""][:3]
    return Reply(int(code), enhanced, human)


class ProtocolDialog:
    """Runs parsed steps against a ServerConnection, asserting as it goes."""

    def __init__(self, steps: list[Step], chunking: Chunking = "whole") -> None:
        self.steps = steps
        self.chunking = chunking
        self.conn = build_connection(steps)
        self.output: deque[str] = deque()
        self.events: list[Event] = []
        self.current_message = bytearray()
        self.last_message: bytes | None = None
        self.pending_input = bytearray()

    def run(self) -> None:
        self.conn.start()
        self.pump()
        for step in self.steps:
            try:
                self.run_step(step)
            except DialogError as error:
                raise DialogError(f"line {step.line} ({step.kind}: {step.text}): {error}") from None
        self.flush()
        if self.output:
            raise DialogError(f"unexpected server output at end: {list(self.output)}")

    # -------------------------------------------------------------- engine

    def flush(self) -> None:
        data, self.pending_input = bytes(self.pending_input), bytearray()
        if self.chunking == "bytes":
            for index in range(len(data)):
                self.conn.receive_data(data[index : index + 1])
                self.pump()
        elif data:
            self.conn.receive_data(data)
        self.pump()

    def pump(self) -> None:
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA or event is PAUSED:
                break
            self.record(event)
        text = self.conn.data_to_send().decode("utf-8")
        for line in text.split("\r\n")[:-1]:
            self.output.append(line)

    def record(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, MessageData):
            self.current_message += event.data
        elif isinstance(event, MessageComplete):
            self.last_message = bytes(self.current_message)
            self.current_message.clear()
        elif isinstance(event, MessageRejected):
            self.last_message = None
            self.current_message.clear()

    # --------------------------------------------------------------- steps

    def run_step(self, step: Step) -> None:
        if step.kind in CLIENT_KINDS:
            self.pending_input += step.data
            return
        if step.kind in HEADER_KINDS:
            return
        self.flush()
        handler = getattr(self, "step_" + step.kind.replace("-", "_"))
        handler(step)

    def next_output(self) -> str:
        if not self.output:
            raise DialogError("expected a server line, got none")
        return self.output.popleft()

    def step_server(self, step: Step) -> None:
        line = self.next_output()
        expected = step.text
        if expected.endswith("..."):
            if not line.startswith(expected[:-3]):
                raise DialogError(f"server said {line!r}, expected prefix {expected[:-3]!r}")
        elif line.rstrip(" ") != expected.rstrip(" "):
            raise DialogError(f"server said {line!r}, expected {expected!r}")

    def step_server_run(self, step: Step) -> None:
        if not self.output or not self.output[0].startswith(step.text):
            raise DialogError(f"expected lines starting {step.text!r}, got {list(self.output)[:1]}")
        while self.output and self.output[0].startswith(step.text):
            self.output.popleft()

    def step_app(self, step: Step) -> None:
        action, _, argument = step.text.partition(" ")
        if action == "tls":
            if self.conn.state is not State.TLS_PENDING:
                raise DialogError(f"no STARTTLS pending (state {self.conn.state.value})")
            self.conn.tls_established()
        elif self.conn.pending_decision is None:
            raise DialogError("no decision pending")
        elif action == "accept":
            self.conn.accept(argument or None)
        elif action == "reject":
            self.conn.reject(parse_reply(argument))
        elif action == "challenge":
            challenge, _, reply = argument.partition(" ")
            self.conn.reject(parse_reply(reply), challenge=unescape(challenge))
        elif action == "scram-keys":
            self.conn.supply_keys(scram_keys(argument))
        else:
            raise DialogError(f"unknown app action {action!r}")
        self.pump()

    def step_pending(self, step: Step) -> None:
        event = self.conn.pending_decision
        name, *fields = step.text.split()
        if event is None or type(event).__name__ != name:
            raise DialogError(f"pending decision is {event!r}, expected {name}")
        for item in fields:
            key, _, expected = item.partition("=")
            if not hasattr(event, key):
                raise DialogError(f"{name} has no field {key!r}")
            value = getattr(event, key)
            if str(value) != expected:
                raise DialogError(f"{name}.{key} is {value!r}, expected {expected!r}")

    def step_events(self, step: Step) -> None:
        expected = [name.strip() for name in step.text.split(",") if name.strip()]
        actual = merged_event_names(self.events)
        self.events.clear()
        if not names_match(actual, expected):
            raise DialogError(f"events {actual}, expected {expected}")

    def step_message(self, step: Step) -> None:
        if self.last_message != step.data:
            raise DialogError(f"message was {self.last_message!r}, expected {step.data!r}")

    def step_eof(self, step: Step) -> None:
        self.conn.receive_data(b"")
        self.pump()

    def step_closed(self, step: Step) -> None:
        if not self.conn.closed:
            raise DialogError(f"connection still open (state {self.conn.state.value})")


def merged_event_names(events: list[Event]) -> list[str]:
    """Event type names with consecutive MessageData collapsed into one."""
    names: list[str] = []
    for event in events:
        name = type(event).__name__
        if name == "MessageData" and names and names[-1] == name:
            continue
        names.append(name)
    return names


def names_match(actual: list[str], expected: list[str]) -> bool:
    """Compare event names; expected names ending in ``?`` may be missing."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.endswith("?"):
        name = head[:-1]
        if actual and actual[0] == name and names_match(actual[1:], rest):
            return True
        return names_match(actual, rest)
    return bool(actual) and actual[0] == head and names_match(actual[1:], rest)


def run_dialog(text: str, chunking: Chunking = "whole") -> ProtocolDialog:
    dialog = ProtocolDialog(parse_dialog(text), chunking)
    dialog.run()
    return dialog
