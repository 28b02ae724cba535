"""Ingest: a finished file in a watched folder becomes a track record that is `ready` (or
`invalid` with a reason, or `pending` while its sidecar is missing).

The watcher calls `on_stable` from one thread; probing (cheap) happens there so the watcher learns
whether the export is really complete; hashing, preview and artwork run on the build pool.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from releaseosd.config import Config
from releaseosd.metadata import effective
from releaseosd.sidecar import (
    FOLDER_DEFAULTS_NAMES,
    SIDECAR_SUFFIXES,
    Sidecar,
    folder_defaults_for,
    load_sidecar,
    sidecar_for,
)
from releaseosd.states import State, TransitionError, is_local
from releaseosd.store import Store
from releaseosd.track import Track, utcnow
from releaseosd.watcher import is_audio
from releaseosd.yamlfile import FileProblems

log = logging.getLogger("releaseosd.ingest")

# An export that looks unfinished this many stable periods after it stopped changing is reported
# as truncated instead of being waited for silently.
INCOMPLETE_GRACE_STABLE_PERIODS = 10


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def audio_for_sidecar(sidecar: Path) -> list[Path]:
    """The audio files a sidecar (or a folder's release.yaml) describes."""
    folder = sidecar.parent
    if sidecar.name.lower() in FOLDER_DEFAULTS_NAMES:
        return sorted(p for p in folder.iterdir() if is_audio(p) and p.is_file())
    # Any case of the extension: "Night Drive.WAV" belongs to "Night Drive.yaml" too.
    return sorted(
        p for p in folder.glob(glob.escape(sidecar.stem) + ".*") if is_audio(p) and p.is_file()
    )


class Ingest:
    def __init__(
        self,
        config: Config,
        store: Store,
        builds: Executor,
        on_ready: Callable[[str], None] = lambda _id: None,
        on_metadata_changed: Callable[[str], None] = lambda _id: None,
    ) -> None:
        self.config = config
        self.store = store
        self.builds = builds
        self.on_ready = on_ready
        self.on_metadata_changed = on_metadata_changed
        self._lock = threading.RLock()
        # When each export was first found stable but incomplete (monotonic seconds).
        self._incomplete_since: dict[Path, float] = {}

    def recover(self) -> None:
        """Builds cut off by a crash start over: the watcher's first scan reports their files."""
        for track in self.store.all():
            if track.state == State.BUILDING:
                self.store.transition(track.id, State.PENDING, note="build interrupted; rebuilding")

    # --- watcher callbacks ---------------------------------------------------------------------

    def on_stable(self, path: Path) -> bool:
        try:
            if path.suffix.lower() in SIDECAR_SUFFIXES:
                for audio in audio_for_sidecar(path):
                    if self.store.by_audio_path(audio) is not None:
                        self._audio_stable(audio, sidecar_event=True)
                return True
            if is_audio(path):
                return self._audio_stable(path)
        except Exception:
            # One bad file must never stop the watcher or any other track.
            log.exception("%s: could not be ingested", path)
        return True

    def on_gone(self, path: Path) -> None:
        track = self.store.by_audio_path(path)
        if track is None or track.state == State.BUILDING:
            return
        if not is_local(track.state) or track.maybe_remote:
            # What SoundCloud has stays as it is; if the file shows up elsewhere (a moved
            # folder), the same audio is recognised and the record follows it.
            log.info("%s: the export is gone; '%s' stays as it is", path, track.title)
            return
        # Not uploaded yet and the export is gone: nothing to release. Keep the record as removed
        # so status shows what happened rather than a track silently vanishing.
        self.store.transition(track.id, State.REMOVED, note=f"{path.name} was deleted")
        log.info("%s: deleted before upload; track %s removed", path, track.id)

    # --- audio ---------------------------------------------------------------------------------

    def watch_root_for(self, path: Path) -> Path | None:
        resolved = path.resolve()
        for folder in self.config.watch:
            root = folder.path.resolve()
            if resolved.is_relative_to(root):
                return root
        return None

    def _sidecar_root(self, audio: Path) -> Path:
        """The folder a sidecar's artwork must stay inside, never none: a folder dropped from the
        config by a reload leaves its tracks bound to the root they were found in."""
        root = self.watch_root_for(audio)
        if root is not None:
            return root
        track = self.store.by_audio_path(audio.absolute())
        if track is not None and track.watch_root:
            recorded = Path(track.watch_root)
            if audio.absolute().is_relative_to(recorded):
                return recorded
        return audio.parent

    def _audio_stable(self, path: Path, sidecar_event: bool = False) -> bool:
        from releaseosd.media.probe import AudioIncomplete, AudioProblem, probe

        with self._lock:
            path = path.absolute()
            track = self.store.by_audio_path(path)
            if track is not None and track.state == State.REMOVED:
                return True
            if track is not None and track.state == State.BUILDING:
                # A build is running; it re-reads the sidecar when it finishes.
                return True
            try:
                info = probe(path)
            except AudioIncomplete as exc:
                return self._still_incomplete(path, track, str(exc))
            except AudioProblem as exc:
                self._incomplete_since.pop(path, None)
                self._mark_invalid(path, track, str(exc))
                return True
            self._incomplete_since.pop(path, None)
            sha = sha256_of(path)
            if track is None:
                track = self._new_or_moved(path, sha)
                if track is None:
                    return True
            elif track.sha256 not in (None, sha) and self._on_soundcloud(track):
                self._record_local_change(track, path, sha)
                return True
            if self._on_soundcloud(track):
                if sidecar_event:
                    self._refresh_remote_metadata(track, path)
                return True
            twin = self._twin(track, sha)
            if twin is not None:
                self._mark_invalid(path, track, self._twin_message(path, twin))
                return True
            sidecar, problems = self._sidecar(path)
            if problems is not None:
                self.store.transition(
                    track.id, State.INVALID, last_error=problems, sha256=sha, title=track.title
                )
                log.warning("%s", problems)
                return True
            if sidecar is None:
                note = f"waiting for its sidecar {path.with_suffix('.yaml').name}"
                if track.state != State.PENDING or track.last_error != note:
                    self.store.transition(
                        track.id, State.PENDING, note=note, last_error=note, sha256=sha
                    )
                return True
            if (
                track.state in (State.READY, State.FAILED)
                and track.sha256 == sha
                and not sidecar_event
            ):
                return True  # a scan re-reporting an unchanged file (failed waits for `retry`)
            try:
                self.start_build(track.id, path, sidecar, info, sha)
            except TransitionError:
                # The scheduler took it for upload meanwhile: the edit goes the remote way.
                fresh = self.store.get(track.id)
                if fresh is not None and self._on_soundcloud(fresh) and sidecar_event:
                    self._refresh_remote_metadata(fresh, path)
            return True

    @staticmethod
    def _on_soundcloud(track: Track) -> bool:
        """Past the point where its audio may be replaced: uploaded, uploading, or a failed
        track that did reach SoundCloud."""
        return not is_local(track.state) or track.soundcloud.urn is not None

    def _twin(self, track: Track, sha: str) -> Track | None:
        """An older track with the very same audio: it is the one copy ever uploaded."""
        return next(
            (
                t
                for t in self.store.by_sha256(sha)
                if t.id != track.id
                and t.state != State.REMOVED
                and (t.created_at, t.id) < (track.created_at, track.id)
            ),
            None,
        )

    @staticmethod
    def _twin_message(path: Path, twin: Track) -> str:
        return (
            f"{path}: the same audio as '{twin.title}' ({twin.audio_path}); "
            "it is not uploaded twice. Delete one of the copies."
        )

    def start_build(
        self,
        track_id: str,
        path: Path,
        sidecar: Sidecar,
        info: Any,
        sha: str,
        note: str = "",
        reread_sidecar: bool = True,
    ) -> None:
        """BUILDING now; preview and artwork on the build pool (inline for `releaseosd upload`)."""
        self.store.transition(
            track_id,
            State.BUILDING,
            note=note,
            sha256=sha,
            probe=probe_dict(info),
            last_error=None,
            local_change=None,
        )
        self.builds.submit(self.build, track_id, path, sidecar, info, reread_sidecar)

    def _still_incomplete(self, path: Path, track: Track | None, message: str) -> bool:
        """An export whose header and size disagree is waited for; one that stays that way for
        long after it stopped changing is truncated, and the producer hears about it."""
        now = time.monotonic()
        first = self._incomplete_since.setdefault(path, now)
        grace = INCOMPLETE_GRACE_STABLE_PERIODS * self.config.stable_seconds
        if now - first < grace:
            log.info("%s", message)
            return False
        self._incomplete_since.pop(path, None)
        self._mark_invalid(
            path,
            track,
            f"{message} (unchanged for {now - first:.0f} s; if the export is still running, "
            "this clears itself when it finishes)",
        )
        return True

    def _new_or_moved(self, path: Path, sha: str) -> Track | None:
        twins = [t for t in self.store.by_sha256(sha) if t.state != State.REMOVED]
        for twin in twins:
            if not Path(twin.audio_path).exists():
                # The same audio at a new path: a move or a rename into place, not a new track.
                log.info("%s: moved from %s", path, twin.audio_path)
                return self.store.update(twin.id, self._moved_to(path), note="moved")
        if twins:
            self._mark_invalid(path, None, self._twin_message(path, twins[0]), sha)
            return None
        return self.store.insert(self._new_track(path, sha256=sha))

    def _moved_to(self, path: Path) -> Callable[[Track], None]:
        root = str(self.watch_root_for(path) or path.parent)

        def move(track: Track) -> None:
            track.audio_path = str(path)
            track.watch_root = root  # its sidecar's artwork now stays inside the new folder

        return move

    def _new_track(self, path: Path, **fields: Any) -> Track:
        return Track(
            audio_path=str(path),
            title=path.stem,
            watch_root=str(self.watch_root_for(path) or path.parent),
            **fields,
        )

    def _mark_invalid(
        self, path: Path, track: Track | None, message: str, sha: str | None = None
    ) -> None:
        log.warning("%s", message)
        if track is None:
            self.store.insert(
                self._new_track(path, sha256=sha, state=State.INVALID, last_error=message)
            )
            return
        if is_local(track.state):
            self.store.transition(track.id, State.INVALID, last_error=message)

    def _record_local_change(self, track: Track, path: Path, sha: str) -> None:
        if track.local_change and track.local_change.get("sha256") == sha:
            return
        change = {"sha256": sha, "seen_at": utcnow().isoformat(), "path": str(path)}
        self.store.update(
            track.id,
            lambda t: setattr(t, "local_change", change),
            note="re-exported with new audio after upload; not uploaded again",
        )
        log.warning(
            "%s: re-exported with different audio after '%s' was uploaded; the upload is kept "
            "as it is. To replace it: releaseosd remove %s --remote, then export again.",
            path,
            track.title,
            track.id,
        )

    def _sidecar(self, audio: Path) -> tuple[Sidecar | None, str | None]:
        own = sidecar_for(audio)
        defaults = folder_defaults_for(audio.parent)
        if own is None and defaults is None:
            return None, None
        try:
            return (
                load_sidecar(own, watch_root=self._sidecar_root(audio), folder_defaults=defaults),
                None,
            )
        except FileProblems as exc:
            return None, str(exc)

    # --- build (on the build pool) -------------------------------------------------------------

    def build(
        self,
        track_id: str,
        path: Path,
        sidecar: Sidecar,
        info: Any,
        reread_sidecar: bool = True,
    ) -> None:
        """Preview and artwork for a BUILDING track, then READY (or INVALID with the reason).
        Runs on the build pool in the daemon; `releaseosd upload` calls it inline (with a
        sidecar of its own making, so without `reread_sidecar`).

        The sidecar is read again when the build is done: an edit saved meanwhile (a release
        time added, a new title) must not be lost, and the watcher will not report it twice."""
        from releaseosd.media.build import build_assets
        from releaseosd.media.probe import AudioProblem

        config = self.config  # one config for the whole build, even if a reload swaps it
        out_dir = config.state_dir / "tracks" / track_id
        for _ in range(3):
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                built = build_assets(path, sidecar, config, out_dir)
            except AudioProblem as exc:
                self._finish_invalid(track_id, str(exc))
                return
            except Exception as exc:
                log.exception("%s: building the preview/artwork failed", path)
                self._finish_invalid(
                    track_id, f"{path}: could not build the preview or artwork: {exc}"
                )
                return
            if not reread_sidecar:
                break
            fresh, problems = self._sidecar(path)
            if problems is not None:
                self._finish_invalid(track_id, problems)
                return
            if fresh is None or _shapes_the_build(fresh) == _shapes_the_build(sidecar):
                sidecar = fresh or sidecar
                break
            sidecar = fresh  # edited in a way that changes the preview or artwork: again
        tags = asdict(built.info.tags) if hasattr(built.info, "tags") else {}
        meta = effective(config.defaults, sidecar, path, tags)
        meta["title"] = built.title if not sidecar.title else sidecar.title
        release_at = sidecar.release_at

        def finish(track: Track) -> None:
            track.title = str(meta["title"])
            track.metadata = meta
            track.sidecar_path = str(sidecar_for(path) or "") or None
            track.sha256 = built.sha256
            track.preview_path = str(built.preview)
            track.artwork_path = str(built.artwork)
            track.release_at = track.user_release or release_at
            track.state = State.READY
            track.last_error = None

        self.store.update(track_id, finish, note="preview and artwork built")
        log.info("%s: ready (%s)", path, meta["title"])
        self.on_ready(track_id)

    def _finish_invalid(self, track_id: str, message: str) -> None:
        log.warning("%s", message)
        self.store.transition(track_id, State.INVALID, last_error=message)

    # --- after upload --------------------------------------------------------------------------

    def _refresh_remote_metadata(self, track: Track, audio: Path) -> None:
        sidecar, problems = self._sidecar(audio)
        if problems is not None:
            self.store.update(
                track.id,
                lambda t: setattr(t, "last_error", problems),
                note="sidecar edited after upload has problems; nothing sent",
            )
            log.warning("%s", problems)
            return
        if sidecar is None:
            return
        tags = (track.probe or {}).get("tags") or {}
        meta = effective(self.config.defaults, sidecar, audio, tags)

        def apply(t: Track) -> None:
            t.metadata = meta
            t.title = str(meta["title"])
            t.last_error = None
            if t.state != State.RELEASED and t.user_release is None:
                t.release_at = sidecar.release_at

        self.store.update(track.id, apply, note="sidecar edited")
        self.on_metadata_changed(track.id)


def _shapes_the_build(sidecar: Sidecar) -> tuple[Any, ...]:
    """The sidecar fields the preview and artwork are made from."""
    return (
        sidecar.preview,
        sidecar.artwork,
        sidecar.title,
        sidecar.artist,
        sidecar.genre,
        sidecar.bpm,
        sidecar.key,
    )


def probe_dict(info: Any) -> dict[str, Any]:
    """A probe result as the store keeps it (plain JSON values)."""
    data = asdict(info)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}


def remove_built_files(config: Config, track_id: str) -> None:
    shutil.rmtree(config.state_dir / "tracks" / track_id, ignore_errors=True)


__all__ = ["Ingest", "audio_for_sidecar", "sha256_of"]
