"""`releaseosd upload FILE`: the daemon's pipeline for one file, in the foreground.

The file becomes a track record in the store like any export the watcher finds (so `status`,
`release` and a later daemon know it), built by Ingest's build step and sent by the daemon's own
Uploader and Publisher; only the waiting is done here instead of by the scheduler. The store's
owner lock is held throughout: while a daemon owns the state dir this command refuses, because
two writers would upload the same audio twice.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from releaseosd.model.config import Config
from releaseosd.model.events import EventBus, UploadProgress
from releaseosd.model.states import REMOTE, State
from releaseosd.model.store import (
    OwnerLock,
    StateDirBusy,
    Store,
    StoreError,
    prepare_state_dir,
)
from releaseosd.model.track import Track, utcnow

if TYPE_CHECKING:
    from releaseosd.model.sidecar import Sidecar
    from releaseosd.soundcloud.client import SoundCloudClient
    from releaseosd.soundcloud.tokens import TokenStore

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_BUSY = 3

# Retries the scheduler would make within this many seconds are waited for here; later ones are
# left to the daemon (the record stays 'ready' with its next attempt time).
DEFAULT_MAX_WAIT = 120.0


class UploadRefused(Exception):
    """Nothing was uploaded; the message says why and what to do instead."""

    def __init__(self, message: str, code: int = EXIT_PROBLEMS, url: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.url = url


@dataclass(frozen=True)
class Outcome:
    code: int
    message: str
    track: Track | None = None

    @property
    def url(self) -> str | None:
        return self.track.soundcloud.permalink_url if self.track is not None else None


# --- progress ---------------------------------------------------------------------------------------


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.2f} GiB"


def _clock_text(seconds: float) -> str:
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(sent: int, total: int, elapsed: float) -> str:
    """'uploading  3.0 MiB / 12.0 MiB  25%  1.5 MiB/s  0:06 left'."""
    share = sent / total if total else 1.0
    line = f"uploading  {_size(sent)} / {_size(total)}  {share:4.0%}"
    if elapsed > 0 and sent > 0:
        rate = sent / elapsed
        line += f"  {_size(rate)}/s"
        if sent < total:
            line += f"  {_clock_text((total - sent) / rate)} left"
        else:
            line += f"  in {_clock_text(elapsed)}"
    return line


class ProgressBar:
    """The client's progress callback, drawn on `stream`.

    On a terminal one line is redrawn in place (`\\r`) at most ten times a second; into a file or a
    pipe (a log, CI) it writes a line at each quarter, so the log shows progress without flooding.
    """

    def __init__(
        self,
        stream: TextIO,
        is_tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if is_tty is None else is_tty
        self.clock = clock
        self._start: float | None = None
        self._last_draw = 0.0
        self._next_quarter = 0
        self._width = 0
        self._sent = 0

    def __call__(self, sent: int, total: int) -> None:
        now = self.clock()
        if self._start is None or sent < self._sent:
            # A resend (after a refreshed login) starts the count again.
            self._start, self._next_quarter = now, 0
        self._sent = sent
        elapsed = now - self._start
        done = total > 0 and sent >= total
        if self.tty:
            if done or now - self._last_draw >= 0.1 or self._last_draw == 0.0:
                line = progress_line(sent, total, elapsed)
                self.stream.write("\r" + line.ljust(self._width))
                self._width = len(line)
                self._last_draw = now
                if done:
                    self.stream.write("\n")
                self.stream.flush()
        else:
            quarter = 4 if done else int(4 * sent / total) if total else 4
            if quarter >= self._next_quarter:
                self.stream.write(progress_line(sent, total, elapsed) + "\n")
                self.stream.flush()
                self._next_quarter = quarter + 1


# --- composing the daemon's stages ------------------------------------------------------------------


class _Inline(Executor):
    """Ingest hands builds to a pool; here the build runs at once, in this thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


# --- the command ------------------------------------------------------------------------------------


def _load_sidecar(
    config: Config, audio: Path, explicit: Path | None, at: dt.datetime | None
) -> tuple[Sidecar, Path]:
    from releaseosd.model.sidecar import Sidecar, load_track_sidecar

    root = config.root_for(audio)
    sidecar = load_track_sidecar(audio, root, explicit) or Sidecar()
    if at is not None:
        # Only what the producer wrote: a release_date derived from the time --at replaces is
        # derived again.
        data = sidecar.model_dump(exclude_unset=True)
        data["release_at"] = at
        sidecar = Sidecar.model_validate(data)
    return sidecar, root


def _already_uploaded(audio: Path, twin: Track) -> UploadRefused:
    url = twin.soundcloud.permalink_url or twin.soundcloud.urn or "(no link yet)"
    return UploadRefused(
        f"{audio}: this audio is already on SoundCloud as '{twin.title}' ({twin.state.value}): "
        f"{url}\nNot uploaded again. To replace it: releaseosd remove {twin.id} --remote, then "
        "upload it again.",
        url=twin.soundcloud.permalink_url,
    )


