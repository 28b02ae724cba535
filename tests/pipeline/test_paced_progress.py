"""An upload's progress events: paced, and the latest one never lost to the pacing."""

from __future__ import annotations

import time

from releaseosd.pipeline.upload import PROGRESS_EVERY_SECONDS, PacedProgress


def _until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.01)


def test_a_report_held_back_by_the_pace_still_arrives_when_the_upload_stalls() -> None:
    heard: list[tuple[int, int]] = []
    progress = PacedProgress(lambda sent, total: heard.append((sent, total)))
    progress(556, 100)  # the form fields: the first report goes out at once
    progress(1 << 20, 1 << 24)  # within the pace: held back, and then the upload stalls
    assert heard == [(556, 100)]
    _until(lambda: len(heard) == 2, timeout=PROGRESS_EVERY_SECONDS * 20)
    assert heard[1] == (1 << 20, 1 << 24)
    progress.close()


def test_the_last_byte_is_reported_at_once_and_nothing_after_close() -> None:
    heard: list[tuple[int, int]] = []
    progress = PacedProgress(lambda sent, total: heard.append((sent, total)))
    progress(1, 10)
    progress(5, 10)  # held back
    progress(10, 10)  # the end: at once, and it replaces the held-back report
    assert heard == [(1, 10), (10, 10)]
    progress(3, 10)  # a retry's first bytes, held back ...
    progress.close()  # ... and the upload call returned: nothing more is said,
    progress._flush()  # not even by a timer that fired just as it closed
    progress(4, 10)
    assert heard == [(1, 10), (10, 10)]
