"""Fixtures for the watcher's end-to-end tests: real folders, real observers, a recording callback."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from watcher_helpers import STABLE, MakeWatcher, Recorder

from releaseosd.model.config import WatchFolder
from releaseosd.pipeline.watch import ExportWatcher


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    assert rec.problems == [], rec.problems


@pytest.fixture(params=["inotify", "polling"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_watcher(recorder: Recorder) -> Iterator[MakeWatcher]:
    """make_watcher([folder, ...], polling=False, **kwargs) -> a started ExportWatcher."""
    started: list[ExportWatcher] = []

    def make(
        folders: Sequence[Path | WatchFolder],
        polling: bool = False,
        start: bool = True,
        **kwargs: Any,
    ) -> ExportWatcher:
        configs = [
            f if isinstance(f, WatchFolder) else WatchFolder(path=f, polling=polling)
            for f in folders
        ]
        kwargs.setdefault("stable_seconds", STABLE)
        kwargs.setdefault("tick_seconds", 0.05)
        kwargs.setdefault("poll_seconds", 0.2)
        watcher = ExportWatcher(
            configs, on_stable=recorder.on_stable, on_gone=recorder.on_gone, **kwargs
        )
        started.append(watcher)
        if start:
            watcher.start()
        return watcher

    yield make
    for watcher in started:
        watcher.stop(timeout=5)