def _record_for(store: Store, audio: Path, root: Path) -> tuple[Track, bool]:
    """The track record this upload works on: the file's own, or a new one (and whether it is
    new). Raises UploadRefused when the file was removed, or is on SoundCloud already."""
    own = store.by_audio_path(audio)
    if own is None:
        return store.insert(
            Track(audio_path=str(audio), title=audio.stem, watch_root=str(root))
        ), True
    if own.state == State.REMOVED:
        raise UploadRefused(
            f"{audio} was taken out of releaseosd with 'releaseosd remove'; copy or rename the "
            "file to upload it as a new track"
        )
    if own.soundcloud.urn or (own.state in REMOTE and own.state != State.UPLOADING):
        raise _already_uploaded(audio, own)
    if own.state in (State.UPLOADING, State.NEEDS_LOGIN):
        # An attempt cut short (crash, logged out). READY keeps its history, so the Uploader
        # looks for it on SoundCloud by machine tag before sending anything.
        own = store.transition(own.id, State.READY, note="picked up by 'releaseosd upload'")
    return own, False


def _build(
    config: Config, store: Store, track: Track, audio: Path, sidecar: Sidecar, is_new: bool
) -> Track:
    """Ingest's own build step, so the record has exactly what a daemon-built one has; the same
    audio as another track is refused the way the daemon refuses it."""
    import os

    from releaseosd.media.probe import probe
    from releaseosd.model.track import AudioStat, remove_built_files
    from releaseosd.pipeline.ingest import Ingest

    info = probe(audio)  # AudioProblem: an unfinished or broken file; the caller reports it
    stat = AudioStat.of(os.stat(audio))
    ingest = Ingest(config, store, _Inline())
    ingest.start_build(
        track.id,
        audio,
        sidecar,
        info,
        stat,
        None,
        note="building for 'releaseosd upload'",
        reread_sidecar=False,
    )
    built = store.get(track.id) or store.by_audio_path(audio)
    assert built is not None
    twin = store.get(built.duplicate_of) if built.duplicate_of else None
    if twin is not None:
        if is_new:
            store.delete(built.id)
            remove_built_files(config.state_dir, built.id)
        if twin.soundcloud.urn or twin.state in REMOTE:
            raise _already_uploaded(audio, twin)
        raise UploadRefused(
            f"{audio}: the same audio as '{twin.title}' ({twin.audio_path}), which releaseosd "
            f"already has ({twin.state.value}); it is not uploaded twice. Upload that one, or "
            f"'releaseosd remove {twin.id}' first."
        )
    return built


def _describe(track: Track) -> Outcome:
    url = track.soundcloud.permalink_url or track.soundcloud.urn or ""
    if track.state == State.RELEASED:
        return Outcome(EXIT_OK, f"'{track.title}' is public: {url}", track)
    if track.state == State.PUBLISHED:
        return Outcome(EXIT_OK, f"'{track.title}' is uploaded (private): {url}", track)
    if track.state == State.SCHEDULED and track.release_at is not None:
        when = track.release_at.astimezone()
        return Outcome(
            EXIT_OK,
            f"'{track.title}' is uploaded privately: {url}\n"
            f"It goes public at {when:%Y-%m-%d %H:%M %Z}: the releaseosd daemon does that "
            "(it must be running then: releaseosd service install, or releaseosd run). "
            f"To publish it yourself: releaseosd release {track.id} --now",
            track,
        )
    if track.state == State.NEEDS_LOGIN:
        return Outcome(
            EXIT_PROBLEMS,
            f"'{track.title}' was not uploaded: {track.last_error}\nRun: releaseosd auth login; "
            "then run this again (or let the daemon take it from there)",
            track,
        )
    if track.state == State.INVALID:
        return Outcome(EXIT_PROBLEMS, f"not uploaded: {track.last_error}", track)
    if track.state == State.FAILED:
        return Outcome(
            EXIT_PROBLEMS,
            f"'{track.title}' failed: {track.last_error}\nTry again with: releaseosd upload "
            f"'{track.audio_path}' (or releaseosd retry {track.id} with the daemon running)",
            track,
        )
    retry_at = track.next_attempt_at
    later = f" at {retry_at.astimezone():%H:%M:%S}" if retry_at else ""

    reason = f" ({track.last_error})" if track.last_error else ""
    return Outcome(
        EXIT_PROBLEMS,
        f"'{track.title}' is not done yet: {track.state.value}{reason}. The daemon continues"
        f"{later} when it runs (releaseosd run), or run this command again then.",
        track,
    )


