"""The daemon: composes watcher → ingest → store → scheduler → upload → publish → notify, runs
until SIGTERM/SIGINT, reloads its config on SIGHUP, and speaks systemd's notify protocol."""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from releaseosd.app import sdnotify
from releaseosd.model.config import Config, load_config, rehearsal_state_dir
from releaseosd.model.events import EventBus
from releaseosd.model.states import State
from releaseosd.model.store import OwnerLock, Store, prepare_state_dir

if TYPE_CHECKING:
    from releaseosd.soundcloud.client import SoundCloudClient
    from releaseosd.soundcloud.tokens import LoginOutlook, TokenStore

log = logging.getLogger("releaseosd.app.daemon")

STOP_WITHIN_SECONDS = 8.0


class _NoSecrets(logging.Filter):
    """Belt and braces: tokens are never passed to the logger, but a library might print one."""

    _patterns = (
        re.compile(r"(OAuth\s+)[A-Za-z0-9._~+/=-]{8,}"),
        re.compile(r"((?:access|refresh)_token[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=-]{8,}"),
        re.compile(r"(client_secret[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=-]{8,}"),
        re.compile(r"(code_verifier[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=-]{8,}"),
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = message
        for pattern in self._patterns:
            cleaned = pattern.sub(r"\1********", cleaned)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    # journald adds its own timestamps; a terminal reader still wants the time.
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_NoSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "httpx", "httpcore", "watchdog"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


RESTART_ONLY = ("state_dir", "soundcloud", "stable_seconds")
# What a reload puts into effect for the next build, upload or release.
LIVE_KEYS = ("watch", "uploads", "defaults", "preview", "artwork", "notifications")


def _log_failure(future: Future[Any]) -> None:
    """A background job's exception would die with its future: say it in the log."""
    exc = future.exception()
    if exc is not None:
        log.error("a background job failed", exc_info=exc)


class Daemon:
    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        sandbox: bool = False,
        tick_seconds: float = 15.0,
        reconcile_seconds: float = 60.0,
        tokens: TokenStore | None = None,
        login_check_seconds: float = 60.0,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.sandbox = sandbox
        self.tick_seconds = tick_seconds
        self.reconcile_seconds = reconcile_seconds
        self.login_check_seconds = login_check_seconds
        self._token_store = tokens
        self._stop = threading.Event()
        self._reload = threading.Event()
        # Set once every export found at start-up has been looked at (for tests and benchmarks).
        self.first_scan_done = threading.Event()
        self._client: SoundCloudClient | None = None
        self._client_lock = threading.Lock()
        self._resumed_on: str | None = None
        # What happens to tracks; listeners subscribe here (before `run`, in tests).
        self.events = EventBus()
        self.dashboard_url: str | None = None
        # Told the dashboard's address once it listens (`run` prints it).
        self.on_dashboard: Callable[[str, str], None] = lambda _url, _signed_in: None

    # --- SoundCloud access ---------------------------------------------------------------------

    def client(self) -> SoundCloudClient:
        with self._client_lock:
            if self._client is None:
                from releaseosd.soundcloud.client import connect

                self._client = connect(
                    self.config.soundcloud, self._token_store, state_dir=self.config.state_dir
                )
            return self._client

    def _login_outlook(self) -> LoginOutlook:
        from releaseosd.soundcloud.tokens import TokenStore

        store = self._token_store or TokenStore()
        return store.login_outlook(self.config.soundcloud.client_id)

    def _login_fingerprint(self) -> str | None:
        """What is stored for SoundCloud access, hashed; None when nothing usable is."""
        import hashlib

        from releaseosd.soundcloud.tokens import TokenStore

        client_id = self.config.soundcloud.client_id
        if not client_id:
            return None
        try:
            store = self._token_store or TokenStore()
            tokens = store.get_tokens(client_id)
            secret = store.get_client_secret(client_id)
        except Exception:
            return None
        if tokens is None:
            return None
        return hashlib.sha256(f"{tokens.to_json()}|{secret}".encode()).hexdigest()

    def _logged_in(self) -> bool:
        """Has the user acted since tracks were parked in needs_login? Only a change in what
        is stored (a new login, a secret added, the keyring unlocked) counts: resuming on the
        same tokens would fail again at once, in a loop."""
        fingerprint = self._login_fingerprint()
        if fingerprint is None or fingerprint == self._resumed_on:
            return False
        self._resumed_on = fingerprint
        # A fresh login replaces the client so the token manager reads the new tokens.
        with self._client_lock:
            self._client = None
        return True

    # --- run -----------------------------------------------------------------------------------

    def run(self) -> int:
        from releaseosd.app.commands import Commands, Hooks
        from releaseosd.app.control import ControlServer
        from releaseosd.listeners.desktop import Notifier
        from releaseosd.listeners.notifications import DesktopNotifications
        from releaseosd.media.ffmpeg import FfmpegMissing, find_ffmpeg
        from releaseosd.pipeline.ingest import Ingest
        from releaseosd.pipeline.login_watch import LoginWatch
        from releaseosd.pipeline.publish import Publisher
        from releaseosd.pipeline.schedule import Scheduler
        from releaseosd.pipeline.stage import Stage
        from releaseosd.pipeline.upload import Uploader
        from releaseosd.pipeline.watch import ExportWatcher

        rehearsal = None
        if self.sandbox:
            from releaseosd.rehearsal.run import Rehearsal

            rehearsal = Rehearsal(rehearsal_state_dir(self.config))
            url = rehearsal.start()
            self.config = rehearsal.configure(self.config)
            self._token_store = rehearsal.tokens
            rehearsal.login(self.config.soundcloud)
            log.info("rehearsal: SoundCloud sandbox at %s (nothing reaches SoundCloud)", url)

        config = self.config
        prepare_state_dir(config.state_dir)
        lock = OwnerLock(config.state_dir)
        lock.acquire()
        store = Store.open(config.state_dir)
        try:
            ffmpeg = find_ffmpeg()
            log.info("ffmpeg: %s (%s, %s)", ffmpeg.ffmpeg, ffmpeg.source, ffmpeg.version)
        except FfmpegMissing as exc:
            log.error("%s", exc)
        notifier = Notifier(config.notifications)
        events = self.events
        store.events = events
        # The listeners: one line each.
        unsubscribe = [events.subscribe(DesktopNotifications(notifier))]
        builds = ThreadPoolExecutor(max_workers=2, thread_name_prefix="build")
        scheduler: Scheduler | None = None

        def wake(track_id: str, when: Any) -> None:
            if scheduler is not None:
                scheduler.wake(track_id, when)

        def kick(_track_id: str = "") -> None:
            if scheduler is not None:
                scheduler.kick()

        def recheck(path: str) -> None:
            builds.submit(ingest.recheck, Path(path)).add_done_callback(_log_failure)

        stage = Stage(config, store, self.client, events, wake, rebuild=recheck)
        publisher = Publisher(stage)
        uploader = Uploader(stage, after_processed=publisher.processed)
        ingest = Ingest(
            config, store, builds, on_ready=kick, on_metadata_changed=kick, events=events
        )
        scheduler = Scheduler(
            store,
            upload=uploader.attempt,
            poll=uploader.poll,
            release=publisher.release,
            sync=publisher.sync,
            concurrency=config.uploads.concurrency,
            tick_seconds=self.tick_seconds,
            can_resume_login=lambda: bool(store.in_states(State.NEEDS_LOGIN)) and self._logged_in(),
        )
        watcher = ExportWatcher(
            config.watch,
            config.stable_seconds,
            on_stable=ingest.on_stable,
            on_gone=ingest.on_gone,
            on_folder_moved=ingest.on_folder_moved,
            ignore_dirs=[config.state_dir],
            reconcile_seconds=self.reconcile_seconds,
            first_scan_done=self.first_scan_done,
        )

        # A reload hands these the new config: the next build, upload or release reads it.
        live = (ingest, stage)

        commands = Commands(
            store,
            Hooks(
                kick=scheduler.kick,
                wake=scheduler.wake,
                rebuild=recheck,
                client=self.client,
                hold=scheduler.holding,
            ),
            state_dir=config.state_dir,
        )
        control = ControlServer(
            config.state_dir, commands, extra={"reload": lambda _body: self.request_reload()}
        )
        dashboard = self._dashboard(config, store, commands, rehearsal)

        previous = self._install_signals()
        try:
            ingest.recover()
            # Tracks parked by an earlier run get one try now: the user may have logged in
            # while the daemon was down. After that, only a change in the keyring resumes them.
            self._resumed_on = self._login_fingerprint()
            if store.in_states(State.NEEDS_LOGIN):
                scheduler.resume_after_login()
            scheduler.start()
            login_watch = LoginWatch(store, self._login_outlook, events)
            scheduler.every("login-watch", self.login_check_seconds, login_watch.check)
            watcher.start()

            def after_first_scan() -> None:
                # Its own thread: the build pool's two workers are busy with the scan's files.
                if self.first_scan_done.wait(STOP_WITHIN_SECONDS * 60) and not self._stop.is_set():
                    try:
                        ingest.missing_after_scan()
                    except Exception:
                        log.exception("checking for exports gone while the daemon was down")

            threading.Thread(target=after_first_scan, name="after-first-scan", daemon=True).start()
            control.start()
            if dashboard is not None:
                self._start_dashboard(dashboard)
            sdnotify.ready(f"watching {len(config.watch)} folder(s)")
            log.info(
                "releaseosd running: watching %s; state in %s",
                ", ".join(str(w.path) for w in config.watch)
                or "no folders (add 'watch' to the config)",
                config.state_dir,
            )
            interval = sdnotify.watchdog_interval()
            beat = min(interval / 2, 1.0) if interval else 1.0
            while not self._stop.wait(beat):
                sdnotify.watchdog_ping()
                if self._reload.is_set():
                    self._reload.clear()
                    self._apply_reload(watcher, notifier, live)
            sdnotify.stopping()
            log.info("stopping")
        finally:
            stopper = threading.Thread(
                target=self._shutdown,
                args=(
                    watcher,
                    scheduler,
                    control,
                    dashboard,
                    builds,
                    notifier,
                    unsubscribe,
                    store,
                    lock,
                    rehearsal,
                ),
                daemon=True,
            )
            stopper.start()
            stopper.join(STOP_WITHIN_SECONDS)
            self._restore_signals(previous)
        return 0

    def _shutdown(
        self,
        watcher: Any,
        scheduler: Any,
        control: Any,
        dashboard: Any,
        builds: Any,
        notifier: Any,
        unsubscribe: list[Callable[[], None]],
        store: Store,
        lock: OwnerLock,
        rehearsal: Any,
    ) -> None:
        for step in (
            lambda: watcher.stop(timeout=3),
            scheduler.stop,
            control.stop,
            dashboard.stop if dashboard is not None else (lambda: None),
            lambda: builds.shutdown(wait=False, cancel_futures=True),
            *unsubscribe,
            lambda: notifier.close(timeout=1),
        ):
            try:
                step()
            except Exception:
                log.exception("while stopping")
        # In-flight uploads stay 'uploading' in the store: on start they are looked up on
        # SoundCloud by their machine tag before anything is sent again.
        store.close()
        lock.release()
        if rehearsal is not None:
            rehearsal.stop()

    # --- dashboard -----------------------------------------------------------------------------

    def _dashboard(self, config: Config, store: Store, commands: Any, rehearsal: Any) -> Any:
        """The dashboard, bound; None when it is off or cannot listen (the daemon runs on: the
        error says what to change)."""
        from releaseosd.dashboard.server import address_path

        # An address left by an earlier run (killed) must not send `ui` to a dead port.
        address_path(config.state_dir).unlink(missing_ok=True)
        if not config.dashboard.enabled:
            return None
        from releaseosd.app.commands import CommandError, dispatch
        from releaseosd.dashboard.access import SecretUnsafe
        from releaseosd.dashboard.listen import BindRefused
        from releaseosd.dashboard.pages import ActionRefused
        from releaseosd.dashboard.server import Dashboard
        from releaseosd.soundcloud.tokens import TokenStore

        port = config.dashboard.port
        before_login: Callable[[], None] = lambda: None  # noqa: E731
        if rehearsal is not None:
            # Beside a real daemon's dashboard, on the next port.
            port = port + 1 if 0 < port < 65535 else 0
            before_login = rehearsal.restore_app_secret

        def act(name: str, body: dict[str, Any]) -> str:
            try:
                return str(dispatch(commands, name, body))
            except CommandError as exc:
                raise ActionRefused(str(exc)) from None

        try:
            return Dashboard(
                config.dashboard,
                state_dir=config.state_dir,
                store=store,
                act=act,
                events=self.events,
                soundcloud=config.soundcloud,
                tokens=self._token_store or TokenStore(),
                rehearsal=rehearsal is not None,
                before_login=before_login,
                port=port,
            )
        except (BindRefused, SecretUnsafe) as exc:
            log.error("the dashboard is not running: %s", exc)
            return None
        except OSError as exc:
            # The state dir cannot take the secret (full, read-only): the rest runs on.
            log.error("the dashboard is not running: %s: %s", exc.filename or "", exc.strerror)
            return None

    def _start_dashboard(self, dashboard: Any) -> None:
        from releaseosd.web.served import ServeFailed

        try:
            dashboard.start()
        except ServeFailed as exc:
            log.error("the dashboard is not running: %s", exc)
            return
        self.dashboard_url = dashboard.url
        self.on_dashboard(dashboard.url, dashboard.signed_in_url)

    # --- signals -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> str:
        self._reload.set()
        return "reloading the configuration"

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("got %s", signal.Signals(signum).name)
            self._stop.set()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self._reload.set()

        previous: dict[int, Any] = {
            signal.SIGTERM: signal.signal(signal.SIGTERM, on_stop),
            signal.SIGINT: signal.signal(signal.SIGINT, on_stop),
            signal.SIGHUP: signal.signal(signal.SIGHUP, on_hup),
        }
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _apply_reload(self, watcher: Any, notifier: Any, live: tuple[Any, ...]) -> None:
        from releaseosd.model.yamlfile import FileProblems

        sdnotify.notify("RELOADING=1")
        try:
            fresh, _, _ = load_config(self.config_path)
        except FileProblems as exc:
            log.error("config not reloaded, keeping the old one:\n%s", exc)
            sdnotify.ready()
            return
        old = self.config
        if self.sandbox:
            from releaseosd.rehearsal.run import rehearsal_watch

            fresh = fresh.model_copy(update={"watch": rehearsal_watch(fresh)})
        # These are bound into running parts (the store's folder, the signed-in client, the
        # watcher's timers, the upload workers): they change only with a restart.
        for key in RESTART_ONLY:
            rehearsal_own = self.sandbox and key in ("state_dir", "soundcloud")
            if getattr(fresh, key) != getattr(old, key) and not rehearsal_own:
                log.warning("'%s' changed in the config; it takes effect after a restart", key)
        if fresh.uploads.concurrency != old.uploads.concurrency:
            log.warning(
                "'uploads.concurrency' changed in the config; it takes effect after a restart"
            )
        config = fresh.model_copy(
            update={key: getattr(old, key) for key in RESTART_ONLY}
            | {"uploads": fresh.uploads.model_copy(update={"concurrency": old.uploads.concurrency})}
        )
        applied = [key for key in LIVE_KEYS if getattr(config, key) != getattr(old, key)]
        self.config = config
        for part in live:
            part.config = config
        watcher.update_folders(config.watch)
        notifier.settings = config.notifications
        log.info(
            "configuration reloaded: watching %s%s",
            ", ".join(str(w.path) for w in config.watch),
            f"; now in effect: {', '.join(applied)}" if applied else "",
        )
        sdnotify.ready()
