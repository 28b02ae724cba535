"""Is an export finished? The decision alone: stat observations at clock times in, verdicts out.

No threads and no filesystem of its own: the caller feeds observations ("something happened at this
path", "time passed") with the time from its clock, and `stat` is injected, so every rule here is
testable with a fake clock and a fake stat.

The rule: a file is stable once its identity (size, mtime, inode) has been seen unchanged for
`stable_seconds`. The clock starts when the current identity is first *seen*, never from the file's
mtime, so a report can be late by one observation but never early. DAWs write long exports over many
seconds, patch headers at the end, or rename a temp file into place; all of those change the identity
and restart the wait.
"""

from __future__ import annotations

import enum
import os
import stat as stat_mod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RETRY_MAX_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What must stay the same for a file to count as unchanged."""

    size: int
    mtime_ns: int
    inode: int


StatFn = Callable[[Path], "FileIdentity | None"]
"""Returns the identity of a regular file, None when there is none (gone, or not a regular file);
may raise OSError when it cannot tell (e.g. permission denied), which counts as "no observation"."""


def stat_identity(path: Path) -> FileIdentity | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat_mod.S_ISREG(st.st_mode):
        return None
    return FileIdentity(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino)


class Phase(enum.Enum):
    WAITING = "waiting"  # identity seen at `since`; stable at since + stable_seconds
    DEFERRED = "deferred"  # on_stable said "not complete yet"; ask again at `retry_at`
    REPORTED = "reported"  # on_stable accepted this identity


@dataclass(slots=True)
class _Entry:
    identity: FileIdentity
    since: float
    phase: Phase = Phase.WAITING
    ever_reported: bool = False
    rejections: int = 0
    retry_at: float = 0.0


class StabilityTracker:
    """Tracks candidate files from first sight to "stable" and on to "gone".

    Inputs: `observe` (an event or a scan saw the path), `tick` (time passed: stat the unsettled
    files, return the ones due for the stable callback) and `result` (what the callback answered).
    Outputs: the due list from `tick`, and `take_gone()` — files that had been accepted and then
    disappeared. Files that vanish before being accepted are dropped without a word.
    """

    def __init__(
        self,
        stable_seconds: float,
        stat: StatFn = stat_identity,
        retry_max_seconds: float = DEFAULT_RETRY_MAX_SECONDS,
    ) -> None:
        if stable_seconds <= 0:
            raise ValueError(f"stable_seconds must be > 0, got {stable_seconds}")
        self.stable_seconds = stable_seconds
        # A retry never comes sooner than one stable period, whatever the cap says.
        self.retry_max_seconds = max(retry_max_seconds, stable_seconds)
        self._stat = stat
        self._entries: dict[Path, _Entry] = {}
        self._gone: list[Path] = []

    # -- inputs ---------------------------------------------------------------------------------

    def observe(self, path: Path, now: float) -> None:
        """Look at `path` now: start tracking it, restart its wait if it changed, or drop it."""
        entry = self._entries.get(path)
        try:
            identity = self._stat(path)
        except OSError:
            # Cannot tell (e.g. permission denied): an unconfirmed file must not count as unchanged,
            # so its wait restarts; an accepted one stays accepted until we can see it again.
            if entry is not None and entry.phase is not Phase.REPORTED:
                entry.phase = Phase.WAITING
                entry.since = now
            return
        if identity is None:
            if entry is not None:
                del self._entries[path]
                if entry.ever_reported:
                    self._gone.append(path)
            return
        if entry is None:
            self._entries[path] = _Entry(identity=identity, since=now)
        elif identity != entry.identity:
            entry.identity = identity
            entry.since = now
            entry.phase = Phase.WAITING
            entry.rejections = 0

    def tick(self, now: float) -> list[Path]:
        """Stat every unsettled file; return those due for the stable callback now."""
        due: list[Path] = []
        for path in [p for p, e in self._entries.items() if e.phase is not Phase.REPORTED]:
            self.observe(path, now)
            entry = self._entries.get(path)
            if entry is not None and now >= self._due_at(entry):
                due.append(path)
        return due

    def result(self, path: Path, accepted: bool, now: float) -> None:
        """Record the stable callback's answer for the identity that `tick` found stable."""
        entry = self._entries.get(path)
        if entry is None:
            return
        if accepted:
            entry.phase = Phase.REPORTED
            entry.ever_reported = True
            entry.rejections = 0
            return
        # Back off so a file that is never going to pass is not re-read every stable period.
        entry.rejections += 1
        delay = self.stable_seconds * 2.0 ** (entry.rejections - 1)
        entry.phase = Phase.DEFERRED
        entry.retry_at = now + min(delay, self.retry_max_seconds)

    def move(self, src: Path, dest: Path) -> None:
        """A folder renamed: the files tracked under `src` are tracked under `dest`, as they
        were (accepted ones stay accepted, and are reported gone from there if they go)."""
        for path in [p for p in self._entries if p.is_relative_to(src)]:
            entry = self._entries.pop(path)
            self._entries.setdefault(dest / path.relative_to(src), entry)

    def forget(self, paths: Iterable[Path]) -> None:
        """Stop tracking without reporting anything (the folder is no longer watched)."""
        for path in paths:
            self._entries.pop(path, None)

    # -- outputs --------------------------------------------------------------------------------

    def take_gone(self) -> list[Path]:
        """Accepted files that have disappeared since the last call."""
        gone, self._gone = self._gone, []
        return gone

    def next_due(self) -> float | None:
        """The earliest clock time at which a `tick` could return something."""
        times = [self._due_at(e) for e in self._entries.values() if e.phase is not Phase.REPORTED]
        return min(times, default=None)

    def unsettled(self) -> bool:
        """True while some file still needs watching tick by tick."""
        return any(e.phase is not Phase.REPORTED for e in self._entries.values())

    def pending(self) -> list[Path]:
        """Files seen but not (or no longer) accepted: waiting to settle or deferred."""
        return sorted(p for p, e in self._entries.items() if e.phase is not Phase.REPORTED)

    def phase(self, path: Path) -> Phase | None:
        entry = self._entries.get(path)
        return None if entry is None else entry.phase

    def known(self) -> list[Path]:
        return list(self._entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def _due_at(self, entry: _Entry) -> float:
        if entry.phase is Phase.DEFERRED:
            return entry.retry_at
        return entry.since + self.stable_seconds
