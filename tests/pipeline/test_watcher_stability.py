"""The pure "is it finished?" rules: a fake clock (plain numbers) and a fake stat, no threads."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from releaseosd.pipeline.stability import FileIdentity, Phase, StabilityTracker

S = 2.0
WAV = Path("/exports/song.wav")


class FakeDisk:
    """What the tracker's stat sees; tests change it between observations."""

    def __init__(self) -> None:
        self.files: dict[Path, FileIdentity] = {}
        self.unreadable: set[Path] = set()
        self.calls = 0

    def stat(self, path: Path) -> FileIdentity | None:
        self.calls += 1
        if path in self.unreadable:
            raise PermissionError(13, "Permission denied", str(path))
        return self.files.get(path)

    def write(self, path: Path, size: int, mtime_ns: int, inode: int = 1) -> None:
        self.files[path] = FileIdentity(size=size, mtime_ns=mtime_ns, inode=inode)


@pytest.fixture
def disk() -> FakeDisk:
    return FakeDisk()


@pytest.fixture
def tracker(disk: FakeDisk) -> StabilityTracker:
    return StabilityTracker(S, disk.stat, retry_max_seconds=10.0)


def test_stable_after_exactly_stable_seconds(disk: FakeDisk, tracker: StabilityTracker) -> None:
    disk.write(WAV, 100, 1)
    tracker.observe(WAV, 10.0)
    assert tracker.tick(10.0 + S - 0.001) == []
    assert tracker.next_due() == 10.0 + S
    assert tracker.tick(10.0 + S) == [WAV]


def test_size_change_restarts_the_wait(disk: FakeDisk, tracker: StabilityTracker) -> None:
    disk.write(WAV, 100, 1)
    tracker.observe(WAV, 0.0)
    disk.write(WAV, 200, 1)  # same mtime: some filesystems have coarse timestamps
    assert tracker.tick(1.5) == []
    assert tracker.tick(S + 0.1) == []  # would have been due, had the size not changed at 1.5
    assert tracker.tick(1.5 + S) == [WAV]


def test_mtime_change_restarts_the_wait(disk: FakeDisk, tracker: StabilityTracker) -> None:
    disk.write(WAV, 100, 1)
    tracker.observe(WAV, 0.0)
    disk.write(WAV, 100, 2)  # header patched in place at the end of an export: same size
    assert tracker.tick(1.0) == []
    assert tracker.tick(S) == []
    assert tracker.tick(1.0 + S) == [WAV]


def test_new_inode_restarts_the_wait(disk: FakeDisk, tracker: StabilityTracker) -> None:
    disk.write(WAV, 100, 1, inode=1)
    tracker.observe(WAV, 0.0)
    disk.write(WAV, 100, 1, inode=2)  # re-export renamed over the old file
    assert tracker.tick(1.0) == []
    assert tracker.tick(1.0 + S) == [WAV]


def test_file_gone_before_stable_is_dropped_quietly(
    disk: FakeDisk, tracker: StabilityTracker
) -> None:
    disk.write(WAV, 100, 1)
    tracker.observe(WAV, 0.0)
    del disk.files[WAV]
    assert tracker.tick(S + 1) == []
    assert tracker.take_gone() == []
    assert tracker.pending() == []
    assert WAV not in tracker


def test_accepted_file_that_disappears_is_reported_gone_once(
    disk: FakeDisk, tracker: StabilityTracker
) -> None:
    disk.write(WAV, 100, 1)
    tracker.observe(WAV, 0.0)
    assert tracker.tick(S) == [WAV]
    tracker.result(WAV, True, S)
    assert tracker.pending() == []
    del disk.files[WAV]
    tracker.observe(WAV, S + 1)
    assert tracker.take_gone() == [WAV]
    assert tracker.take_gone() == []


def test_accepted_file_is_not_statted_on_ticks(disk: FakeDisk, tracker: StabilityTracker) -> None:
    disk.write(WAV, 100, 1)
    tracker.observe(WAV, 0.0)
    tracker.tick(S)
    tracker.result(WAV, True, S)
    before = disk.calls
    for i in range(10):
        assert tracker.tick(S + i) == []
    assert disk.calls == before
    assert not tracker.unsettled()
    assert tracker.next_due() is None


def test_accepted_file_that_changes_is_reported_again(
    disk: FakeDisk, tracker: StabilityTracker
) -> None:
    disk.write(WAV, 100, 1)
    tracker.observe(WAV, 0.0)
    tracker.tick(S)
    tracker.result(WAV, True, S)
    tracker.observe(WAV, 5.0)  # an event or a reconcile with nothing changed
    assert tracker.pending() == []
    disk.write(WAV, 120, 2)  # sidecar edited
    tracker.observe(WAV, 6.0)
    assert tracker.pending() == [WAV]
    assert tracker.tick(6.0 + S - 0.5) == []
    assert tracker.tick(6.0 + S) == [WAV]
    # It had been accepted once, so it vanishing now is news even though it is pending again.
    del disk.files[WAV]
    tracker.observe(WAV, 9.0)
    assert tracker.take_gone() == [WAV]


def test_rejected_file_is_asked_again_with_backoff_up_to_the_cap(
    disk: FakeDisk, tracker: StabilityTracker
) -> None:
    disk.write(WAV, 100, 1)
    tracker.observe(WAV, 0.0)
    now = S
    assert tracker.tick(now) == [WAV]
    gaps = []
    for _ in range(6):
        tracker.result(WAV, False, now)
        assert tracker.phase(WAV) is Phase.DEFERRED
        assert tracker.pending() == [WAV]
        due = tracker.next_due()
        assert due is not None
        assert tracker.tick(due - 0.01) == []
        assert tracker.tick(due) == [WAV]
        gaps.append(due - now)
        now = due
    assert gaps == [S, 2 * S, 4 * S, 10.0, 10.0, 10.0]  # cap is retry_max_seconds=10


