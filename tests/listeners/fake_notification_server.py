"""A private D-Bus session bus and a stand-in desktop notification server, for tests.

Two parts, both usable from any test (the fixtures in tests/listeners/conftest.py wrap them):

* `SessionBus.start(workdir)`: a real `dbus-daemon` on a unix socket in `workdir`, with no
  service activation (so no real notification daemon installed on the machine can answer).
* `NotificationServer.start(bus, record)`: this file run as a subprocess; it owns
  org.freedesktop.Notifications on that bus, answers Notify (uint32 ids), GetServerInformation,
  GetCapabilities and CloseNotification, and appends one JSON object per Notify call to `record`
  (keys: app_name, replaces_id, icon, summary, body, actions, hints, expire_timeout).
  With `hang=True` it takes the name but never answers, like a wedged notification daemon.

Run directly: `python fake_notification_server.py --address ADDR --record FILE [--hang]`;
it prints "ready" once it owns the name.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@dataclass
class SessionBus:
    """A running private session bus; `address` goes into DBUS_SESSION_BUS_ADDRESS."""

    address: str
    process: subprocess.Popen[bytes]
    socket_dir: Path

    @classmethod
    def start(cls, workdir: Path, timeout: float = 10.0) -> SessionBus:
        # A unix socket path must fit in 108 bytes; pytest's tmp paths can be longer.
        socket_dir = Path(tempfile.mkdtemp(prefix="rosd-bus-"))
        config = workdir / "session-bus.conf"
        config.write_text(_BUS_CONFIG.format(socket=socket_dir / "bus"))
        daemon = shutil.which("dbus-daemon")
        if daemon is None:
            raise RuntimeError("dbus-daemon not found: install the Debian package 'dbus'")
        with (workdir / "dbus-daemon.log").open("wb") as errors:
            process = subprocess.Popen(
                [daemon, f"--config-file={config}", "--nofork", "--print-address"],
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        assert process.stdout is not None
        # dbus-daemon prints its address only once it listens: that line is the readiness signal.
        line = _readline(process, timeout)
        if not line:
            process.kill()
            raise RuntimeError(f"dbus-daemon did not start; see {workdir / 'dbus-daemon.log'}")
        return cls(line.strip(), process, socket_dir)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for a child process that should use this bus."""
        env = dict(os.environ if base is None else base)
        env["DBUS_SESSION_BUS_ADDRESS"] = self.address
        return env

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self.socket_dir, ignore_errors=True)


@dataclass
class NotificationServer:
    """A running stand-in notification server; `received()` reads what it recorded."""

    process: subprocess.Popen[bytes]
    record: Path
    _seen: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(
        cls, bus: SessionBus, record: Path, *, hang: bool = False, timeout: float = 10.0
    ) -> NotificationServer:
        record.touch()
        command = [sys.executable, __file__, "--address", bus.address, "--record", str(record)]
        if hang:
            command.append("--hang")
        process = subprocess.Popen(command, stdout=subprocess.PIPE)
        if _readline(process, timeout).strip() != "ready":
            _stop(process)
            raise RuntimeError(
                "fake notification server did not take org.freedesktop.Notifications"
            )
        return cls(process, record)

    def received(self) -> list[dict[str, Any]]:
        """Every Notify call so far, oldest first."""
        lines = self.record.read_text(encoding="utf-8").split("\n")
        # The last element is '' or a line still being written: only complete lines count.
        return [json.loads(line) for line in lines[:-1] if line]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Poll until at least `count` notifications arrived; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.received()
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} notifications within {timeout} s, got {got}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        _stop(self.process)


@dataclass
class NotificationBus:
    bus: SessionBus
    server: NotificationServer

    @property
    def address(self) -> str:
        return self.bus.address

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        return self.bus.env(base)

    def received(self) -> list[dict[str, Any]]:
        return self.server.received()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return self.server.wait_for(count, timeout)


def _readline(process: subprocess.Popen[bytes], timeout: float) -> str:
    """One line of a child's stdout, or '' if it exits or stays silent past `timeout`."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline().decode()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


# --- the server process -----------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """jeepney variants are (signature, value) pairs; keep the value, JSON-friendly."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return _plain(value[1])
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def serve(address: str, record: Path, hang: bool) -> None:
    from jeepney import HeaderFields, MessageType, new_error, new_method_return
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    connection = open_dbus_connection(bus=address)
    reply = connection.send_and_get_reply(message_bus.RequestName(NAME, 4))  # 4: DO_NOT_QUEUE
    if reply.body != (1,):  # 1: PRIMARY_OWNER
        print(f"could not own {NAME}: {reply.body}", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    next_id = 1
    with record.open("a", encoding="utf-8") as out:
        while True:
            message = connection.receive()
            if message.header.message_type != MessageType.method_call or hang:
                continue
            member = message.header.fields.get(HeaderFields.member)
            if member == "Notify":
                app, replaces, icon, summary, body, actions, hints, expire = message.body
                entry = {
                    "app_name": app,
                    "replaces_id": replaces,
                    "icon": icon,
                    "summary": summary,
                    "body": body,
                    "actions": list(actions),
                    "hints": _plain(dict(hints)),
                    "expire_timeout": expire,
                }
                # One write per line, so a reader never sees half an object as a whole line.
                out.write(json.dumps(entry) + "\n")
                out.flush()
                connection.send(new_method_return(message, "u", (next_id,)))
                next_id += 1
            elif member == "GetServerInformation":
                info = ("releaseosd-tests", "releaseosd", "1.0", "1.2")
                connection.send(new_method_return(message, "ssss", info))
            elif member == "GetCapabilities":
                connection.send(new_method_return(message, "as", (["body"],)))
            elif member == "CloseNotification":
                connection.send(new_method_return(message))
            else:
                connection.send(
                    new_error(
                        message,
                        "org.freedesktop.DBus.Error.UnknownMethod",
                        "s",
                        (f"the test notification server has no method {member}",),
                    )
                )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--address", required=True)
    parser.add_argument("--record", required=True, type=Path)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args(argv)
    serve(args.address, args.record, args.hang)


if __name__ == "__main__":
    main()
