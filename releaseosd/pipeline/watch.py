"""Watches the export folders and says when an exported file is finished.

watchdog observers (inotify, or polling for network shares) only wake us up; what counts is what
`os.stat` says over time (see `releaseosd.pipeline.stability`). A full scan at start-up and a periodic reconcile
scan catch whatever the events missed: files added while the daemon was down, lost inotify events,
a watch folder that appears later, an observer that died.

Threads: watchdog's threads only drop paths into an inbox. One worker thread owns all state, stats
the files, scans folders and calls `on_stable` / `on_gone`, so callbacks never run concurrently and
never on a watchdog thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from releaseosd.media.formats import is_audio
from releaseosd.model.config import WatchFolder
from releaseosd.model.sidecar import SIDECAR_SUFFIXES
from releaseosd.pipeline.stability import (
    DEFAULT_RETRY_MAX_SECONDS,
    Phase,
    StabilityTracker,
    StatFn,
    stat_identity,
)

logger = logging.getLogger(__name__)

# Partial downloads/exports and the peak, analysis and backup files DAWs and editors put beside audio.
IGNORED_SUFFIXES = frozenset(
    {
        ".part",
        ".partial",
        ".tmp",
        ".temp",
        ".crdownload",
        ".download",
        ".asd",  # Ableton analysis
        ".reapeaks",  # REAPER peaks
        ".pkf",  # Adobe/Vegas peaks
        ".peak",
        ".peaks",
        ".sfk",  # Sound Forge peaks
        ".gpk",  # WaveLab peaks
        ".ovw",  # Cubase/Nuendo overview
        ".bak",
        ".rpp-bak",
        ".swp",
    }
)
# Names some systems put everywhere; '.'-prefixed ones are already hidden.
IGNORED_NAMES = frozenset(
    {"@eadir", "#recycle", "#snapshot", "$recycle.bin", "system volume information", "__macosx"}
)

_INOTIFY_LOGGER = "watchdog.observers.inotify_c"
_HEALTH_SECONDS = 1.0
_MIN_WAIT_SECONDS = 0.005  # no busy loop, whatever the arithmetic says


def is_sidecar(path: Path) -> bool:
    """A track sidecar or a folder's release.yaml / release.yml."""
    return path.suffix.lower() in SIDECAR_SUFFIXES


def _ignored_name(name: str) -> bool:
    lower = name.lower()
    return (
        name.startswith((".", "~"))  # hidden, AppleDouble '._x', .DS_Store, editor/Office temp '~x'
        or lower in IGNORED_NAMES
        or any(lower.endswith(suffix) for suffix in IGNORED_SUFFIXES)
    )


def is_ignored(path: Path, root: Path | None = None) -> bool:
    """True for temp, hidden and DAW side files, and for anything inside a hidden/system folder.

    With `root`, the folders between `root` and the file are checked too (the root itself is not:
    watching `~/.exports` on purpose is fine).
    """
    if _ignored_name(path.name):
        return True
    if root is None:
        return False
    try:
        parts = path.parent.relative_to(root).parts
    except ValueError:
        return False
    return any(_ignored_name(part) for part in parts)


def is_candidate(path: Path) -> bool:
    return (is_audio(path) or is_sidecar(path)) and not _ignored_name(path.name)


@dataclass(eq=False)
class _Folder:
    config: WatchFolder
    path: Path  # absolute, normalised: the prefix watchdog's event paths carry
    real: Path  # symlinks resolved, to compare with ignore_dirs given either way
    watch: ObservedWatch | None = None
    observer: BaseObserver | None = None
    missing_logged: bool = False
    fell_back_to_polling: bool = False

    @property
    def polling(self) -> bool:
        return self.config.polling or self.fell_back_to_polling

    def covers(self, path: Path) -> bool:
        if self.config.recursive:
            return path.is_relative_to(self.path) and path != self.path
        return path.parent == self.path


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _make_folder(config: WatchFolder) -> _Folder:
    path = _absolute(config.path)
    return _Folder(config=config, path=path, real=Path(os.path.realpath(path)))