def test_rejected_file_that_changes_is_evaluated_normally_again(
    disk: FakeDisk, tracker: StabilityTracker
) -> None:
    disk.write(WAV, 100, 1)
    tracker.observe(WAV, 0.0)
    for now in (S, 2 * S, 4 * S):  # three rejections: the next retry would be 4*S later
        assert tracker.tick(now) == [WAV]
        tracker.result(WAV, False, now)
    disk.write(WAV, 100, 9)  # the DAW finally patched the header
    assert tracker.tick(8.5) == []
    assert tracker.phase(WAV) is Phase.WAITING
    assert tracker.tick(8.5 + S) == [WAV]
    tracker.result(WAV, False, 8.5 + S)
    assert tracker.next_due() == 8.5 + 2 * S  # the backoff restarted from one stable period


def test_close_event_shortens_the_wait_but_never_skips_it(
    disk: FakeDisk, tracker: StabilityTracker
) -> None:
    """The watcher ticks every T; a close-after-write event makes it look at once instead."""
    other = Path("/exports/other.wav")
    for path in (WAV, other):
        disk.write(path, 100, 1)
        tracker.observe(path, 0.0)
    # Both files get their last write at 0.3; ticks come at 0, 1, 2, ...
    disk.write(WAV, 200, 2)
    disk.write(other, 200, 2)
    tracker.observe(WAV, 0.3)  # close event for WAV only
    assert tracker.tick(1.0) == []  # the tick sees other's change only now
    assert tracker.tick(0.3 + S - 0.01) == []  # a close never replaces the stable period
    assert tracker.tick(0.3 + S) == [WAV]
    tracker.result(WAV, True, 0.3 + S)
    assert tracker.tick(1.0 + S - 0.01) == []
    assert tracker.tick(1.0 + S) == [other]


def test_zero_length_file_is_reported_only_after_stable_seconds(
    disk: FakeDisk, tracker: StabilityTracker
) -> None:
    disk.write(WAV, 0, 1)
    tracker.observe(WAV, 0.0)
    assert tracker.tick(S / 2) == []
    assert tracker.tick(S) == [WAV]


def test_unreadable_file_is_never_due_and_its_wait_restarts(
    disk: FakeDisk, tracker: StabilityTracker
) -> None:
    disk.write(WAV, 100, 1)
    tracker.observe(WAV, 0.0)
    disk.unreadable.add(WAV)
    assert tracker.tick(S) == []
    assert tracker.pending() == [WAV]
    disk.unreadable.clear()
    assert tracker.tick(2 * S - 0.01) == []
    assert tracker.tick(2 * S) == [WAV]


def test_unreadable_accepted_file_is_neither_gone_nor_pending(
    disk: FakeDisk, tracker: StabilityTracker
) -> None:
    disk.write(WAV, 100, 1)
    tracker.observe(WAV, 0.0)
    tracker.tick(S)
    tracker.result(WAV, True, S)
    disk.unreadable.add(WAV)
    tracker.observe(WAV, S + 1)
    assert tracker.take_gone() == []
    assert tracker.pending() == []


def test_forget_drops_without_reporting(disk: FakeDisk, tracker: StabilityTracker) -> None:
    disk.write(WAV, 100, 1)
    tracker.observe(WAV, 0.0)
    tracker.tick(S)
    tracker.result(WAV, True, S)
    tracker.forget([WAV])
    assert tracker.known() == []
    assert tracker.take_gone() == []


def test_unknown_path_that_does_not_exist_is_not_tracked(
    disk: FakeDisk, tracker: StabilityTracker
) -> None:
    tracker.observe(WAV, 0.0)
    assert tracker.known() == []


def test_invalid_stable_seconds_is_refused() -> None:
    with pytest.raises(ValueError, match="stable_seconds must be > 0"):
        StabilityTracker(0)


@settings(max_examples=300, deadline=None)
@given(
    writes=st.lists(st.floats(0.0, 20.0), max_size=30),
    gaps=st.lists(st.floats(0.01, 0.7), min_size=1, max_size=120),
    events=st.booleans(),
)
def test_never_early_and_never_much_late(
    writes: list[float], gaps: list[float], events: bool
) -> None:
    """Whatever the write times and tick spacing: never before last write + S; and once ticks
    keep coming, no later than last write + S + the largest tick gap."""
    writes = sorted(writes)
    disk = FakeDisk()
    tracker = StabilityTracker(S, disk.stat)

    def sync(now: float) -> None:
        done = [w for w in writes if w <= now]
        disk.write(WAV, len(done), len(done))

    now = 0.0
    sync(now)
    tracker.observe(WAV, now)
    reported_at: float | None = None
    times = [now]
    for gap in gaps + [0.5] * 60:  # then keep ticking well past the last write
        if events:
            # An event right at each write (inotify), before the next tick.
            for w in writes:
                if now < w <= now + gap:
                    sync(w)
                    tracker.observe(WAV, w)
        now += gap
        times.append(now)
        sync(now)
        if tracker.tick(now) == [WAV]:
            reported_at = now
            break
    assert reported_at is not None
    last_write = max([w for w in writes if w <= reported_at], default=0.0)
    assert reported_at >= last_write + S
    largest_gap = max(b - a for a, b in itertools.pairwise(times))
    assert reported_at <= max(last_write, 0.0) + S + 2 * largest_gap + 1e-9
