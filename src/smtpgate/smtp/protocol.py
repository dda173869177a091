"""Sans-I/O SMTP server protocol: bytes in, events out; replies in, bytes out.

Why not aiosmtpd: its authenticator is synchronous, so an argon2 password
check blocks every connection on the loop; it caps AUTH lines at 512/1001
bytes, so a 1.4 KB OAuth token fails; on an implicit-TLS listener it does not
advertise AUTH; its PROXY protocol support fails with implicit TLS; it holds
whole messages in memory; and a bare LF passes inside DATA (SMTP smuggling).

This module has no sockets, clock, asyncio or storage.  An adapter feeds
received bytes to :class:`ServerConnection`, reads events with
``next_event()``, answers decision events with ``accept()``/``reject()`` and
writes ``data_to_send()`` to the peer.  Bad input never raises: it becomes
replies.  Only misuse of the API by the adapter raises
:class:`ProtocolUsageError`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Final, Literal

from .replies import (  # noqa: F401 - the connection's parts, importable from here as before
    _ENHANCED_RE as _ENHANCED_RE,
    Reply as Reply,
    AUTH_CREDENTIALS_INVALID as AUTH_CREDENTIALS_INVALID,
    AUTH_TEMPORARY_FAILURE as AUTH_TEMPORARY_FAILURE,
    _AUTH_OK as _AUTH_OK,
    _SENDER_OK as _SENDER_OK,
    _RECIPIENT_OK as _RECIPIENT_OK,
    _START_DATA as _START_DATA,
    _QUEUED as _QUEUED,
    _RESET_OK as _RESET_OK,
    _OK as _OK,
    _BYE as _BYE,
    _READY_FOR_TLS as _READY_FOR_TLS,
    _VRFY as _VRFY,
    _HELP as _HELP,
    _SHUTTING_DOWN as _SHUTTING_DOWN,
    _TOO_MANY_ERRORS as _TOO_MANY_ERRORS,
    _TOO_MANY_RECIPIENTS as _TOO_MANY_RECIPIENTS,
    _TLS_NOT_AVAILABLE as _TLS_NOT_AVAILABLE,
    _LINE_TOO_LONG as _LINE_TOO_LONG,
    _BARE_CR_LF as _BARE_CR_LF,
    _NOT_UTF8 as _NOT_UTF8,
    _UNKNOWN_COMMAND as _UNKNOWN_COMMAND,
    _AUTH_CANCELLED as _AUTH_CANCELLED,
    _EMPTY_RESPONSE_EXPECTED as _EMPTY_RESPONSE_EXPECTED,
    _CANNOT_DECODE as _CANNOT_DECODE,
    _SYNTAX_EHLO as _SYNTAX_EHLO,
    _SYNTAX_HELO as _SYNTAX_HELO,
    _SYNTAX_STARTTLS as _SYNTAX_STARTTLS,
    _SYNTAX_AUTH as _SYNTAX_AUTH,
    _SYNTAX_MAIL as _SYNTAX_MAIL,
    _SYNTAX_RCPT as _SYNTAX_RCPT,
    _SYNTAX_DATA as _SYNTAX_DATA,
    _SYNTAX_BDAT as _SYNTAX_BDAT,
    _SYNTAX_RSET as _SYNTAX_RSET,
    _SYNTAX_SIZE as _SYNTAX_SIZE,
    _SYNTAX_BODY as _SYNTAX_BODY,
    _SYNTAX_SMTPUTF8 as _SYNTAX_SMTPUTF8,
    _BAD_SENDER as _BAD_SENDER,
    _BAD_RECIPIENT as _BAD_RECIPIENT,
    _NOT_IMPLEMENTED_EXPN as _NOT_IMPLEMENTED_EXPN,
    _SEND_EHLO_FIRST as _SEND_EHLO_FIRST,
    _SEND_HELO_FIRST as _SEND_HELO_FIRST,
    _TLS_ALREADY_ACTIVE as _TLS_ALREADY_ACTIVE,
    _ALREADY_AUTHENTICATED as _ALREADY_AUTHENTICATED,
    _AUTH_IN_TRANSACTION as _AUTH_IN_TRANSACTION,
    _NESTED_MAIL as _NESTED_MAIL,
    _NEED_MAIL_FOR_RCPT as _NEED_MAIL_FOR_RCPT,
    _NEED_MAIL as _NEED_MAIL,
    _NEED_RCPT as _NEED_RCPT,
    _RCPT_AFTER_BDAT as _RCPT_AFTER_BDAT,
    _DATA_AFTER_BDAT as _DATA_AFTER_BDAT,
    _UNKNOWN_MECHANISM as _UNKNOWN_MECHANISM,
    _STARTTLS_FIRST as _STARTTLS_FIRST,
    _AUTH_REQUIRED as _AUTH_REQUIRED,
    _MESSAGE_TOO_BIG as _MESSAGE_TOO_BIG,
    _SIZE_EXCEEDED as _SIZE_EXCEEDED,
    _NON_ASCII_ADDRESS as _NON_ASCII_ADDRESS,
    _NO_RECIPIENTS as _NO_RECIPIENTS,
    _UNSUPPORTED_PARAMETER as _UNSUPPORTED_PARAMETER,
    _DATA_LINE_TOO_LONG as _DATA_LINE_TOO_LONG,
    _DATA_BARE_CR_LF as _DATA_BARE_CR_LF,
    _DATA_NUL as _DATA_NUL,
)
from .events import (  # noqa: F401 - the connection's parts, importable from here as before
    Event as Event,
    DecisionEvent as DecisionEvent,
    Hello as Hello,
    StartTLS as StartTLS,
    AuthAttempt as AuthAttempt,
    AuthKeysNeeded as AuthKeysNeeded,
    AuthAborted as AuthAborted,
    MailFrom as MailFrom,
    RcptTo as RcptTo,
    DataStart as DataStart,
    MessageData as MessageData,
    MessageComplete as MessageComplete,
    MessageRejected as MessageRejected,
    Reset as Reset,
    Quit as Quit,
    ConnectionLost as ConnectionLost,
    Sentinel as Sentinel,
    NEED_DATA as NEED_DATA,
    PAUSED as PAUSED,
    NeedData as NeedData,
    Paused as Paused,
    ProtocolUsageError as ProtocolUsageError,
    State as State,
    TRANSITIONS as TRANSITIONS,
)
from .syntax import (  # noqa: F401 - the connection's parts, importable from here as before
    _LOCAL_DOT_STRING as _LOCAL_DOT_STRING,
    _QUOTED_STRING as _QUOTED_STRING,
    _LABEL as _LABEL,
    _DOMAIN as _DOMAIN,
    _ADDRESS_LITERAL as _ADDRESS_LITERAL,
    _MAILBOX_RE as _MAILBOX_RE,
    _SOURCE_ROUTE_RE as _SOURCE_ROUTE_RE,
    _PARAM_RE as _PARAM_RE,
    _BDAT_RE as _BDAT_RE,
    _BODY_VALUES as _BODY_VALUES,
    Params as Params,
    _closing_bracket as _closing_bracket,
    _split_path_argument as _split_path_argument,
    _mailbox_from_path as _mailbox_from_path,
    _parse_params as _parse_params,
    _check_mail_params as _check_mail_params,
    _check_mail_param as _check_mail_param,
    _recipient_address as _recipient_address,
    _check_recipient as _check_recipient,
    _initial_response as _initial_response,
    _malformed_reply as _malformed_reply,
)
from .body import (  # noqa: F401 - the connection's parts, importable from here as before
    _BodyInspector as _BodyInspector,
    _VIOLATION_RANK as _VIOLATION_RANK,
    _scan_lines as _scan_lines,
    _has_cr_or_lf as _has_cr_or_lf,
)
from .sasl import (
    DEFAULT_MECHANISMS,
    Challenge,
    MechanismFactory,
    NeedKeys,
    SaslCredentials,
    SaslMechanism,
    SaslStep,
    ScramKeys,
    decode_response,
    encode_challenge,
)

__all__ = [
    "AUTH_CREDENTIALS_INVALID",
    "AUTH_TEMPORARY_FAILURE",
    "NEED_DATA",
    "PAUSED",
    "AuthAborted",
    "AuthAttempt",
    "AuthKeysNeeded",
    "ConnectionLost",
    "DataStart",
    "DecisionEvent",
    "Event",
    "Hello",
    "MailFrom",
    "MessageComplete",
    "MessageData",
    "MessageRejected",
    "NeedData",
    "Paused",
    "ProtocolLimits",
    "ProtocolUsageError",
    "Quit",
    "RcptTo",
    "Reply",
    "Reset",
    "Sentinel",
    "ServerConnection",
    "ServerFeatures",
    "StartTLS",
    "State",
]



# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


MAX_AUTH_RESPONSE: Final = 32 * 1024


def _auth_line_for(response: int) -> int:
    """The longest AUTH line carrying ``response`` octets: "AUTH MECHANISM " + base64 + CRLF."""
    return len("AUTH SCRAM-SHA-256 ") + 4 * -(-response // 3) + 2


@dataclass
class ProtocolLimits:
    """Octet and count limits; line limits include the CRLF."""

    max_command_line: int = 512
    # SASL responses up to 32 KiB (decoded) reach the application whole, which refuses
    # bearer tokens over 16 KiB by name (535 + audit): the limit is of the response,
    # so the line may hold its base64 form (4/3 as long), the verb and the CRLF.
    max_auth_line: int = _auth_line_for(MAX_AUTH_RESPONSE)
    max_text_line: int = 1000
    max_message_size: int = 26214400
    max_recipients: int = 100
    max_errors: int = 20


@dataclass
class ServerFeatures:
    """What this listener offers; ``tls_active`` is True on implicit TLS."""

    hostname: str
    tls_active: bool = False
    starttls_available: bool = True
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    require_tls_for_auth: bool = True
    require_auth_for_mail: bool = True
    greeting_text: str = "ESMTP smtpgate"


# --------------------------------------------------------------------------
# Session bookkeeping
# --------------------------------------------------------------------------


@dataclass
class _Transaction:
    sender: str
    smtputf8: bool
    recipients: int = 0
    body_kind: Literal["DATA", "BDAT"] | None = None


@dataclass
class _Chunk:
    """A BDAT chunk being consumed; with a ``reply`` it is discarded, not streamed."""

    size: int
    remaining: int
    last: bool
    reply: Reply | None = None
    reply_is_protocol_error: bool = False


@dataclass
class _PendingDecision:
    event: DecisionEvent
    on_accept: Callable[[str | None], None]
    on_reject: Callable[[Reply, bytes | None], None]


@dataclass
class _SaslExchange:
    name: str
    mechanism: SaslMechanism
    failure_reply: Reply | None = None
    success_text: str | None = None
    login: str = ""


# --------------------------------------------------------------------------
# The state machine
# --------------------------------------------------------------------------


class ServerConnection:
    """One SMTP server session; see the module docstring for the driving loop."""

    def __init__(
        self,
        features: ServerFeatures,
        limits: ProtocolLimits | None = None,
        *,
        mechanisms: Mapping[str, MechanismFactory] | None = None,
    ) -> None:
        self._features = features
        self._limits = limits if limits is not None else ProtocolLimits()
        self._mechanisms = mechanisms if mechanisms is not None else DEFAULT_MECHANISMS
        self._state = State.NEW
        self._buffer = bytearray()
        self._outgoing = bytearray()
        self._events: deque[Event] = deque()
        self._pending: _PendingDecision | None = None
        self._eof = False
        self._skipping_line = False
        self._tls_active = features.tls_active
        self._helo_name: str | None = None
        self._extended = False
        self._authenticated = False
        self._transaction: _Transaction | None = None
        self._sasl: _SaslExchange | None = None
        self._body: _BodyInspector | None = None
        self._data_mid_line = False
        self._chunk: _Chunk | None = None
        self._bdat_partial = b""
        self._bdat_skipping = False
        self._errors = 0
        self._shutting_down = False
        self._discarded_after_starttls = 0

    # ---------------------------------------------------------------- API

    def start(self) -> None:
        """Queue the 220 greeting."""
        self._require_state(State.NEW, "start()")
        greeting = f"{self._features.hostname} {self._features.greeting_text}"
        self._send(Reply(220, "", greeting))
        self._move("greet")

    def refuse(self, reply: Reply) -> None:
        """Instead of ``start()``: queue ``reply`` (e.g. 421 or 554) and close."""
        self._send(reply)
        self._close()

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means the peer closed."""
        if not data:
            self._eof = True
        elif self._state is State.TLS_PENDING:
            self._discarded_after_starttls += len(data)
        elif self._state is not State.CLOSED and not self._eof:
            self._buffer += data

    def next_event(self) -> Event | NeedData | Paused:
        """The next event, ``PAUSED`` during a decision or ``NEED_DATA``.

        After the connection is closed this keeps returning ``NEED_DATA``:
        the adapter checks ``closed`` and stops.
        """
        while not self._events:
            if self._pending is not None:
                return PAUSED
            if self._advance() or self._events:
                continue
            if self._eof and self._state is not State.CLOSED:
                self._events.append(ConnectionLost())
                self._close()
                continue
            return NEED_DATA
        return self._events.popleft()

    def accept(self, text: str | None = None) -> None:
        """Answer the pending decision with its success reply (``text`` overrides)."""
        if isinstance(self.pending_decision, AuthKeysNeeded):
            raise ProtocolUsageError("answer AuthKeysNeeded with supply_keys() or reject()")
        pending = self._take_pending()
        pending.on_accept(text)

    def supply_keys(self, keys: ScramKeys) -> None:
        """Answer ``AuthKeysNeeded`` with the stored keys; the exchange goes on."""
        if not isinstance(self.pending_decision, AuthKeysNeeded):
            raise ProtocolUsageError("supply_keys() answers only AuthKeysNeeded")
        self._take_pending()
        assert self._sasl is not None
        self._apply_sasl_step(self._sasl.mechanism.supply(keys))

    def reject(self, reply: Reply, challenge: bytes | None = None) -> None:
        """Answer the pending decision with ``reply`` (a 4xx or 5xx).

        ``challenge`` (AuthAttempt only) first sends ``334 base64(challenge)``
        and sends ``reply`` after the client's next line (RFC 7628).  Without
        one, a mechanism with its own error challenge (XOAUTH2, OAUTHBEARER)
        gets that.
        """
        if reply.code < 400:
            raise ProtocolUsageError(f"reject() needs a 4xx/5xx reply, got {reply.code}")
        if self._pending is None:
            raise ProtocolUsageError("reject() called without a pending decision")
        if challenge is not None and not isinstance(self._pending.event, (AuthAttempt, AuthKeysNeeded)):
            raise ProtocolUsageError("a challenge can only answer an AuthAttempt")
        pending = self._take_pending()
        pending.on_reject(reply, challenge)

    def tls_established(self) -> None:
        """The STARTTLS handshake succeeded: reset the session (RFC 3207)."""
        self._require_state(State.TLS_PENDING, "tls_established()")
        self._tls_active = True
        self._helo_name = None
        self._extended = False
        self._authenticated = False
        self._transaction = None
        self._move("tls-up")

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def close_after_send(self) -> bool:
        """True when the adapter must flush ``data_to_send()`` and close."""
        return self._state is State.CLOSED

    def shutdown(self) -> None:
        """Server going down: 421 now if idle, else at the next command."""
        if self._state is State.CLOSED:
            return
        self._shutting_down = True
        idle = (
            self._state in (State.NEW, State.COMMAND)
            and self._pending is None
            and self._transaction is None
        )
        if idle:
            self._send(_SHUTTING_DOWN)
            self._close()

    # -------------------------------------------------------- properties

    @property
    def closed(self) -> bool:
        return self._state is State.CLOSED

    @property
    def state(self) -> State:
        return self._state

    @property
    def authenticated(self) -> bool:
        return self._authenticated

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @property
    def helo_name(self) -> str | None:
        return self._helo_name

    @property
    def in_transaction(self) -> bool:
        return self._transaction is not None

    @property
    def pending_decision(self) -> DecisionEvent | None:
        """The decision event awaiting ``accept()``/``reject()``, if any."""
        return self._pending.event if self._pending is not None else None

    @property
    def error_count(self) -> int:
        """Protocol-generated 5xx replies so far."""
        return self._errors

    @property
    def buffered_bytes(self) -> int:
        """Received octets not processed yet (bounded by the line limits)."""
        return len(self._buffer)

    @property
    def discarded_after_starttls(self) -> int:
        """Octets thrown away between STARTTLS and the handshake (injection)."""
        return self._discarded_after_starttls

    # ------------------------------------------------------ plumbing

    def _require_state(self, state: State, call: str) -> None:
        if self._state is not state:
            raise ProtocolUsageError(f"{call} is not valid in state {self._state.value}")

    def _take_pending(self) -> _PendingDecision:
        pending = self._pending
        if pending is None:
            raise ProtocolUsageError("no decision is pending")
        self._pending = None
        return pending

    def _decide(
        self,
        event: DecisionEvent,
        on_accept: Callable[[str | None], None],
        on_reject: Callable[[Reply, bytes | None], None],
    ) -> None:
        self._events.append(event)
        self._pending = _PendingDecision(event, on_accept, on_reject)

    def _send(self, reply: Reply) -> None:
        if self._state is not State.CLOSED:
            self._outgoing += reply.to_bytes()

    def _fail(self, reply: Reply) -> None:
        """Send a protocol-generated 5xx error; too many close the session."""
        self._send(reply)
        self._errors += 1
        if self._errors >= self._limits.max_errors:
            self._send(_TOO_MANY_ERRORS)
            self._close()

    def _move(self, trigger: str) -> None:
        """The one way the state changes: by a trigger the transition table allows in this state."""
        try:
            self._state = TRANSITIONS[self._state][trigger]
        except KeyError:
            raise ProtocolUsageError(f"no transition {trigger!r} from {self._state.value}") from None

    def _close(self) -> None:
        self._state = State.CLOSED  # from any state
        self._pending = None
        self._buffer.clear()

    def _take(self, count: int) -> bytes:
        """Remove and return the first ``count`` buffered octets."""
        buffer = self._buffer
        if count >= len(buffer):
            data = bytes(buffer)
            buffer.clear()
            return data
        with memoryview(buffer) as view:
            data = bytes(view[:count])
        del buffer[:count]
        return data

    def _advance(self) -> bool:
        """Process buffered input; False when nothing more can be done now."""
        step = self._STEPS.get(self._state)
        return step(self) if step is not None else False

    # ------------------------------------------------------ line framing

    def _read_line(self, limit: int) -> bytes | Reply | None:
        """One CRLF line without its CRLF, a framing error, or None (need data).

        A line over ``limit`` octets is never buffered: the rest is skipped
        up to the next LF and reported as too long.
        """
        buffer = self._buffer
        if self._skipping_line:
            end = buffer.find(b"\n")
            if end < 0:
                buffer.clear()
                return None
            del buffer[: end + 1]
            self._skipping_line = False
            return _LINE_TOO_LONG
        end = buffer.find(b"\n", 0, limit)
        if end < 0:
            if len(buffer) < limit:
                return None
            self._skipping_line = True
            return self._read_line(limit)
        line = self._take(end + 1)
        if not line.endswith(b"\r\n") or line.count(b"\r") != 1:
            return _BARE_CR_LF
        return line[:-2]

    def _command_line_limit(self) -> int:
        if self._buffer[:5].upper() == b"AUTH ":
            return self._limits.max_auth_line
        return self._limits.max_command_line

    # ------------------------------------------------------ command phase

    def _step_command(self) -> bool:
        line = self._read_line(self._command_line_limit())
        if line is None:
            return False
        if isinstance(line, Reply):
            self._fail(line)
        else:
            self._handle_command(line)
        return True

    def _handle_command(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._fail(_NOT_UTF8)
            return
        verb, _, argument = text.partition(" ")
        verb = verb.upper()
        if self._shutting_down and self._transaction is None and verb != "QUIT":
            self._send(_SHUTTING_DOWN)
            self._close()
            return
        handler = self._COMMANDS.get(verb)
        if handler is None:
            self._fail(_UNKNOWN_COMMAND)
        else:
            handler(self, argument)

    def _abort_transaction(self) -> None:
        """Drop the transaction on RSET/EHLO/HELO/STARTTLS, telling the app."""
        if self._transaction is not None:
            self._transaction = None
            self._events.append(Reset())

    def _cmd_ehlo(self, argument: str) -> None:
        self._greet(argument, extended=True)

    def _cmd_helo(self, argument: str) -> None:
        self._greet(argument, extended=False)

    def _greet(self, argument: str, *, extended: bool) -> None:
        words = argument.split()
        if not words or not words[0].isprintable():
            self._fail(_SYNTAX_EHLO if extended else _SYNTAX_HELO)
            return
        self._abort_transaction()
        self._helo_name = words[0]
        self._extended = extended
        if extended:
            self._send(Reply(250, "", self._ehlo_lines()))
        else:
            self._send(Reply(250, "", self._features.hostname))
        self._events.append(Hello(words[0], extended))

    def _ehlo_lines(self) -> list[str]:
        lines = [
            self._features.hostname,
            "PIPELINING",
            f"SIZE {self._limits.max_message_size}",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "CHUNKING",
        ]
        if self._features.starttls_available and not self._tls_active:
            lines.append("STARTTLS")
        mechanisms = self._offered_mechanisms()
        if mechanisms and self._auth_allowed_on_channel():
            lines.append("AUTH " + " ".join(mechanisms))
        return lines

    def _offered_mechanisms(self) -> list[str]:
        return [
            name.upper()
            for name in self._features.auth_mechanisms
            if name.upper() in self._mechanisms
        ]

    def _auth_allowed_on_channel(self) -> bool:
        return self._tls_active or not self._features.require_tls_for_auth

    def _cmd_starttls(self, argument: str) -> None:
        if self._tls_active:
            self._fail(_TLS_ALREADY_ACTIVE)
        elif not self._features.starttls_available:
            self._send(_TLS_NOT_AVAILABLE)
        elif argument.strip():
            self._fail(_SYNTAX_STARTTLS)
        else:
            self._begin_tls()

    def _begin_tls(self) -> None:
        """Queue 220 and drop pipelined plaintext (CVE-2011-0411 class)."""
        self._abort_transaction()
        self._send(_READY_FOR_TLS)
        self._discarded_after_starttls += len(self._buffer)
        self._buffer.clear()
        self._skipping_line = False
        self._move("starttls")
        self._events.append(StartTLS())

    def _cmd_rset(self, argument: str) -> None:
        if argument.strip():
            self._fail(_SYNTAX_RSET)
            return
        self._transaction = None
        self._events.append(Reset())
        self._send(_RESET_OK)

    def _cmd_noop(self, argument: str) -> None:
        self._send(_OK)

    def _cmd_quit(self, argument: str) -> None:
        self._send(_BYE)
        self._events.append(Quit())
        self._close()

    def _cmd_vrfy(self, argument: str) -> None:
        self._send(_VRFY)

    def _cmd_expn(self, argument: str) -> None:
        self._fail(_NOT_IMPLEMENTED_EXPN)

    def _cmd_help(self, argument: str) -> None:
        self._send(_HELP)

    # ------------------------------------------------------ AUTH (RFC 4954)

    def _cmd_auth(self, argument: str) -> None:
        problem = self._auth_precondition()
        if problem is not None:
            self._fail(problem)
            return
        words = argument.rstrip(" ").split(" ")
        if len(words) > 2 or not words[0]:
            self._fail(_SYNTAX_AUTH)
            return
        name = words[0].upper()
        if name not in self._offered_mechanisms():
            self._fail(_UNKNOWN_MECHANISM)
            return
        initial = _initial_response(words[1]) if len(words) == 2 else None
        if len(words) == 2 and initial is None:
            self._events.append(AuthAborted(name, "malformed"))
            self._fail(_CANNOT_DECODE)
            return
        exchange = _SaslExchange(name, self._mechanisms[name]())
        self._sasl = exchange
        self._apply_sasl_step(exchange.mechanism.start(initial))

    def _auth_precondition(self) -> Reply | None:
        if not self._extended:
            return _SEND_EHLO_FIRST
        if not self._auth_allowed_on_channel():
            return _STARTTLS_FIRST
        if self._authenticated:
            return _ALREADY_AUTHENTICATED
        if self._transaction is not None:
            return _AUTH_IN_TRANSACTION
        return None

    def _apply_sasl_step(self, step: SaslStep) -> None:
        if isinstance(step, Challenge):
            self._send(Reply(334, "", encode_challenge(step.data)))
            self._move("challenge")
        elif isinstance(step, SaslCredentials):
            self._move("sasl-done")
            self._request_auth_decision(step)
        elif isinstance(step, NeedKeys):
            self._move("sasl-done")
            self._request_keys(step)
        else:
            self._abort_sasl("malformed")
            self._fail(_malformed_reply(step))

    def _request_auth_decision(self, credentials: SaslCredentials) -> None:
        assert self._sasl is not None
        event = AuthAttempt(
            mechanism=self._sasl.name,
            authzid=credentials.authzid,
            login=credentials.login,
            secret=credentials.secret,
            proven=credentials.proven,
        )
        self._decide(event, self._auth_accepted, self._auth_rejected)

    def _request_keys(self, need: NeedKeys) -> None:
        assert self._sasl is not None
        self._sasl.login = need.login
        event = AuthKeysNeeded(mechanism=self._sasl.name, authzid=need.authzid, login=need.login)
        self._decide(event, self._auth_accepted, self._auth_rejected)  # accept() is refused

    def _auth_accepted(self, text: str | None) -> None:
        data = self._sasl.mechanism.success_data() if self._sasl is not None else None
        if data is not None:
            # RFC 4954: additional data with success goes in a 334; 235 follows
            # the client's empty response.
            assert self._sasl is not None
            self._sasl.success_text = text
            self._send(Reply(334, "", encode_challenge(data)))
            self._move("success-data")
            return
        self._end_sasl()
        self._authenticated = True
        self._send(_AUTH_OK.with_text(text))

    def _auth_rejected(self, reply: Reply, challenge: bytes | None) -> None:
        if challenge is None and self._sasl is not None:
            challenge = self._sasl.mechanism.failure_challenge()
        if challenge is None or self._sasl is None:
            self._end_sasl()
            self._send(reply)
            return
        self._sasl.failure_reply = reply
        self._send(Reply(334, "", encode_challenge(challenge)))
        self._move("failure-data")

    def _abort_sasl(self, reason: Literal["cancelled", "malformed"]) -> None:
        """End the exchange and tell the application, which audits and counts it."""
        if self._sasl is not None:
            self._events.append(AuthAborted(self._sasl.name, reason, self._sasl.login))
        self._end_sasl()

    def _end_sasl(self) -> None:
        self._sasl = None
        if self._state in (State.AUTH, State.AUTH_FAILURE, State.AUTH_SUCCESS):
            self._move("end-sasl")

    def _step_auth(self) -> bool:
        line = self._read_line(self._limits.max_auth_line)
        if line is None:
            return False
        assert self._sasl is not None
        if isinstance(line, Reply):
            self._abort_sasl("malformed")
            self._fail(line)
        elif line == b"*":
            self._abort_sasl("cancelled")
            self._fail(_AUTH_CANCELLED)
        else:
            self._continue_sasl(self._sasl, line)
        return True

    def _continue_sasl(self, exchange: _SaslExchange, line: bytes) -> None:
        response = decode_response(line)
        if response is None:
            self._abort_sasl("malformed")
            self._fail(_CANNOT_DECODE)
            return
        self._apply_sasl_step(exchange.mechanism.step(response))

    def _step_auth_failure(self) -> bool:
        """After a failure challenge any client line ends the exchange."""
        line = self._read_line(self._limits.max_auth_line)
        if line is None:
            return False
        reply = self._sasl.failure_reply if self._sasl is not None else None
        self._end_sasl()
        self._send(reply or AUTH_CREDENTIALS_INVALID)
        return True

    def _step_auth_success(self) -> bool:
        """After the success data the client must send an empty line; ``*`` cancels."""
        line = self._read_line(self._limits.max_auth_line)
        if line is None:
            return False
        text = self._sasl.success_text if self._sasl is not None else None
        if isinstance(line, Reply):
            self._abort_sasl("malformed")
            self._fail(line)
        elif line == b"*":
            self._abort_sasl("cancelled")
            self._fail(_AUTH_CANCELLED)
        elif line:
            self._abort_sasl("malformed")
            self._fail(_EMPTY_RESPONSE_EXPECTED)
        else:
            self._end_sasl()
            self._authenticated = True
            self._send(_AUTH_OK.with_text(text))
        return True

    # ------------------------------------------------------ MAIL / RCPT

    def _cmd_mail(self, argument: str) -> None:
        problem = self._mail_precondition()
        if problem is not None:
            self._fail(problem)
            return
        parsed = self._parse_path_command(argument, "FROM", _SYNTAX_MAIL)
        if isinstance(parsed, Reply):
            self._fail(parsed)
            return
        path, params = parsed
        address = "" if path == "" else _mailbox_from_path(path)
        if address is None:
            self._fail(_BAD_SENDER)
            return
        problem = _check_mail_params(params, self._limits.max_message_size)
        if problem is None and not address.isascii() and "SMTPUTF8" not in params:
            problem = _NON_ASCII_ADDRESS
        if problem is not None:
            self._fail(problem)
            return
        self._request_mail_decision(address, params)

    def _mail_precondition(self) -> Reply | None:
        if self._helo_name is None:
            return _SEND_HELO_FIRST
        features = self._features
        if features.require_auth_for_mail:
            if features.require_tls_for_auth and not self._tls_active:
                return _STARTTLS_FIRST
            if not self._authenticated:
                return _AUTH_REQUIRED
        if self._transaction is not None:
            return _NESTED_MAIL
        return None

    @staticmethod
    def _parse_path_command(
        argument: str, keyword: str, syntax_error: Reply
    ) -> tuple[str, Params] | Reply:
        split = _split_path_argument(argument, keyword)
        if split is None:
            return syntax_error
        path, params_text = split
        params = _parse_params(params_text)
        if params is None:
            return syntax_error
        return path, params

    def _request_mail_decision(self, address: str, params: Params) -> None:
        smtputf8 = "SMTPUTF8" in params

        def accepted(text: str | None) -> None:
            self._transaction = _Transaction(sender=address, smtputf8=smtputf8)
            self._send(_SENDER_OK.with_text(text))

        self._decide(MailFrom(address, params), accepted, self._send_rejection)

    def _send_rejection(self, reply: Reply, challenge: bytes | None) -> None:
        self._send(reply)

    def _cmd_rcpt(self, argument: str) -> None:
        transaction = self._transaction
        if transaction is None:
            self._fail(_NEED_MAIL_FOR_RCPT)
            return
        if transaction.body_kind is not None:
            self._fail(_RCPT_AFTER_BDAT)
            return
        parsed = self._parse_path_command(argument, "TO", _SYNTAX_RCPT)
        if isinstance(parsed, Reply):
            self._fail(parsed)
            return
        path, params = parsed
        address = _recipient_address(path)
        problem = _check_recipient(address, params, transaction.smtputf8)
        if problem is not None or address is None:
            self._fail(problem or _BAD_RECIPIENT)
        elif transaction.recipients >= self._limits.max_recipients:
            self._send(_TOO_MANY_RECIPIENTS)
        else:
            self._request_rcpt_decision(address, params, transaction)

    def _request_rcpt_decision(
        self, address: str, params: Params, transaction: _Transaction
    ) -> None:
        def accepted(text: str | None) -> None:
            transaction.recipients += 1
            self._send(_RECIPIENT_OK.with_text(text))

        self._decide(RcptTo(address, params), accepted, self._send_rejection)

    # ------------------------------------------------------ DATA

    def _cmd_data(self, argument: str) -> None:
        transaction = self._transaction
        if transaction is None:
            self._fail(_NEED_MAIL)
        elif transaction.body_kind == "BDAT":
            self._fail(_DATA_AFTER_BDAT)
        elif transaction.recipients == 0:
            self._fail(_NO_RECIPIENTS)
        elif argument.strip():
            self._fail(_SYNTAX_DATA)
        else:
            self._decide(DataStart("DATA"), self._data_accepted, self._send_rejection)

    def _data_accepted(self, text: str | None) -> None:
        assert self._transaction is not None
        self._transaction.body_kind = "DATA"
        self._body = _BodyInspector(self._limits)
        self._data_mid_line = False
        self._move("data")
        self._send(_START_DATA.with_text(text))

    def _step_data(self) -> bool:
        """Stream complete lines; only CRLF.CRLF ends the data (RFC 5321 4.1.1.4)."""
        buffer = self._buffer
        if self._data_mid_line and not self._skip_to_next_line():
            return False
        if buffer.startswith(b".\r\n"):
            del buffer[:3]
            self._end_of_message()
            return True
        dot_line = buffer.find(b"\r\n.")  # no dot-stuffing and no end before this
        end = buffer.find(b"\r\n.\r\n", dot_line) if dot_line >= 0 else -1
        if end >= 0:
            self._deliver_data_lines(self._take(end + 2), stuffed=dot_line < end)
            del buffer[:3]
            self._end_of_message()
            return True
        last = buffer.rfind(b"\r\n")
        if last >= 0:
            self._deliver_data_lines(self._take(last + 2), stuffed=0 <= dot_line < last)
        if len(buffer) > self._limits.max_text_line:
            assert self._body is not None
            self._body.refuse_partial_line(bytes(buffer))
            self._data_mid_line = True
            return True
        return last >= 0

    def _skip_to_next_line(self) -> bool:
        """Drop the rest of an over-long line; True once at a line start."""
        buffer = self._buffer
        body = self._body
        assert body is not None
        end = buffer.find(b"\r\n")
        if end < 0:
            keep = 1 if buffer.endswith(b"\r") else 0
            body.inspect_skipped(self._take(len(buffer) - keep))
            return False
        body.inspect_skipped(self._take(end))
        del buffer[:2]
        self._data_mid_line = False
        return True

    def _deliver_data_lines(self, lines: bytes, *, stuffed: bool) -> None:
        """Undo dot-stuffing of complete lines and deliver them if acceptable.

        ``stuffed`` is False when no line after the first starts with a dot.
        """
        body = self._body
        assert body is not None
        if lines.startswith(b"."):
            lines = lines[1:]
        if stuffed:
            lines = lines.replace(b"\r\n.", b"\r\n")
        if body.accept(lines):
            self._events.append(MessageData(lines))

    def _end_of_message(self) -> None:
        body = self._body
        assert body is not None
        self._body = None
        self._move("data-end")
        if body.violation is not None:
            self._transaction = None
            self._events.append(MessageRejected(body.violation))
            self._fail(body.violation)
            return
        self._decide(MessageComplete(), self._message_accepted, self._message_rejected)

    def _message_accepted(self, text: str | None) -> None:
        self._transaction = None
        self._send(_QUEUED.with_text(text))

    def _message_rejected(self, reply: Reply, challenge: bytes | None) -> None:
        self._transaction = None
        self._send(reply)

    # ------------------------------------------------------ BDAT (RFC 3030)

    def _cmd_bdat(self, argument: str) -> None:
        match = _BDAT_RE.fullmatch(argument)
        if match is None:
            self._fail(_SYNTAX_BDAT)
            return
        size, last = int(match.group(1)), match.group(2) is not None
        transaction = self._transaction
        if transaction is None:
            self._discard_chunk(size, last, _NEED_MAIL, protocol_error=True)
        elif transaction.recipients == 0:
            self._discard_chunk(size, last, _NEED_RCPT, protocol_error=True)
        elif transaction.body_kind is None:
            self._request_bdat_decision(size, last)
        else:
            self._stream_chunk(size, last)

    def _request_bdat_decision(self, size: int, last: bool) -> None:
        """The first chunk of a transaction asks the application (DataStart)."""

        def accepted(text: str | None) -> None:
            assert self._transaction is not None
            self._transaction.body_kind = "BDAT"
            self._body = _BodyInspector(self._limits)
            self._bdat_partial = b""
            self._bdat_skipping = False
            self._stream_chunk(size, last)

        def rejected(reply: Reply, challenge: bytes | None) -> None:
            # RFC 3030: the transaction has failed; the chunk octets are still
            # read so that they are never taken for commands.
            self._transaction = None
            self._discard_chunk(size, last, reply, protocol_error=False)

        self._decide(DataStart("BDAT"), accepted, rejected)

    def _stream_chunk(self, size: int, last: bool) -> None:
        self._chunk = _Chunk(size=size, remaining=size, last=last)
        self._move("chunk")

    def _discard_chunk(self, size: int, last: bool, reply: Reply, *, protocol_error: bool) -> None:
        """Read and drop ``size`` octets, then send ``reply``."""
        self._chunk = _Chunk(size, size, last, reply, protocol_error)
        self._move("chunk")

    def _step_bdat(self) -> bool:
        chunk = self._chunk
        assert chunk is not None
        if chunk.remaining:
            if not self._buffer:
                return False
            piece = self._take(chunk.remaining)
            chunk.remaining -= len(piece)
            if chunk.reply is None:
                self._stream_bdat(piece)
            if chunk.remaining:
                return True
        self._finish_chunk(chunk)
        return True

    def _stream_bdat(self, piece: bytes) -> None:
        """Deliver complete lines; hold back one bounded partial line."""
        body = self._body
        assert body is not None
        data = self._bdat_partial + piece if self._bdat_partial else piece
        if self._bdat_skipping:
            data = self._skip_bdat_long_line(body, data)
        last = data.rfind(b"\r\n")
        cut = last + 2 if last >= 0 else 0
        lines, partial = data[:cut], data[cut:]
        if lines and body.accept(lines):
            self._events.append(MessageData(lines))
        if len(partial) > self._limits.max_text_line:
            body.refuse_partial_line(partial)
            self._bdat_skipping = True
            partial = self._skip_bdat_long_line(body, partial)
        self._bdat_partial = partial

    def _skip_bdat_long_line(self, body: _BodyInspector, data: bytes) -> bytes:
        """Drop the rest of an over-long line; what follows it (or a lone CR)."""
        end = data.find(b"\r\n")
        if end < 0:
            keep = 1 if data.endswith(b"\r") else 0
            body.inspect_skipped(data[: len(data) - keep])
            return data[len(data) - keep :]
        body.inspect_skipped(data[:end])
        self._bdat_skipping = False
        return data[end + 2 :]

    def _finish_chunk(self, chunk: _Chunk) -> None:
        self._chunk = None
        self._move("chunk-end")
        if chunk.reply is not None:
            if chunk.reply_is_protocol_error:
                self._fail(chunk.reply)
            else:
                self._send(chunk.reply)
        elif not chunk.last:
            self._send(Reply(250, "2.0.0", f"{chunk.size} octets received"))
        else:
            self._flush_bdat_partial()
            self._end_of_message()

    def _flush_bdat_partial(self) -> None:
        """The final fragment of a BDAT message need not end with CRLF."""
        partial, self._bdat_partial = self._bdat_partial, b""
        body = self._body
        assert body is not None
        if self._bdat_skipping:
            self._bdat_skipping = False
            body.inspect_skipped(partial)
        elif partial and body.accept(partial):
            self._events.append(MessageData(partial))

    # ------------------------------------------------------ dispatch tables

    _COMMANDS: ClassVar[dict[str, Callable[[ServerConnection, str], None]]] = {
        "EHLO": _cmd_ehlo,
        "HELO": _cmd_helo,
        "STARTTLS": _cmd_starttls,
        "AUTH": _cmd_auth,
        "MAIL": _cmd_mail,
        "RCPT": _cmd_rcpt,
        "DATA": _cmd_data,
        "BDAT": _cmd_bdat,
        "RSET": _cmd_rset,
        "NOOP": _cmd_noop,
        "QUIT": _cmd_quit,
        "VRFY": _cmd_vrfy,
        "EXPN": _cmd_expn,
        "HELP": _cmd_help,
    }

    _STEPS: ClassVar[dict[State, Callable[[ServerConnection], bool]]] = {
        State.COMMAND: _step_command,
        State.AUTH: _step_auth,
        State.AUTH_FAILURE: _step_auth_failure,
        State.AUTH_SUCCESS: _step_auth_success,
        State.DATA: _step_data,
        State.BDAT: _step_bdat,
    }