# Exports remembered as having left their folder on their own, at most (a DAW deleting its
# bounces all day must not grow the daemon without end).
_LEFT_REMEMBERED = 10_000


@dataclass
class _Inbox:
    """What watchdog's threads hand to the worker; paths coalesce so a busy writer costs one stat."""

    paths: dict[Path, None] = field(default_factory=dict)
    gone_dirs: dict[Path, None] = field(default_factory=dict)
    new_dirs: dict[Path, None] = field(default_factory=dict)
    # Each folder move, with the exports that left it on their own (deleted, renamed away)
    # since the watcher started: those do not go with it.
    moved_dirs: dict[tuple[Path, Path], frozenset[Path]] = field(default_factory=dict)
    folders: list[WatchFolder] | None = None
    rescan: bool = False
    rescan_reason: str = ""

    def empty(self) -> bool:
        return not (
            self.paths or self.gone_dirs or self.new_dirs or self.rescan or self.folders is not None
        )


# Opened and closed-without-write are left out: the ingest reading a file must not make it pending.
_FILE_CHANGES = (
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileAttribEvent,
    FileDeletedEvent,
)


class _EventSink(FileSystemEventHandler):
    """Runs on watchdog's thread: file it and return; must never raise (that kills the observer).

    It remembers which exports left their folder on their own (deleted, or renamed away), in
    the order the events came, so a folder move can say which of its files went before it: a
    stat cannot tell a deleted file from one whose folder was renamed since."""

    def __init__(self, post: Callable[[Callable[[_Inbox], None]], None]) -> None:
        self._post = post
        self._left: dict[Path, None] = {}  # ordered: the oldest go first past the limit

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._file(event)
        except Exception:  # pragma: no cover - a bug here must not stop the observer
            logger.exception("Could not queue filesystem event %r", event)

    def _gone_alone(self, path: Path) -> None:
        self._left.pop(path, None)
        self._left[path] = None
        if len(self._left) > _LEFT_REMEMBERED:
            del self._left[next(iter(self._left))]

    def _file(self, event: FileSystemEvent) -> None:
        src = Path(os.fsdecode(event.src_path))
        if isinstance(event, FileMovedEvent):
            dest = Path(os.fsdecode(event.dest_path))
            moved = [p for p in (src, dest) if is_candidate(p)]
            # watchdog makes up a move for each file of a moved folder: those went with it.
            if is_candidate(src) and not getattr(event, "is_synthetic", False):
                self._gone_alone(src)
            self._left.pop(dest, None)
            if moved:
                self._post(lambda box: box.paths.update(dict.fromkeys(moved)))
        elif isinstance(event, _FILE_CHANGES):
            if is_candidate(src):
                if isinstance(event, FileDeletedEvent):
                    self._gone_alone(src)
                else:
                    self._left.pop(src, None)  # a file there again
                self._post(lambda box: box.paths.__setitem__(src, None))
        elif isinstance(event, DirMovedEvent):
            dest = Path(os.fsdecode(event.dest_path))
            left = frozenset(p for p in self._left if p.is_relative_to(src))
            for path in left:
                del self._left[path]

            def add(box: _Inbox) -> None:
                box.gone_dirs[src] = None
                box.new_dirs[dest] = None
                box.moved_dirs[(src, dest)] = left

            self._post(add)
        elif isinstance(event, DirDeletedEvent):
            for path in [p for p in self._left if p.is_relative_to(src)]:
                del self._left[path]
            self._post(lambda box: box.gone_dirs.__setitem__(src, None))
        elif isinstance(event, DirCreatedEvent):
            self._post(lambda box: box.new_dirs.__setitem__(src, None))


