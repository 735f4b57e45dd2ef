"""sd_notify without a dependency: a datagram to `$NOTIFY_SOCKET`, a no-op outside systemd.

What the daemon sends (`bot.daemon`, `bot.health`): `STATUS=<phase>` while it starts, `READY=1` once
reconciliation and warm-up are done, `WATCHDOG=1` about every second while it is live (only when systemd
armed a watchdog: `$WATCHDOG_USEC`, for this process if `$WATCHDOG_PID` is set), `STATUS=<one line>` whenever
that line changes, and `STOPPING=1` when the clean stop begins.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends READY/STOPPING/WATCHDOG/STATUS messages to systemd when it is listening."""

    def __init__(self, address: str | None = None) -> None:
        self._address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        for_us = not pid or pid == str(os.getpid())  # a watchdog armed for another process is not ours
        self.watchdog_seconds: float | None = (
            int(usec) / 1_000_000 if usec.isdigit() and int(usec) > 0 and for_us else None)
        self.last_status = ""

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, message: str) -> bool:
        """Send one notification; returns False (never raises) when systemd is absent or unreachable."""
        if not self._address:
            return False
        addr = self._address
        if addr.startswith("@"):  # abstract namespace socket
            addr = "\0" + addr[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # a listener that stopped reading must never wedge the event loop
                sock.connect(addr)
                sock.sendall(message.encode())
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> bool:
        if status:
            self.last_status = status
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self, status: str = "stopping") -> bool:
        self.last_status = status
        return self.notify(f"STOPPING=1\nSTATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """`STATUS=text` (one line: what `systemctl status` shows)."""
        self.last_status = text = " ".join(text.split())
        return self.notify(f"STATUS={text}")

    def status_changed(self, text: str) -> bool:
        """`STATUS=text` only when it differs from the last one sent."""
        return self.status(text) if " ".join(text.split()) != self.last_status else False