def run_upload(
    config: Config,
    audio: Path,
    sidecar_path: Path | None = None,
    at: dt.datetime | None = None,
    *,
    tokens: TokenStore | None = None,
    err: TextIO | None = None,
    is_tty: bool | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], dt.datetime] = utcnow,
    max_wait: float = DEFAULT_MAX_WAIT,
) -> Outcome:
    """Validate, build, upload (progress on `err`), wait for processing, then publish or schedule.

    Never uploads audio the store knows as uploaded. Returns what happened; the message is for
    the user and the code is the command's exit status.
    """
    from releaseosd.media.probe import AudioProblem
    from releaseosd.model.yamlfile import FileProblems
    from releaseosd.pipeline.publish import Publisher
    from releaseosd.pipeline.stage import Stage
    from releaseosd.pipeline.upload import Uploader

    err = sys.stderr if err is None else err
    audio = audio.expanduser().absolute()
    try:
        sidecar, root = _load_sidecar(config, audio, sidecar_path, at)
    except FileProblems as exc:
        return Outcome(EXIT_PROBLEMS, str(exc))
    prepare_state_dir(config.state_dir)
    lock = OwnerLock(config.state_dir)
    try:
        lock.acquire("upload")
    except StateDirBusy as exc:
        folders = ", ".join(str(w.path) for w in config.watch) or "(none configured)"
        return Outcome(
            EXIT_BUSY,
            f"{exc}\nA running releaseosd daemon uploads for you: drop {audio.name} (and its "
            f"sidecar) into a watched folder instead ({folders}), or stop the daemon and run "
            "this again.",
        )
    try:
        store = Store.open(config.state_dir)
    except StoreError as exc:
        lock.release()
        return Outcome(EXIT_PROBLEMS, str(exc))
    bar = ProgressBar(err, is_tty)
    client: SoundCloudClient | None = None

    def get_client() -> SoundCloudClient:
        nonlocal client
        if client is None:
            from releaseosd.soundcloud.client import connect

            client = connect(config.soundcloud, tokens, state_dir=config.state_dir)
        return client

    try:
        track, is_new = _record_for(store, audio, root)
        try:
            track = _build(config, store, track, audio, sidecar, is_new)
        except AudioProblem as exc:
            return Outcome(EXIT_PROBLEMS, f"not uploaded: {exc}")
        if track.state != State.READY:
            return _describe(track)
        # The foreground's one listener is the progress bar; the terminal tells the rest (no
        # desktop notification).
        events = EventBus()
        events.subscribe(lambda e: bar(e.sent, e.total) if isinstance(e, UploadProgress) else None)
        stage = Stage(config, store, get_client, events, _no_wake, clock=clock)
        publisher = Publisher(stage)
        uploader = Uploader(stage, after_processed=publisher.processed)
        sharing = track.metadata.get("sharing") or "private"
        if track.release_at is not None and track.release_at > clock():
            sharing = (
                f"private until {track.release_at.astimezone():%Y-%m-%d %H:%M}, then {sharing}"
            )
        err.write(f"'{track.title}': {audio} → SoundCloud ({sharing})\n")
        err.flush()
        track = _drive(store, uploader, track.id, err, sleep, clock, max_wait)
        return _describe(track)
    except UploadRefused as exc:
        return Outcome(exc.code, str(exc))
    except KeyboardInterrupt:
        return Outcome(
            EXIT_PROBLEMS,
            "stopped waiting; the track stays in the store as it is, and the daemon (releaseosd "
            "run) carries on with it",
        )
    finally:
        if client is not None:
            client.close()
        store.close()
        lock.release()


def _no_wake(_track_id: str, _when: dt.datetime) -> None:
    """The scheduler's wake-up: here the loop in `_drive` reads the next time from the store."""


def _drive(
    store: Store,
    uploader: Any,
    track_id: str,
    err: TextIO,
    sleep: Callable[[float], None],
    clock: Callable[[], dt.datetime],
    max_wait: float,
) -> Track:
    """Do what the scheduler would, for one track, while the next step is due soon enough."""
    uploader.attempt(track_id)
    said_processing = False
    while True:
        track = store.get(track_id)
        assert track is not None
        if track.state == State.PROCESSING:
            if not said_processing:
                err.write("waiting for SoundCloud to process it…\n")
                err.flush()
                said_processing = True
            _sleep_until(track.next_attempt_at, clock, sleep, 2.0)
            uploader.poll(track_id)
        elif track.state == State.READY and track.next_attempt_at is not None:
            delay = (track.next_attempt_at - clock()).total_seconds()
            if delay > max_wait:
                return track
            err.write(
                f"attempt failed ({track.last_error}); trying again in {max(delay, 0):.0f} s\n"
            )
            err.flush()
            _sleep_until(track.next_attempt_at, clock, sleep, 0.0)
            uploader.attempt(track_id)
        else:
            return track


def _sleep_until(
    when: dt.datetime | None,
    clock: Callable[[], dt.datetime],
    sleep: Callable[[float], None],
    fallback: float,
) -> None:
    delay = (when - clock()).total_seconds() if when is not None else fallback
    if delay > 0:
        sleep(delay)