class _OverflowSignal(logging.Filter):
    """watchdog 7 handles IN_Q_OVERFLOW inside the emitter and only logs it; hear that log line."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__()
        self._on_overflow = on_overflow

    def filter(self, record: logging.LogRecord) -> bool:
        if "overflow" in str(record.msg).lower():
            self._on_overflow()
        return True


class ExportWatcher:
    """Calls `on_stable(path)` once an exported audio file or sidecar has stopped changing.

    - `on_stable` returns True when the file was taken; False means "not complete yet": it is asked
      again after another stable period, backing off (up to `retry_max_seconds`) while the file does
      not change, and normally again as soon as it changes. An exception counts as False.
    - `on_gone(path)` follows when a taken file is deleted or moved away.
    - `on_folder_moved(src, dest, left)` is told of a folder renamed or moved inside the watch
      folders when both ends were seen, before any of its files is reported gone or found again;
      `left` are the files under `src` seen deleted or renamed away just before it moved.
    - A taken file that changes (edited sidecar, re-export) is reported again once stable.
    - Everything present at `start()` is reported (after `stable_seconds`): the callbacks must be
      idempotent, the watcher keeps no memory across restarts.
    """

    def __init__(
        self,
        folders: Sequence[WatchFolder],
        stable_seconds: float,
        on_stable: Callable[[Path], bool],
        on_gone: Callable[[Path], None],
        on_folder_moved: Callable[[Path, Path, Collection[Path]], None] = (
            lambda _src, _dest, _left: None
        ),
        ignore_dirs: Sequence[Path] = (),
        reconcile_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        tick_seconds: float = 0.2,
        poll_seconds: float = 2.0,
        retry_max_seconds: float = DEFAULT_RETRY_MAX_SECONDS,
        stat: StatFn = stat_identity,
        first_scan_done: threading.Event | None = None,
    ) -> None:
        if reconcile_seconds <= 0:
            raise ValueError(f"reconcile_seconds must be > 0, got {reconcile_seconds}")
        self._on_stable = on_stable
        self._on_gone = on_gone
        self._on_folder_moved = on_folder_moved
        self._clock = clock
        self._reconcile_seconds = reconcile_seconds
        self._tick_seconds = tick_seconds
        self._poll_seconds = poll_seconds
        self._tracker = StabilityTracker(stable_seconds, stat, retry_max_seconds)
        self._folders: dict[Path, _Folder] = {}
        self._initial_folders = list(folders)
        self._ignore_dirs = [_absolute(d) for d in ignore_dirs]
        self._ignore_dirs += [Path(os.path.realpath(d)) for d in self._ignore_dirs]
        self._observers: dict[bool, BaseObserver] = {}  # keyed by "is polling"
        self._sink = _EventSink(self._post)
        self._overflow = _OverflowSignal(lambda: self.rescan("inotify queue overflow"))

        self._cond = threading.Condition()
        self._inbox = _Inbox()
        self._stopping = False
        self._lock = threading.Lock()  # guards the tracker for pending() from other threads
        self._worker: threading.Thread | None = None
        # Set once every file found by the start-up scan has been reported (or has gone): from
        # then on the store reflects what was on disk when the daemon started.
        self.first_scan_done = first_scan_done or threading.Event()
        self._first_scan: set[Path] | None = None
        self._first_scan_count = 0

    # -- public API -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._worker is not None:
            raise RuntimeError("ExportWatcher.start() called twice")
        logging.getLogger(_INOTIFY_LOGGER).addFilter(self._overflow)
        self._worker = threading.Thread(target=self._run, name="releaseosd-watcher", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 5) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        logging.getLogger(_INOTIFY_LOGGER).removeFilter(self._overflow)
        worker = self._worker
        if worker is None:
            return
        if worker is not threading.current_thread():
            worker.join(timeout)
            if worker.is_alive():
                # It stops the observers itself once the callback returns.
                logger.warning("Watcher still busy after %.1f s (a callback is running)", timeout)

    def rescan(self, reason: str = "requested") -> None:
        """Reconcile every folder with the disk now (new, changed and vanished files)."""

        def ask(box: _Inbox) -> None:
            box.rescan = True
            box.rescan_reason = box.rescan_reason or reason

        self._post(ask)

    def update_folders(self, folders: Sequence[WatchFolder]) -> None:
        """Swap the watched set (SIGHUP reload); files pending in folders that stay are kept."""
        wanted = list(folders)
        if self._worker is None:
            self._initial_folders = wanted
            return
        self._post(lambda box: setattr(box, "folders", wanted))

    def pending(self) -> list[Path]:
        with self._lock:
            return self._tracker.pending()

    # -- the worker -----------------------------------------------------------------------------

    def _post(self, change: Callable[[_Inbox], None]) -> None:
        with self._cond:
            change(self._inbox)
            self._cond.notify()

    def _run(self) -> None:
        try:
            self._apply_folders(self._initial_folders)
            self._scan_all()
        except Exception:
            logger.exception("Watcher start-up scan failed; retrying at the next reconcile")
        with self._lock:
            self._first_scan = set(self._tracker.known())
        self._first_scan_count = len(self._first_scan)
        self._note_first_scan()
        now = self._clock()
        next_reconcile = now + self._reconcile_seconds
        next_health = now + _HEALTH_SECONDS
        next_tick = now
        while True:
            now = self._clock()
            with self._cond:
                if self._stopping:
                    break
                if self._inbox.empty():
                    self._cond.wait(self._wait_seconds(now, next_reconcile, next_health, next_tick))
                if self._stopping:
                    break
                box, self._inbox = self._inbox, _Inbox()
            try:
                now = self._clock()
                self._handle(box)
                if box.rescan or now >= next_reconcile:
                    if box.rescan:
                        logger.info("Rescanning watch folders (%s)", box.rescan_reason)
                    self._scan_all()
                    next_reconcile = self._clock() + self._reconcile_seconds
                if now >= next_health:
                    self._check_observers()
                    next_health = self._clock() + _HEALTH_SECONDS
                now = self._clock()
                due_at = self._tracker.next_due()
                if now >= next_tick or (due_at is not None and now >= due_at):
                    self._tick()
                    next_tick = self._clock() + self._tick_seconds
                self._report_gone()
                self._note_first_scan()
            except Exception:
                # One bad step (a bug, a vanished mount) must not end watching for good.
                logger.exception("Watcher step failed; carrying on")
        self._stop_observers(5.0)

    def _wait_seconds(
        self, now: float, next_reconcile: float, next_health: float, next_tick: float
    ) -> float:
        wake = min(next_reconcile, next_health)
        with self._lock:
            if self._tracker.unsettled():
                wake = min(wake, next_tick)
            due = self._tracker.next_due()
        if due is not None:
            wake = min(wake, due)
        return max(_MIN_WAIT_SECONDS, wake - now)

    def _handle(self, box: _Inbox) -> None:
        if box.folders is not None:
            self._apply_folders(box.folders)
        for (src, dest), left_before in box.moved_dirs.items():
            # Before the old paths are looked at: what they held is known where it is now, so
            # nothing takes it for gone (a copy elsewhere would take its track over). In the
            # order they were made, whatever the disk holds by now (a swap: A to tmp, B to A,
            # tmp to B). The watcher follows too: a file gone from its new place (deleted, or
            # moved on by a move whose event is still to come) is reported gone there, by the
            # deletion's event or the next reconcile. Into a folder not watched (hidden), the
            # files are gone.
            folder = self._folder_for(dest)
            if folder is None or self._dir_ignored(dest, folder):
                continue
            try:
                self._on_folder_moved(src, dest, left_before)
            except Exception:
                logger.exception("Handling the move of %s to %s failed", src, dest)
            with self._lock:
                self._tracker.move(src, dest)
                if self._first_scan is not None:
                    self._first_scan = {
                        dest / p.relative_to(src) if p.is_relative_to(src) else p
                        for p in self._first_scan
                    }
        now = self._clock()
        with self._lock:
            for gone_dir in box.gone_dirs:
                for path in self._tracker.known():
                    if path.is_relative_to(gone_dir):
                        self._tracker.observe(path, now)
            for path in box.paths:
                if path in self._tracker or self._wanted(path):
                    self._tracker.observe(path, now)
        for new_dir in box.new_dirs:
            # A folder moved or copied in arrives as one event; its files may have no events.
            folder = self._folder_for(new_dir)
            if folder is not None and new_dir.is_dir() and not self._dir_ignored(new_dir, folder):
                self._observe_all(self._walk(new_dir, folder))

    def _note_first_scan(self) -> None:
        if self._first_scan is None or self.first_scan_done.is_set():
            return
        with self._lock:
            self._first_scan = {
                p for p in self._first_scan if self._tracker.phase(p) is Phase.WAITING
            }
        if not self._first_scan:
            logger.info(
                "Start-up scan done: %d file(s) found at start looked at", self._first_scan_count
            )
            self.first_scan_done.set()

    def _tick(self) -> None:
        with self._lock:
            due = self._tracker.tick(self._clock())
        # Sidecars first: when a track and its sidecar settle together, the track sees its sidecar.
        due.sort(key=lambda p: (not is_sidecar(p), str(p)))
        for path in due:
            if self._stopping:
                return
            accepted = self._call_on_stable(path)
            with self._lock:
                self._tracker.result(path, accepted, self._clock())

    def _call_on_stable(self, path: Path) -> bool:
        try:
            return bool(self._on_stable(path))
        except Exception:
            logger.exception("Handling finished export %s failed; will try it again later", path)
            return False

    def _report_gone(self) -> None:
        with self._lock:
            gone = self._tracker.take_gone()
        for path in gone:
            try:
                self._on_gone(path)
            except Exception:
                logger.exception("Handling removal of %s failed", path)

    # -- folders and scans ----------------------------------------------------------------------

    def _folder_for(self, path: Path) -> _Folder | None:
        for folder in self._folders.values():
            if folder.covers(path):
                return folder
        return None

    def _in_ignore_dirs(self, path: Path, folder: _Folder) -> bool:
        if not self._ignore_dirs:
            return False
        real = folder.real / path.relative_to(folder.path)
        return any(p.is_relative_to(d) for d in self._ignore_dirs for p in (path, real))

    def _dir_ignored(self, directory: Path, folder: _Folder) -> bool:
        if directory == folder.path:
            return False
        return is_ignored(directory, folder.path) or self._in_ignore_dirs(directory, folder)

    def _wanted(self, path: Path) -> bool:
        folder = self._folder_for(path)
        return (
            folder is not None
            and (is_audio(path) or is_sidecar(path))
            and not is_ignored(path, folder.path)
            and not self._in_ignore_dirs(path, folder)
        )

    def _walk(self, top: Path, folder: _Folder) -> Iterator[Path]:
        def warn(error: OSError) -> None:
            logger.warning("Cannot read %s while scanning: %s", error.filename, error.strerror)

        for dirpath, dirnames, filenames in os.walk(top, onerror=warn):
            here = Path(dirpath)
            if folder.config.recursive:
                dirnames[:] = [d for d in dirnames if not self._dir_ignored(here / d, folder)]
            else:
                dirnames[:] = []
            for name in filenames:
                path = here / name
                if self._wanted(path):
                    yield path

    def _observe_all(self, paths: Iterator[Path]) -> set[Path]:
        # One moment for the whole scan, taken before any of its stats (so no wait can start
        # later than the look that began it): files found together settle together, and a
        # track and its sidecar are reported in the same tick, sidecar first.
        seen = set(paths)
        now = self._clock()
        with self._lock:
            for path in sorted(seen):
                self._tracker.observe(path, now)
        return seen

    def _scan_all(self) -> None:
        for folder in list(self._folders.values()):
            self._scan_folder(folder)

    def _scan_folder(self, folder: _Folder) -> None:
        """Make the tracker agree with the disk for one folder; (re)start its watch if needed."""
        seen: set[Path] = set()
        if not folder.path.is_dir():
            if not folder.missing_logged:
                logger.warning(
                    "Watch folder %s does not exist (or is not a folder); "
                    "it will be picked up when it appears",
                    folder.path,
                )
                folder.missing_logged = True
            self._unschedule(folder)
        else:
            if folder.watch is None:
                if folder.missing_logged:
                    logger.info("Watch folder %s appeared; watching it now", folder.path)
                    folder.missing_logged = False
                self._schedule(folder)
            # Scan after scheduling so nothing falls in the gap between the two.
            seen = self._observe_all(self._walk(folder.path, folder))
        with self._lock:
            now = self._clock()
            for path in self._tracker.known():
                if path not in seen and folder.covers(path):
                    self._tracker.observe(path, now)  # vanished, or an event we have not read yet

    def _apply_folders(self, configs: Sequence[WatchFolder]) -> None:
        wanted = {_absolute(c.path): c for c in configs}
        for key, folder in list(self._folders.items()):
            if wanted.get(key) != folder.config:
                self._unschedule(folder)
                del self._folders[key]
        added = []
        for key, config in wanted.items():
            if key not in self._folders:
                self._folders[key] = _make_folder(config)
                added.append(self._folders[key])
        with self._lock:
            orphans = [p for p in self._tracker.known() if self._folder_for(p) is None]
            self._tracker.forget(orphans)
        if orphans:
            logger.info("No longer watching %d file(s) outside the new watch folders", len(orphans))
        for folder in added:
            self._scan_folder(folder)

    # -- observers ------------------------------------------------------------------------------

    def _observer(self, polling: bool) -> BaseObserver:
        observer = self._observers.get(polling)
        if observer is None or not observer.is_alive():
            observer = PollingObserver(timeout=self._poll_seconds) if polling else Observer()
            observer.start()
            self._observers[polling] = observer
        return observer

    def _schedule(self, folder: _Folder) -> None:
        observer = self._observer(folder.polling)
        try:
            folder.watch = observer.schedule(
                self._sink, str(folder.path), recursive=folder.config.recursive
            )
            folder.observer = observer
        except OSError as exc:
            if not folder.polling and exc.errno in (errno.ENOSPC, errno.EMFILE):
                logger.warning(
                    "Cannot watch %s with inotify (%s): the system's inotify limits are used up; "
                    "polling it instead. Raise fs.inotify.max_user_watches / max_user_instances "
                    "to get events back.",
                    folder.path,
                    exc.strerror,
                )
                folder.fell_back_to_polling = True
                self._schedule(folder)
            else:
                logger.warning("Cannot watch %s: %s; retrying at the next rescan", folder.path, exc)

    def _unschedule(self, folder: _Folder) -> None:
        if folder.watch is not None and folder.observer is not None:
            # KeyError/RuntimeError: it already went with its observer.
            with contextlib.suppress(KeyError, RuntimeError):
                folder.observer.unschedule(folder.watch)
        folder.watch = None
        folder.observer = None

    def _check_observers(self) -> None:
        """Restart dead observers and watches (root deleted, emitter crashed), then rescan them.

        Also picks up a missing watch folder within a second of it appearing: one stat per missing
        folder, rather than waiting for the next reconcile.
        """
        for folder in list(self._folders.values()):
            if folder.watch is None or folder.observer is None:
                # Only missing folders: one that failed to schedule waits for the reconcile, so a
                # persistent failure is logged once a reconcile, not once a second.
                if folder.missing_logged and folder.path.is_dir():
                    self._scan_folder(folder)
                continue
            observer_alive = folder.observer.is_alive()
            emitter_alive = observer_alive and any(
                e.watch == folder.watch and e.is_alive() for e in folder.observer.emitters
            )
            if emitter_alive:
                continue
            logger.warning(
                "Watching %s stopped (%s); restarting it and rescanning",
                folder.path,
                "observer died" if not observer_alive else "its watch ended",
            )
            self._unschedule(folder)
            self._scan_folder(folder)

    def _stop_observers(self, timeout: float) -> None:
        observers, self._observers = list(self._observers.values()), {}
        for observer in observers:
            observer.stop()
        for observer in observers:
            if observer.is_alive() and observer is not threading.current_thread():
                observer.join(timeout)
