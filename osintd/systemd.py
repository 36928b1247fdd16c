"""Talking to systemd: readiness, status, watchdog, and socket activation.

Owns: the ``sd_notify`` datagrams (READY=1, STATUS=…, WATCHDOG=1,
STOPPING=1) and taking listening sockets from ``LISTEN_FDS``.
Must not: decide when the daemon is ready or healthy (``app`` does), or
fail the daemon when systemd is absent: without ``NOTIFY_SOCKET`` every call
is a no-op, so the same binary runs on a laptop.

The protocol is small enough that no library is needed: one AF_UNIX datagram
per message (see sd_notify(3)); a socket path starting with ``@`` is in the
abstract namespace.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

import trio

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET")
        self._address = ("\0" + address[1:]) if address and address.startswith("@") else address
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        mine = pid is None or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 1e6 / 2 if usec and usec.isdigit() and mine and int(usec) else None

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *lines: str) -> None:
        if self._socket is None or self._address is None:  # there is a socket only with an address
            return
        try:
            self._socket.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:  # systemd went away, or the socket is not ours: never fatal
            log.debug("sd_notify failed: %s", exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=Stopping: closing clients")

    async def keep_watchdog_fed(self, healthy: Callable[[], bool]) -> None:
        """WATCHDOG=1 every half of WATCHDOG_USEC while ``healthy()``; a stalled
        pipeline stops the pings and lets systemd restart the service."""
        if self.watchdog_interval is None or self._socket is None:
            return
        while True:
            if healthy():
                self.send("WATCHDOG=1")
            await trio.sleep(self.watchdog_interval)


def listeners_from_environment(environ: dict[str, str] | None = None) -> list[trio.SocketListener]:
    """Listening sockets passed by systemd socket activation (none if not activated)."""
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(env.get("LISTEN_FDS", "0") or 0)
    listeners = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)  # not for child processes
    if listeners:
        log.info("using %d listening socket(s) from systemd", len(listeners))
    return listeners
