"""The dashboard as the daemon runs it: bound (loopback), guarded, listening to the event bus,
and findable by `releaseosd ui` through a small address file in the state dir."""

from __future__ import annotations

import contextlib
import html
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from releaseosd.dashboard.access import Access, load_or_create_secret, read_secret
from releaseosd.dashboard.account import Account
from releaseosd.dashboard.listen import bind, is_loopback, non_loopback
from releaseosd.dashboard.live import LiveFeed
from releaseosd.dashboard.pages import Act, Site, dashboard_app
from releaseosd.model.config import DashboardConfig, SoundCloudConfig
from releaseosd.model.events import Event, EventBus, NeedsLogin
from releaseosd.model.store import Store, replace_file
from releaseosd.soundcloud.tokens import TokenStore
from releaseosd.web.served import ServedApp

log = logging.getLogger("releaseosd.dashboard.server")

ADDRESS_FILE = "dashboard.json"


class DashboardNotRunning(Exception):
    """No dashboard to open; the message says how to start one."""


def address_path(state_dir: Path) -> Path:
    return state_dir / ADDRESS_FILE


def running_url(state_dir: Path) -> str:
    """The running dashboard's address, from the file it wrote at start. DashboardNotRunning
    when there is none, or when the file names no loopback address of a live process (a daemon
    killed, a file planted there): nothing is ever sent to such an address."""
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
    if not (host == "localhost" or is_loopback(host)) or not _alive(pid):
        raise DashboardNotRunning(
            f"{address_path(state_dir)} names {url} (pid {pid}), which is not a running "
            "dashboard on this machine; restart the daemon"
        )
    return url


def login_url(state_dir: Path) -> str:
    """The address `releaseosd ui` opens: the running dashboard's, with the one-time token
    that trades for the session cookie."""
    return signed_in(running_url(state_dir), read_secret(state_dir))


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
    page = (
        "<!doctype html><meta charset='utf-8'><title>releaseosd</title>"
        f"<meta http-equiv='refresh' content='0;url={html.escape(target)}'>"
        f"<p><a href='{html.escape(target)}'>Open the releaseosd dashboard</a></p>"
    )
    replace_file(path, page.encode())
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
        info = json.dumps({"url": self.url, "pid": os.getpid()})
        replace_file(address_path(self._state_dir), info.encode())

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
