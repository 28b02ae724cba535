"""The service manager's end of sd_notify, for tests: an AF_UNIX datagram socket that records.

    with NotifySocket.bind() as sock:            # or the `notify_socket` fixture
        env = {**os.environ, "NOTIFY_SOCKET": sock.address}
        ...start the daemon with env...
        ready = sock.wait_for("READY=1", timeout=10)   # -> Notification
        assert ready.pid == daemon.pid                 # who sent it (NotifyAccess=main)
        sock.messages()                                # every Notification so far

`NotifySocket.bind(abstract=True)` uses a Linux abstract socket ("@name"), as systemd may.
Each Notification has .pid (sender, from SO_PASSCRED), .raw (the datagram) and .fields
({"READY": "1", "STATUS": "..."}).
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

_CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Notification:
    pid: int | None
    raw: str

    @property
    def fields(self) -> dict[str, str]:
        pairs = (line.partition("=") for line in self.raw.split("\n") if line)
        return {key: value for key, _, value in pairs}


class NotifySocket:
    def __init__(self, sock: socket.socket, address: str, directory: Path | None) -> None:
        self._sock = sock
        self.address = address
        self._directory = directory
        self._received: list[Notification] = []

    @classmethod
    def bind(cls, *, abstract: bool = False) -> NotifySocket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # Ask the kernel for each sender's pid, as systemd does to enforce NotifyAccess=.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if abstract:
            name = f"releaseosd-test-{os.getpid()}-{time.monotonic_ns()}"
            sock.bind("\0" + name)
            return cls(sock, "@" + name, None)
        # Unix socket paths must fit in 108 bytes, which pytest's tmp_path may not.
        directory = Path(tempfile.mkdtemp(prefix="rosd-notify-"))
        path = directory / "notify"
        sock.bind(str(path))
        return cls(sock, str(path), directory)

    def _drain(self, timeout: float) -> None:
        wait = timeout
        while select.select([self._sock], [], [], wait)[0]:
            data, ancillary, _, _ = self._sock.recvmsg(65536, socket.CMSG_SPACE(_CREDENTIALS.size))
            pid = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _CREDENTIALS.unpack(payload[: _CREDENTIALS.size])[0]
            self._received.append(Notification(pid, data.decode("utf-8", "replace")))
            wait = 0

    def messages(self) -> list[Notification]:
        """Every datagram received so far, oldest first."""
        self._drain(0)
        return list(self._received)

    def wait_for(self, line: str, timeout: float = 10.0) -> Notification:
        """The first message containing `line` (e.g. "READY=1"); AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages():
                if line in message.raw.split("\n"):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {line!r} within {timeout} s; got {[m.raw for m in self._received]}"
                )
            self._drain(remaining)

    def close(self) -> None:
        self._sock.close()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
