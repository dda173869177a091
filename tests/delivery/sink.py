"""A small SMTP receiver on loopback for delivery tests: records what arrives, fails on cue.

Not a mail server: just enough ESMTP (EHLO, STARTTLS, AUTH PLAIN/LOGIN, MAIL, RCPT,
DATA, RSET, NOOP, QUIT) to stand in for an MX host or a flaky smarthost. `script`
decides replies: called as script(stage, argument) for "mail", "rcpt" and "data", it
returns a reply line (such as "451 4.3.0 try later") or None for the normal answer.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    data: bytes
    tls: str          # TLS version, "" when in clear
    user: str         # authenticated user, "" when none


@dataclass
class SinkServer:
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False
    auth: tuple[str, str] | None = None      # (user, password) to accept; AUTH only over TLS
    script: Callable[[str, str], str | None] | None = None
    messages: list[Received] = field(default_factory=list)
    connections: int = 0
    transcript: list[str] = field(default_factory=list)

    def start(self) -> int:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)
        return self.port

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._server = await asyncio.start_server(
                self._session, "127.0.0.1", 0, ssl=self.tls_context if self.implicit_tls else None
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            async with self._server:
                await self._server.serve_forever()

        try:
            self._loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass

    def stop(self) -> None:
        if getattr(self, "_loop", None) is None:
            return

        def cancel() -> None:
            for task in asyncio.all_tasks(self._loop):
                task.cancel()

        self._loop.call_soon_threadsafe(cancel)
        self._thread.join(5)

    def received_for(self, rcpt: str) -> list[Received]:
        return [m for m in list(self.messages) if rcpt in m.rcpt_to]

    # ------------------------------------------------------------------ one session

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        tls = ""
        if self.implicit_tls:
            tls = writer.get_extra_info("ssl_object").version()
        user = ""
        mail_from: str | None = None
        rcpts: list[str] = []

        async def send(line: str) -> None:
            self.transcript.append("S: " + line)
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        def scripted(stage: str, arg: str) -> str | None:
            return self.script(stage, arg) if self.script else None

        try:
            await send("220 sink.test ESMTP ready")
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.transcript.append("C: " + (line if not line.upper().startswith("AUTH") else "AUTH ..."))
                verb = line.split(" ", 1)[0].upper()
                arg = line[len(verb):].strip()
                if verb in ("EHLO", "HELO"):
                    lines = ["sink.test", "8BITMIME", "SMTPUTF8", "SIZE 52428800"]
                    if self.tls_context and not tls:
                        lines.append("STARTTLS")
                    if self.auth and tls:
                        lines.append("AUTH PLAIN LOGIN")
                    for i, item in enumerate(lines):
                        await send(f"250{'-' if i < len(lines) - 1 else ' '}{item}")
                elif verb == "STARTTLS" and self.tls_context and not tls:
                    await send("220 2.0.0 go ahead")
                    await writer.start_tls(self.tls_context)
                    tls = writer.get_extra_info("ssl_object").version()
                    mail_from, rcpts, user = None, [], ""
                elif verb == "AUTH" and self.auth and tls:
                    user = await self._auth(arg, reader, send)
                elif verb == "MAIL":
                    if self.auth and not user:
                        await send("530 5.7.0 Authentication required")
                        continue
                    address = arg.split(":", 1)[1].strip().split(" ")[0].strip("<>") if ":" in arg else ""
                    reply = scripted("mail", address)
                    if reply:
                        await send(reply)
                        continue
                    mail_from, rcpts = address, []
                    await send("250 2.1.0 Ok")
                elif verb == "RCPT":
                    if mail_from is None:
                        await send("503 5.5.1 MAIL first")
                        continue
                    address = arg.split(":", 1)[1].strip().split(" ")[0].strip("<>")
                    reply = scripted("rcpt", address)
                    if reply:
                        await send(reply)
                        continue
                    rcpts.append(address)
                    await send("250 2.1.5 Ok")
                elif verb == "DATA":
                    if not rcpts:
                        await send("503 5.5.1 RCPT first")
                        continue
                    await send("354 End data with <CR><LF>.<CR><LF>")
                    data = await self._read_data(reader)
                    reply = scripted("data", data.decode("utf-8", "replace"))
                    if reply:
                        await send(reply)
                    else:
                        self.messages.append(Received(mail_from or "", list(rcpts), data, tls, user))
                        await send(f"250 2.0.0 Ok: queued as SINK{len(self.messages)}")
                    mail_from, rcpts = None, []
                elif verb == "RSET":
                    mail_from, rcpts = None, []
                    await send("250 2.0.0 Ok")
                elif verb == "NOOP":
                    await send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    await send("221 2.0.0 Bye")
                    return
                else:
                    await send("502 5.5.2 Command not recognized")
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _auth(self, arg: str, reader: asyncio.StreamReader, send) -> str:
        assert self.auth is not None
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        if mechanism == "PLAIN":
            if not initial:
                await send("334 ")
                initial = (await reader.readline()).decode().strip()
            try:
                _, login, password = base64.b64decode(initial).decode().split("\0")
            except ValueError:
                await send("501 5.5.2 bad PLAIN")
                return ""
        elif mechanism == "LOGIN":
            await send("334 VXNlcm5hbWU6")
            login = base64.b64decode((await reader.readline()).strip()).decode()
            await send("334 UGFzc3dvcmQ6")
            password = base64.b64decode((await reader.readline()).strip()).decode()
        else:
            await send("504 5.5.4 mechanism not supported")
            return ""
        if (login, password) == self.auth:
            await send("235 2.7.0 Authentication successful")
            return login
        await send("535 5.7.8 Authentication credentials invalid")
        return ""

    @staticmethod
    async def _read_data(reader: asyncio.StreamReader) -> bytes:
        lines = []
        while True:
            line = await reader.readline()
            if not line or line == b".\r\n":
                break
            lines.append(line[1:] if line.startswith(b"..") else line)
        return b"".join(lines)
