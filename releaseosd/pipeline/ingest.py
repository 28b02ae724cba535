"""Ingest: a finished file in a watched folder becomes a track record that is `ready` (or
`invalid` with a reason, or `pending` while its sidecar is missing).

The watcher calls `on_stable` from one thread. What happens there is cheap (a stat, the sidecar's
few bytes, a header probe); hashing, preview and artwork run on the build pool, in one pass over
the audio. An export whose stat and sidecar are as recorded is not read again: a restart with
nothing changed reads no audio and writes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from releaseosd.media.build import artwork_shows, build_shape
from releaseosd.media.formats import AUDIO_SUFFIXES, LOSSLESS_SUFFIXES, is_audio
from releaseosd.model.config import Config, outside_its_root
from releaseosd.model.events import Edited, EventBus
from releaseosd.model.metadata import metadata_for, stored_sidecar
from releaseosd.model.sidecar import (
    FOLDER_DEFAULTS_NAMES,
    MAX_SIDECAR_BYTES,
    SIDECAR_SUFFIXES,
    Sidecar,
    load_track_sidecar,
    sidecar_files,
    sidecar_for,
)
from releaseosd.model.states import State, TransitionError
from releaseosd.model.store import Store
from releaseosd.model.track import (
    ARTWORK_STALE,
    AudioStat,
    FolderStat,
    Retrying,
    Track,
    built_dir,
    gone_message,
    remove_built_files,
    utcnow,
)
from releaseosd.model.yamlfile import FileProblems

log = logging.getLogger("releaseosd.pipeline.ingest")

# An export that looks unfinished this many stable periods after it stopped changing is reported
# as truncated instead of being waited for silently.
INCOMPLETE_GRACE_STABLE_PERIODS = 10


@dataclass(frozen=True)
class SidecarRead:
    """A track's sidecar files as found now: the merged sidecar or the problems, and a digest of
    the files' bytes (None when there are none), which is what tells an edit from a re-save."""

    sidecar: Sidecar | None
    problems: str | None
    digest: str | None


