"""The dashboard as the daemon runs it: bound (loopback), guarded, listening to the event bus,
and findable by `releaseosd ui` through a small address file in the state dir."""

from __future__ import annotations

import contextlib
import html
import ipaddress
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from releaseosd.dashboard.access import Access, load_or_create_secret, read_secret
from releaseosd.dashboard.account import Account
from releaseosd.dashboard.listen import bind, non_loopback
from releaseosd.dashboard.live import LiveFeed
from releaseosd.dashboard.pages import Act, Site, dashboard_app
from releaseosd.model.config import DashboardConfig, SoundCloudConfig
from releaseosd.model.events import Event, EventBus, NeedsLogin
from releaseosd.model.store import Store
from releaseosd.soundcloud.tokens import TokenStore
from releaseosd.web.served import ServedApp

log = logging.getLogger("releaseosd.dashboard.server")

ADDRESS_FILE = "dashboard.json"


class DashboardNotRunning(Exception):
    """No dashboard to open; the message says how to start one."""


def address_path(state_dir: Path) -> Path:
    return state_dir / ADDRESS_FILE


def login_url(state_dir: Path) -> str:
    """The address `releaseosd ui` opens: the running dashboard's, with the one-time token
    that trades for the session cookie. DashboardNotRunning when no dashboard was started."""
    try:
        info = json.loads(address_path(state_dir).read_text())
        url = str(info["url"])
        host = urlsplit(url).hostname or ""
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        raise DashboardNotRunning(
            "no dashboard is running for this state dir: start the daemon ('releaseosd run', or "
            "'releaseosd service install'), with dashboard.enabled: true in the config"
        ) from None
    # The secret goes only to a loopback address of a process that is alive: a stale file (a
    # daemon killed) or one planted there never receives it.
    if not _is_loopback_name(host) or not _alive(pid):
        raise DashboardNotRunning(
            f"{address_path(state_dir)} names {url} (pid {pid}), which is not a running "
            "dashboard on this machine; restart the daemon"
        )
    return signed_in(url, read_secret(state_dir))


def _is_loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not our daemon
    return True


def signed_in(url: str, secret: str) -> str:
    return f"{url}login?token={secret}"


OPENER_FILE = "dashboard-open.html"


def opener_page(state_dir: Path) -> Path:
    """A private (0600) page that sends the browser to the signed-in address, for `ui` to
    open: a browser's command line is readable by every user on the machine (ps), so the
    secret never goes there (Jupyter does the same)."""
    target = login_url(state_dir)
    path = state_dir / OPENER_FILE
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".dashboard-open.", suffix=".part")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(
                "<!doctype html><meta charset='utf-8'><title>releaseosd</title>"
                f"<meta http-equiv='refresh' content='0;url={html.escape(target)}'>"
                f"<p><a href='{html.escape(target)}'>Open the releaseosd dashboard</a></p>"
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


class Dashboard:
    def __init__(
        self,
        config: DashboardConfig,
        *,
        state_dir: Path,
        store: Store,
        act: Act,
        events: EventBus,
        soundcloud: SoundCloudConfig,
        tokens: TokenStore,
        rehearsal: bool = False,
        before_login: Callable[[], None] = lambda: None,
        port: int | None = None,
    ) -> None:
        self._state_dir = state_dir
        secret = load_or_create_secret(state_dir)
        sockets = bind(config, port)
        self.port = int(sockets[0].getsockname()[1])
        first = str(sockets[0].getsockname()[0])
        self.url = f"http://{_url_host(first)}:{self.port}/"
        self.signed_in_url = signed_in(self.url, secret)
        access = Access(secret, self.port, [_url_host(a) for a in non_loopback(config)])
        self.live = LiveFeed()
        self.account = Account(
            soundcloud, tokens, state_dir, changed=self.live.tell_account, before_login=before_login
        )
        site = Site(
            store=store,
            act=act,
            live=self.live,
            account=self.account,
            access=access,
            state_dir=state_dir,
            rehearsal=rehearsal,
        )
        self._served = ServedApp(dashboard_app(site), sockets, "dashboard")
        self._events = events
        self._unsubscribe: Callable[[], None] | None = None

    def _hear(self, event: Event) -> None:
        if isinstance(event, NeedsLogin):
            self.account.forget()
        self.live(event)

    def start(self) -> None:
        self._unsubscribe = self._events.subscribe(self._hear)
        self._served.start()
        self._write_address()
        log.info("dashboard at %s (open it with 'releaseosd ui')", self.url)

    def _write_address(self) -> None:
        target = address_path(self._state_dir)
        fd, tmp = tempfile.mkstemp(dir=self._state_dir, prefix=".dashboard.", suffix=".part")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"url": self.url, "pid": os.getpid()}, out)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.account.close()
        self.live.close()
        self._served.stop()
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(address_path(self._state_dir).read_text())
            if info.get("pid") == os.getpid():
                address_path(self._state_dir).unlink()