def sidecar_digest(own: Path | None, defaults: Path | None) -> str | None:
    digest = hashlib.sha256()
    found = False
    for kind, path in (("folder", defaults), ("own", own)):
        if path is None:
            continue
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_SIDECAR_BYTES + 1)
        except OSError:
            data = b"(unreadable)"
        found = True
        digest.update(f"{kind}:{path.name}:{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest() if found else None


_ON_SOUNDCLOUD = (State.PROCESSING, State.SCHEDULED, State.PUBLISHED, State.RELEASED)


def _leaves_its_folder(track: Track) -> None:
    track.folder = None
    track.left_its_folder = True


def _found_in(track: Track, folder: FolderStat | None) -> None:
    """Its export was seen in `folder`: the record follows that folder again."""
    track.folder = folder
    track.left_its_folder = False


class Ingest:
    def __init__(
        self,
        config: Config,
        store: Store,
        builds: Executor,
        on_ready: Callable[[str], None] = lambda _id: None,
        on_metadata_changed: Callable[[str], None] = lambda _id: None,
        events: EventBus | None = None,
    ) -> None:
        self.config = config
        self.events = events or EventBus()
        self.store = store
        self.builds = builds
        self.on_ready = on_ready
        self.on_metadata_changed = on_metadata_changed
        # Held while a record's audio facts are decided (watcher thread and build pool): two
        # copies of one bounce finishing their builds together must not both become tracks.
        self._lock = threading.RLock()
        # When each export was first found stable but incomplete (monotonic seconds).
        self._incomplete_since: dict[Path, float] = {}

    def recover(self) -> None:
        """Builds cut off by a crash start over: the watcher's first scan reports their files."""
        for track in self.store.in_states(State.BUILDING):
            self.store.transition(track.id, State.PENDING, note="build interrupted; rebuilding")

    def missing_after_scan(self) -> None:
        """Once the first scan is done: a track whose export vanished while the daemon was down
        (a kill, then the file deleted) got no deletion event: one not yet uploaded would wait
        for ever without a reason. It is told gone now, as if the watcher had seen it go."""
        for track in self.store.in_states(State.PENDING, State.INVALID, State.READY):
            path = Path(track.audio_path)
            if track.last_error != gone_message(track) and self._stat_now(path) is None:
                self.on_gone(path)
        # One on SoundCloud stays as it is, but its export left a folder that is still there:
        # should that folder move later, the record must not go with it (chaos seed 1000).
        for track in self.store.in_states(*_ON_SOUNDCLOUD):
            path = Path(track.audio_path)
            if (
                not track.left_its_folder
                and track.folder is not None
                and self._stat_now(path) is None
                and FolderStat.of(path.parent) == track.folder
            ):
                self.on_gone(path)

    # --- watcher callbacks ---------------------------------------------------------------------

    def on_stable(self, path: Path) -> bool:
        try:
            if path.suffix.lower() in SIDECAR_SUFFIXES:
                self._sidecar_touched(path)
                return True
            if is_audio(path):
                return self._audio_stable(path)
        except Exception as exc:
            # One bad file must never stop the watcher or any other track; it still shows up.
            log.exception("%s: could not be ingested", path)
            self._unexpected(path, exc)
        return True

    def _sidecar_touched(self, path: Path) -> None:
        """A sidecar written or deleted: its tracks look again at what describes them now.

        The tracks are every one in its folder for a release.yaml, else the ones of the same
        name ("Night Drive.WAV" belongs to "Night Drive.yaml" too). A sidecar without a track
        yet waits for its audio's own report."""
        folder = path.absolute().parent
        stem = None if path.name.lower() in FOLDER_DEFAULTS_NAMES else path.stem
        for track in self.store.in_folder(folder, stem):
            if Path(track.audio_path).is_file():
                self._audio_stable(Path(track.audio_path))

    def on_gone(self, path: Path) -> None:
        if path.suffix.lower() in SIDECAR_SUFFIXES:
            # A deleted sidecar is an edit too: what is left (the folder's release.yaml, or
            # nothing: the track waits for a sidecar) is what describes the track now.
            try:
                self._sidecar_touched(path)
            except Exception:
                log.exception("%s: its deletion could not be taken in", path)
            return
        track = self.store.by_audio_path(path)
        if track is None or track.state in (State.BUILDING, State.REMOVED):
            return
        with self._lock:
            if track.duplicate_of:
                # A refused copy deleted, as its message asked: nothing is left to show.
                self.store.delete(track.id)
                remove_built_files(self.config.state_dir, track.id)
                log.info("%s: the refused copy is gone", path)
                return
            if track.folder is not None and FolderStat.of(path.parent) == track.folder:
                # Gone from a folder that is still there: the file was deleted or moved on its
                # own, not with its folder. Should that folder move later and a file of the
                # same name be saved in it, that is another export, not this one come back.
                self.store.update(track.id, _leaves_its_folder)
            if track.on_soundcloud:
                # What SoundCloud has stays as it is; if the file shows up elsewhere (a moved
                # folder), the same audio is recognised and the record follows it.
                log.info("%s: the export is gone; '%s' stays as it is", path, track.title)
            else:
                # Not on SoundCloud: it waits for its export to come back. A file gone is not a
                # track the producer removed (a drive unplugged, a share offline, a DAW that
                # deletes before it renders again).
                self._waits_for_its_file(track, path, "gone before upload")
        # Its copies and its siblings may carry the track on now (a folder copied elsewhere and
        # the original deleted; the other export of the same sidecar).
        related = self.store.duplicates_of(track.id) + self.store.in_folder(path.parent, path.stem)
        for other in {t.id: t for t in related if t.id != track.id}.values():
            self.builds.submit(self.recheck, Path(other.audio_path))

    def on_folder_moved(self, src: Path, dest: Path, left: Collection[Path]) -> None:
        """A folder renamed or moved inside the watch folders, seen at both ends: the records of
        the exports in it follow them now, whatever changed in it meanwhile (a new mix saved, a
        sidecar edited). Left to the gone report, a copy of a track elsewhere could take it over
        before its export is found again, and the export would then be refused as a copy of its
        own copy (chaos seed 1000).

        The move is a fact whatever the disk holds by the time it is handled: the records follow
        even when the new place is already gone again. Moves come in the order they were made,
        so of a swap (A to tmp, B to A, tmp to B) each record ends where its export is; had they
        waited for their file to be at each step, the record of A would have stayed at A's path
        and taken B's export for its own re-export. An export gone from its new place is
        reported gone there (the watcher follows the move too).

        A record whose export had left the folder before it moved stays where its file was:
        `left` are the files the watcher saw deleted or renamed away just before the move, and
        a record is marked when its file is reported gone from a folder still there. Following
        the folder, it would claim a place where no such file ever was, and a new song saved
        there under that name would count as its re-export (chaos seeds 1000, 1001)."""
        src, dest = src.absolute(), dest.absolute()
        gone_before = {p.absolute() for p in left}
        with self._lock:
            for track in self.store.under(src):
                if track.left_its_folder:
                    continue
                if Path(track.audio_path).absolute() in gone_before:
                    self.store.update(track.id, _leaves_its_folder)
                    continue
                new = dest / Path(track.audio_path).relative_to(src)
                if track.state == State.REMOVED:
                    stat = self._stat_now(new)
                    if stat is not None and track.audio_stat != stat:
                        continue  # another export where the removed one was: a new track
                log.info("%s: moved with its folder from %s", new, track.audio_path)
                self.store.update(track.id, self._folder_moved(src, dest, new), note="moved")

    def _folder_moved(self, src: Path, dest: Path, path: Path) -> Callable[[Track], None]:
        """A record following its folder's rename: the same directory, wherever it is now."""
        root = str(self.config.root_for(path))
        folder = FolderStat.of(path.parent)

        def move(track: Track) -> None:
            track.audio_path = str(path)
            _found_in(track, track.folder or folder)
            track.watch_root = root
            if track.sidecar_path is not None and Path(track.sidecar_path).is_relative_to(src):
                track.sidecar_path = str(dest / Path(track.sidecar_path).relative_to(src))

        return move

    # --- audio ---------------------------------------------------------------------------------

    def _sidecar_root(self, audio: Path) -> Path:
        """The folder this export's sidecar, artwork and links must stay inside (see
        Config.root_for), with the root its track was found in."""
        if self.config.watch_root_of(audio) is None:
            track = self.store.by_audio_path(audio.absolute())
            return self.config.root_for(audio, track.watch_root if track is not None else None)
        return self.config.root_for(audio)

    def recheck(self, path: Path) -> None:
        """`releaseosd retry` on an invalid or waiting track: look at the export again even if
        nothing about it changed (the original of a duplicate may be gone, a fault fixed)."""
        try:
            self._audio_stable(path, recheck=True)
        except Exception as exc:
            log.exception("%s: could not be ingested", path)
            self._unexpected(path, exc)

    def _audio_stable(self, path: Path, recheck: bool = False) -> bool:
        from releaseosd.media.probe import AudioIncomplete, AudioProblem, probe

        with self._lock:
            path = path.absolute()
            track = self.store.by_audio_path(path)
            if track is not None and track.state == State.BUILDING:
                return True  # a running build re-reads the sidecar when it finishes
            root = self._sidecar_root(path)
            outside = outside_its_root(path, root)
            if outside is not None:
                self._mark_invalid(path, track, outside)
                return True
            stat = self._checked_stat(path, root)
            if stat is None:
                return True  # gone again, or swapped meanwhile: the watcher reports it again
            if track is not None and track.state == State.REMOVED:
                if track.audio_stat == stat:
                    return True  # the very file the producer removed stays left alone
                if track.removed_mid_write:
                    # The bounce that was being written when the producer removed the track:
                    # removed too. Only a later export at this path is a new track.
                    def finished(t: Track) -> None:
                        t.audio_stat, t.removed_mid_write = stat, False

                    self.store.update(
                        track.id, finished, note="the export being written when it was removed"
                    )
                    return True
                if track.audio_stat is None:
                    # Removed before releaseosd kept file stats: whether this is that file
                    # takes a read.
                    self.builds.submit(self._check_removed, track.id, path, stat)
                    return True
                track = None  # a new export where a removed one was: a new track
            if (
                not recheck
                and track is not None
                and track.audio_stat == stat
                and track.sha256 is not None
            ):
                # The audio is as recorded. Its sidecar is not even parsed when its bytes are
                # what the record was last given (a restart's scan).
                known = track.sidecar_digest if track.state != State.PENDING else None
                self._sidecar_changed(track, path, self.read_sidecar(path, unless=known))
                return True
            read = self.read_sidecar(path)
            if track is None:
                moved = self._moved_here(path, stat)
                if moved is not None and moved.state == State.REMOVED:
                    return True  # the file the producer removed, moved: still left alone
                if moved is not None and moved.state == State.PENDING:
                    # It waited for its file (or its sidecar): look at it afresh where it is now.
                    return self._audio_stable(path, recheck=True)
                if moved is not None:
                    self._sidecar_changed(moved, path, read)
                    return True
                carried = self._moved_with_its_folder(path, read.digest)
                if carried is not None:
                    # Its folder moved and the export was saved again meanwhile: the record
                    # follows, and the new audio is looked at as that track's re-export (its
                    # sidecar as an edit).
                    return self._audio_stable(path, recheck=True)
            try:
                info = probe(path)
            except AudioIncomplete as exc:
                return self._still_incomplete(path, track, str(exc))
            except AudioProblem as exc:
                self._incomplete_since.pop(path, None)
                self._mark_invalid(path, track, str(exc))
                return True
            self._incomplete_since.pop(path, None)
            if track is not None and track.on_soundcloud:
                self._sidecar_changed(track, path, read)
                # Saved again after upload: whether it is other audio takes a full read.
                self.builds.submit(self._check_resaved, track.id, path, stat)
                return True
            if read.problems is not None:
                self._invalid_sidecar(path, track, read)
                return True
            if read.sidecar is None:
                waiting = self._waiting_for_sidecar(path, track)
                # Even without a sidecar a copy of another track's audio is one to report now.
                self.builds.submit(self._identify, waiting.id, path, stat)
                return True
            sibling = self._sidecar_taken(path, track)
            if sibling is not None:
                self._mark_invalid(path, track, sibling)
                return True
            if track is None:
                track = self.store.insert(self._new_track(path))
            try:
                self.start_build(track.id, path, read.sidecar, info, stat, read.digest)
            except TransitionError:
                # The scheduler took it for upload meanwhile: the edit goes the remote way.
                fresh = self.store.get(track.id)
                if fresh is not None:
                    self._sidecar_changed(fresh, path, read)
            return True

    @staticmethod
    def _checked_stat(path: Path, root: Path) -> AudioStat | None:
        """The export's stat, if the file at `path` is the one inside its root that the
        containment check saw: a link swapped in between the check and the stat is not read."""
        try:
            through_path = os.stat(path)
            real = path.resolve(strict=True)
            at_real = os.stat(real)
        except (FileNotFoundError, NotADirectoryError, RuntimeError):
            return None
        if (through_path.st_dev, through_path.st_ino) != (at_real.st_dev, at_real.st_ino):
            return None
        if not real.is_relative_to(root):
            return None
        return AudioStat.of(through_path)

    def _sidecar_taken(self, path: Path, track: Track | None) -> str | None:
        """Why this export is not the track its sidecar describes, or None: one sidecar is one
        track, so of "Night Drive.wav" and "Night Drive.mp3" beside "Night Drive.yaml" only one
        goes up: one already on SoundCloud, else a lossless one, else the first by name."""
        own = sidecar_for(path)
        if own is None:
            return None
        seen = {(os.stat(path).st_dev, os.stat(path).st_ino)}
        others: list[Path] = []
        for suffix in sorted(AUDIO_SUFFIXES):
            for variant in (suffix, suffix.upper()):
                candidate = path.with_suffix(variant)
                try:
                    st = os.stat(candidate)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    others.append(candidate)
        if not others:
            return None

        def rank(audio: Path) -> tuple[bool, bool, str]:
            record = track if audio == path else self.store.by_audio_path(audio.absolute())
            up = record is not None and record.on_soundcloud and record.state != State.REMOVED
            return (not up, audio.suffix.lower() not in LOSSLESS_SUFFIXES, audio.name)

        winner = min([path, *others], key=rank)
        if winner == path:
            return None
        return (
            f"{path}: {own.name} describes {winner.name} as well; one sidecar is one track, so "
            f"only {winner.name} is uploaded. Give this export a sidecar of its own name, or "
            "remove one of the two."
        )

    def _check_removed(self, track_id: str, path: Path, stat: AudioStat) -> None:
        """On the build pool: an export at the path of a track removed before file stats were
        kept. The same audio stays removed (now cheaply recognised); other audio is a new
        track."""
        from releaseosd.media.build import content_digests
        from releaseosd.media.probe import AudioProblem

        try:
            sha, audio_digest = content_digests(path)
        except AudioProblem:
            sha = audio_digest = ""
        with self._lock:
            removed = self.store.get(track_id)
            if removed is None or removed.state != State.REMOVED:
                return
            same = bool(sha) and sha in (removed.sha256, removed.soundcloud.sha256)
            if same or (bool(audio_digest) and audio_digest == removed.audio_digest):
                self.store.update(track_id, lambda t: setattr(t, "audio_stat", stat))
                return
            current = self.store.by_audio_path(path)
            if current is not None and current.id != track_id:
                return  # a new record took this path meanwhile
            self.store.insert(self._new_track(path))
        self.recheck(path)

    def _unexpected(self, path: Path, exc: Exception) -> None:
        """An export that broke ingest in a way nobody foresaw is shown, not silently skipped."""
        if not is_audio(path):
            return
        message = (
            f"{path}: could not be read ({type(exc).__name__}: {exc}); releaseosd tries again when "
            "the file changes ('releaseosd retry' to try now)"
        )
        try:
            with self._lock:
                self._mark_invalid(
                    path.absolute(), self.store.by_audio_path(path.absolute()), message
                )
        except Exception:
            log.exception("%s: could not record the problem either", path)

    def _waiting_for_sidecar(self, path: Path, track: Track | None) -> Track:
        note = f"waiting for its sidecar {path.with_suffix('.yaml').name}"
        if track is None:
            return self.store.insert(self._new_track(path, state=State.PENDING, last_error=note))
        return self.store.transition(
            track.id, State.PENDING, note="" if track.last_error == note else note, last_error=note
        )

    def _identify(self, track_id: str, path: Path, stat: AudioStat) -> None:
        """On the build pool: the digests of an export that waits for its sidecar, so that a
        copy of another track's audio is reported at once and a restart does not read it again."""
        from releaseosd.media.build import content_digests
        from releaseosd.media.probe import AudioProblem

        try:
            sha, audio_digest = content_digests(path)
        except AudioProblem as exc:
            with self._lock:
                track = self.store.get(track_id)
                if track is not None and track.state == State.PENDING:
                    self._mark_invalid(path, track, str(exc))
            return
        with self._lock:
            track = self.store.get(track_id)
            if track is None or track.state != State.PENDING or track.audio_path != str(path):
                return
            if self._stat_now(path) != stat:
                return  # changed meanwhile; the watcher reports it again
            twin = self.twin_of(track, audio_digest, sha)
            if twin is not None and not Path(twin.audio_path).exists():
                if holds(twin, audio_digest, sha):
                    self._adopted_by(twin, track, path, stat)
                    return
                twin = None  # only its gone export's re-export: this copy is all that is left
            if twin is not None:
                self._duplicate(track, twin, path, sha, audio_digest, stat, track.sidecar_digest)
                return

            def identified(t: Track) -> None:
                t.sha256, t.audio_digest, t.audio_stat = sha, audio_digest, stat

            self.store.update(track_id, identified)

    @staticmethod
    def _stat_now(path: Path) -> AudioStat | None:
        try:
            return AudioStat.of(os.stat(path))
        except FileNotFoundError:
            return None

    def _duplicate(
        self,
        track: Track,
        twin: Track,
        path: Path,
        sha: str,
        audio_digest: str,
        stat: AudioStat,
        sidecar_digest: str | None,
    ) -> None:
        message = twin_message(path, twin)
        log.warning("%s", message)

        def duplicate(t: Track) -> None:
            t.state = State.INVALID
            t.last_error = message
            t.duplicate_of = twin.id
            t.sha256, t.audio_digest, t.audio_stat = sha, audio_digest, stat
            t.sidecar_digest = sidecar_digest

        self.store.update(track.id, duplicate)

    def _invalid_sidecar(self, path: Path, track: Track | None, read: SidecarRead) -> None:
        log.warning("%s", read.problems)
        if track is None:
            self.store.insert(
                self._new_track(
                    path,
                    state=State.INVALID,
                    last_error=read.problems,
                    sidecar_digest=read.digest,
                )
            )
        else:
            self.store.transition(
                track.id, State.INVALID, last_error=read.problems, sidecar_digest=read.digest
            )

    def _moved_here(self, path: Path, stat: AudioStat) -> Track | None:
        """A record whose export is now at `path`: the same file (device, inode, size, mtime)
        gone from where it was, as when a folder is moved or renamed."""
        for track in self.store.by_inode(stat.device, stat.inode):
            if track.audio_stat == stat and not Path(track.audio_path).exists():
                log.info("%s: moved from %s", path, track.audio_path)
                return self.store.update(track.id, self._moved_to(path), note="moved")
        return None

    def _moved_with_its_folder(self, path: Path, sidecar_digest: str | None) -> Track | None:
        """A record whose export went away from a file of this name, and which the folder here
        held: the folder moved, and the audio in it was saved again on the way (so it is not
        the same file any more, and no inode of the file says where it went).

        The folder is known by its sidecar files, here unchanged, or by the directory itself: a
        moved or renamed folder is the same directory, even when the sidecar or the folder's
        release.yaml was edited or deleted while it moved (chaos seeds 1005, 1014, 1017)."""
        folder = FolderStat.of(path.parent)
        for track in self.store.by_file_name(path.name):
            if (
                track.state == State.REMOVED
                or track.duplicate_of
                or Path(track.audio_path).exists()
            ):
                continue
            if sidecar_digest is not None and track.sidecar_digest == sidecar_digest:
                log.info("%s: moved with its sidecar from %s", path, track.audio_path)
            elif (
                folder is not None
                and track.folder == folder
                and Path(track.audio_path).parent != path.parent
            ):
                log.info("%s: moved with its folder from %s", path, track.audio_path)
            else:
                continue
            return self.store.update(track.id, self._moved_to(path), note="moved")
        return None

    def _moved_to(self, path: Path) -> Callable[[Track], None]:
        root = str(self.config.root_for(path))

        folder = FolderStat.of(path.parent)

        def move(track: Track) -> None:
            track.audio_path = str(path)
            _found_in(track, folder)
            track.watch_root = root  # its sidecar's artwork now stays inside the new folder
            if track.sidecar_path is not None:
                track.sidecar_path = str(sidecar_for(path) or "") or None

        return move

    def _sidecar_changed(self, track: Track, path: Path, read: SidecarRead) -> None:
        """The audio is as recorded; act on the sidecar only if its files changed (or a build
        is owed: one cut off by a crash, or asked for by an upload that found it stale)."""
        owed = track.state == State.PENDING and read.sidecar is not None
        if read.digest == track.sidecar_digest and not owed:
            return
        if track.on_soundcloud:
            self._edited_after_upload(track, path, read)
            return
        if read.problems is not None:
            self._invalid_sidecar(path, track, read)
            return
        if read.sidecar is None and track.duplicate_of:
            # A refused copy stays one when its sidecar goes: it is the same audio as a track,
            # and "waiting for its sidecar" would promise that one makes it a track of its own.
            self.store.update(track.id, lambda t: setattr(t, "sidecar_digest", None))
            return
        if read.sidecar is None:
            self._waiting_for_sidecar(path, track)
            return
        if (
            track.state in (State.READY, State.NEEDS_LOGIN)
            and build_shape(read.sidecar) == build_shape(stored_sidecar(track))
            and track.preview_path
        ):
            # Nothing the preview or artwork show changed: new metadata, same build.
            self._take_sidecar(track.id, path, read)
            return
        from releaseosd.media.probe import AudioProblem, probe

        try:
            info = probe(path)
        except AudioProblem as exc:
            self._mark_invalid(path, track, str(exc))
            return
        stat = track.audio_stat or AudioStat.of(os.stat(path))
        try:
            self.start_build(
                track.id, path, read.sidecar, info, stat, read.digest, note="sidecar edited"
            )
            self.events.emit(Edited(track_id=track.id, title=track.title, on_soundcloud=False))
        except TransitionError:
            fresh = self.store.get(track.id)
            if fresh is not None and fresh.on_soundcloud:
                self._edited_after_upload(fresh, path, read)

    def _take_sidecar(self, track_id: str, path: Path, read: SidecarRead) -> None:
        assert read.sidecar is not None
        sidecar = read.sidecar

        def apply(t: Track) -> None:
            t.sidecar = sidecar.model_dump(mode="json", exclude_unset=True)
            t.sidecar_digest = read.digest
            t.sidecar_path = str(sidecar_for(path) or "") or None
            t.metadata = metadata_for(t, self.config, sidecar, path)
            t.title = str(t.metadata["title"])
            t.last_error = None
            take_release_time(t, sidecar)

        edited = self.store.update(track_id, apply, note="sidecar edited")
        self.events.emit(Edited(track_id=track_id, title=edited.title, on_soundcloud=False))
        self.on_ready(track_id)

    def _edited_after_upload(self, track: Track, path: Path, read: SidecarRead) -> None:
        """A sidecar edited once the track is on SoundCloud: record it and let the publisher
        send what differs from what SoundCloud was told. Nothing else is ever sent."""
        if track.sidecar_digest is None and track.sidecar is None:
            # A record from before releaseosd kept sidecar digests: take the files as they are
            # now as what was uploaded, rather than treat every old track as edited.
            self.store.update(track.id, lambda t: setattr(t, "sidecar_digest", read.digest))
            return
        if read.problems is not None:
            problems = read.problems

            def refused(t: Track) -> None:
                t.last_error = problems
                t.sidecar_digest = read.digest

            self.store.update(
                track.id, refused, note="sidecar edited after upload has problems; nothing sent"
            )
            log.warning("%s", problems)
            return
        if read.sidecar is None:
            # The sidecar was deleted: what SoundCloud has stays as it is.
            self.store.update(track.id, lambda t: setattr(t, "sidecar_digest", None))
            return
        sidecar = read.sidecar
        before = stored_sidecar(track)
        new_art = before is not None and artwork_shows(before) != artwork_shows(sidecar)

        def apply(t: Track) -> None:
            previous = stored_sidecar(t)
            t.sidecar = sidecar.model_dump(mode="json", exclude_unset=True)
            t.sidecar_digest = read.digest
            t.metadata = metadata_for(t, self.config, sidecar, path)
            t.title = str(t.metadata["title"])
            t.last_error = None
            if t.state != State.RELEASED:
                take_release_time(t, sidecar)
            if previous is not None and artwork_shows(previous) != artwork_shows(sidecar):
                t.artwork_stale = True
            t.sync = Retrying(due_at=utcnow())

        note = "sidecar edited"
        if new_art:
            note += f"; {ARTWORK_STALE}"
            log.warning("%s: %s", track.title, ARTWORK_STALE)
        edited = self.store.update(track.id, apply, note=note)
        self.events.emit(Edited(track_id=track.id, title=edited.title, on_soundcloud=True))
        self.on_metadata_changed(track.id)

    def _check_resaved(self, track_id: str, path: Path, stat: AudioStat) -> None:
        """On the build pool: an export saved again after its upload. The same bytes, or the
        same audio under other tags, change nothing; other audio is reported, never uploaded."""
        from releaseosd.media.build import content_digests
        from releaseosd.media.probe import AudioProblem

        try:
            sha, audio_digest = content_digests(path)
        except AudioProblem as exc:
            log.warning("%s: %s; the upload is kept as it is", path, exc)
            return
        with self._lock:
            track = self.store.get(track_id)
            if track is None or track.audio_path != str(path):
                return
            if sha == track.sha256 or audio_digest == track.audio_digest:

                def same(t: Track) -> None:
                    t.audio_stat = stat
                    _found_in(t, t.folder or FolderStat.of(path.parent))
                    t.audio_digest = t.audio_digest or audio_digest
                    t.local_change = None

                self.store.update(track_id, same)
                return
            # The record keeps the stat of the file as it now is (hashed just now): a restart
            # does not read it again, and a moved folder is followed with it.
            if track.local_change and track.local_change.get("sha256") == sha:
                self.store.update(track_id, lambda t: setattr(t, "audio_stat", stat))
                return
            change = {
                "sha256": sha,
                "audio_digest": audio_digest,
                "seen_at": utcnow().isoformat(),
                "path": str(path),
            }

            def changed(t: Track) -> None:
                t.local_change = change
                t.audio_stat = stat

            self.store.update(
                track_id,
                changed,
                note="re-exported with new audio after upload; not uploaded again",
            )
        log.warning(
            "%s: re-exported with different audio after '%s' was uploaded; the upload is kept "
            "as it is. To replace it: releaseosd remove %s --remote, then export again.",
            path,
            track.title,
            track_id,
        )

    def start_build(
        self,
        track_id: str,
        path: Path,
        sidecar: Sidecar,
        info: Any,
        stat: AudioStat,
        sidecar_digest: str | None,
        note: str = "",
        reread_sidecar: bool = True,
    ) -> None:
        """BUILDING now; preview and artwork on the build pool (inline for `releaseosd upload`)."""
        folder = FolderStat.of(path.parent)

        def building(t: Track) -> None:
            if t.state == State.FAILED:
                # The producer changed the export or its sidecar: a fresh set of attempts.
                t.attempts = t.offline_attempts = 0
            t.state = State.BUILDING
            t.waited_in = None
            # The file this build reads: a folder moved meanwhile is followed by it.
            t.audio_stat = stat
            _found_in(t, folder)
            t.probe = probe_dict(info)
            t.last_error = None
            t.duplicate_of = None

        self.store.update(track_id, building, note=note)
        self.builds.submit(
            self.build, track_id, path, sidecar, info, stat, sidecar_digest, reread_sidecar
        )

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

    def _new_track(self, path: Path, **fields: Any) -> Track:
        return Track(
            audio_path=str(path),
            folder=FolderStat.of(path.parent),
            title=path.stem,
            watch_root=str(self.config.root_for(path)),
            **fields,
        )

    def _mark_invalid(self, path: Path, track: Track | None, message: str) -> None:
        log.warning("%s", message)
        if track is None:
            self.store.insert(self._new_track(path, state=State.INVALID, last_error=message))
            return
        if not track.on_soundcloud:
            self.store.transition(track.id, State.INVALID, last_error=message)

    def read_sidecar(self, audio: Path, unless: str | None = None) -> SidecarRead:
        """The audio's sidecar files, parsed, unless their digest is `unless` (then only the
        digest is read: nothing changed)."""
        files = sidecar_files(audio)
        digest = sidecar_digest(*files)
        if digest is None or (unless is not None and digest == unless):
            return SidecarRead(None, None, digest)
        try:
            sidecar = load_track_sidecar(audio, self._sidecar_root(audio), files=files)
        except FileProblems as exc:
            return SidecarRead(None, str(exc), digest)
        return SidecarRead(sidecar, None, digest)

    # --- build (on the build pool) -------------------------------------------------------------

    def build(
        self,
        track_id: str,
        path: Path,
        sidecar: Sidecar,
        info: Any,
        stat: AudioStat,
        sidecar_digest: str | None,
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
        out_dir = built_dir(config.state_dir, track_id)
        for _ in range(3):
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                built = build_assets(path, sidecar, config, out_dir)
            except AudioProblem as exc:
                self._finish_invalid(track_id, str(exc), path=path)
                return
            except Exception as exc:
                log.exception("%s: building the preview/artwork failed", path)
                self._finish_invalid(
                    track_id, f"{path}: could not build the preview or artwork: {exc}", path=path
                )
                return
            if not reread_sidecar:
                break
            fresh = self.read_sidecar(path)
            if fresh.problems is not None:
                self._finish_invalid(track_id, fresh.problems, fresh.digest)
                return
            if fresh.sidecar is None or build_shape(fresh.sidecar) == build_shape(sidecar):
                sidecar = fresh.sidecar or sidecar
                sidecar_digest = fresh.digest if fresh.sidecar else sidecar_digest
                break
            sidecar, sidecar_digest = fresh.sidecar, fresh.digest  # edited in a way that shows
        with self._lock:
            self._finish(track_id, path, sidecar, sidecar_digest, stat, built)

    def _finish(
        self,
        track_id: str,
        path: Path,
        sidecar: Sidecar,
        sidecar_digest: str | None,
        stat: AudioStat,
        built: Any,
    ) -> None:
        track = self.store.get(track_id)
        if track is None or track.state != State.BUILDING:
            return  # removed (or taken elsewhere) while it was building
        if self._left_while_built(track, path):
            return
        if self._stat_now(path) != stat:
            # Written to while it was read: these hashes describe no file. The watcher reports the
            # new export once it is stable.
            self.store.transition(
                track_id, State.PENDING, note="the export changed while it was built; waiting"
            )
            return
        twin = self.twin_of(track, built.audio_digest, built.sha256)
        if twin is not None and not Path(twin.audio_path).exists():
            if holds(twin, built.audio_digest, built.sha256):
                self._adopted_by(twin, track, path, stat)
                return
            twin = None  # only its gone export's re-export: this copy is all that is left
        if twin is not None:
            self._duplicate(
                track, twin, path, built.sha256, built.audio_digest, stat, sidecar_digest
            )
            return
        config = self.config

        def finish(t: Track) -> None:
            t.probe = probe_dict(built.info)
            t.sidecar = sidecar.model_dump(mode="json", exclude_unset=True)
            t.sidecar_digest = sidecar_digest
            t.sidecar_path = str(sidecar_for(path) or "") or None
            t.metadata = metadata_for(t, config, sidecar, path)
            t.title = str(t.metadata["title"])
            t.sha256 = built.sha256
            t.audio_digest = built.audio_digest
            t.audio_stat = stat
            t.built_shape = build_shape(sidecar)
            t.preview_path = str(built.preview)
            t.preview_sha256 = built.preview_sha256
            t.artwork_path = str(built.artwork)
            take_release_time(t, sidecar)
            t.state = State.READY
            t.last_error = None

        self.store.update(track_id, finish, note="preview and artwork built")
        log.info("%s: ready (%s)", path, track.title)
        self.on_ready(track_id)

    def twin_of(self, track: Track, audio_digest: str, sha256: str) -> Track | None:
        """The one other track with this very audio, if any: that is the copy ever uploaded.
        Identity is the decoded audio (a re-tagged copy, a bounce saved twice) or the exact bytes
        (records from before decoded digests)."""
        candidates = {t.id: t for t in self.store.by_audio_digest(audio_digest)}
        candidates.update({t.id: t for t in self.store.by_sha256(sha256)})
        # A track's export holding this audio as a re-export (reported, not uploaded) is that
        # export's track too: a copy of the file is a copy, not a new track.
        for digest in (audio_digest, sha256):
            candidates.update({t.id: t for t in self.store.by_local_change(digest)})
        for other in sorted(candidates.values(), key=lambda t: (t.created_at, t.id)):
            if other.id != track.id and other.state != State.REMOVED and not other.duplicate_of:
                return other
        return None

    def _adopted_by(self, twin: Track, stray: Track, path: Path, stat: AudioStat) -> None:
        """The audio of an existing track reappeared here (a folder copied elsewhere and the
        original deleted): the existing record follows it, with its history and whatever it
        sent; the record made for the copy goes. Its sidecar here is then read as an edit (on
        SoundCloud) or built (not yet uploaded)."""
        log.info("%s: the same audio as '%s', whose file is gone; it moved here", path, twin.title)
        move = self._moved_to(path)
        local = not twin.on_soundcloud

        def follow(t: Track) -> None:
            move(t)
            t.audio_stat = stat
            if local:
                t.state = State.PENDING  # built again below, from the file as it is here

        self.store.update(twin.id, follow, note=f"moved (found again as {path.name})")
        self.store.delete(stray.id)
        remove_built_files(self.config.state_dir, stray.id)
        moved = self.store.get(twin.id)
        if moved is not None:
            self._sidecar_changed(moved, path, self.read_sidecar(path))

    def _left_while_built(self, track: Track, path: Path) -> bool:
        """Whether the export this build read is no longer where it was: its folder moved (the
        record followed it: built again from there) or it was deleted (it waits for its file,
        as any export gone before its upload does, and is recognised where it shows up)."""
        if track.audio_path != str(path):
            self.store.transition(
                track.id, State.PENDING, note="moved while it was built; building again"
            )
            self.builds.submit(self.recheck, Path(track.audio_path))
            return True
        if self._stat_now(path) is None:
            self._waits_for_its_file(track, path, "gone while it was built")
            return True
        return False

    def _waits_for_its_file(self, track: Track, path: Path, when: str) -> None:
        """An export gone before its upload: the track waits for it, saying so."""
        self.store.transition(
            track.id, State.PENDING, note=f"{path.name} is gone", last_error=gone_message(track)
        )
        log.info("%s: %s; '%s' waits for it", path, when, track.title)

    def _finish_invalid(
        self, track_id: str, message: str, digest: str | None = None, path: Path | None = None
    ) -> None:
        with self._lock:
            track = self.store.get(track_id)
            if track is None or track.state != State.BUILDING:
                return  # removed (or taken elsewhere) while it was building
            if path is not None and self._left_while_built(track, path):
                return  # what failed was reading a file that is not there any more
            log.warning("%s", message)

            def invalid(t: Track) -> None:
                if t.state == State.BUILDING:  # not if it was removed meanwhile
                    t.state = State.INVALID
                    t.last_error = message
                    t.sidecar_digest = digest if digest is not None else t.sidecar_digest

            self.store.update(track_id, invalid)


def holds(track: Track, audio_digest: str, sha256: str) -> bool:
    """Whether this is the audio the track itself was built (or uploaded) with, not only a
    re-export its export held later: only then may its record follow a copy of it."""
    return (bool(audio_digest) and audio_digest == track.audio_digest) or sha256 in (
        track.sha256,
        track.soundcloud.sha256,
    )


def take_release_time(track: Track, sidecar: Sidecar) -> None:
    """The sidecar's release_at on the record, unless `releaseosd release` set one (that wins).
    A release time taken out of the sidecar never makes a track public early (an autosave while
    the time is retyped, a file cut short): it is held private until it is told when."""
    if track.user_release is not None:
        track.release_at = track.user_release
        return
    track.hold_private = sidecar.release_at is None and (
        track.hold_private or track.release_at is not None
    )
    track.release_at = sidecar.release_at


def twin_message(path: Path, twin: Track) -> str:
    return (
        f"{path}: the same audio as '{twin.title}' ({twin.audio_path}); "
        "it is not uploaded twice. Delete one of the copies."
    )


def probe_dict(info: Any) -> dict[str, Any]:
    """A probe result as the store keeps it (plain JSON values)."""
    data = asdict(info)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}


__all__ = ["Ingest", "twin_message"]
