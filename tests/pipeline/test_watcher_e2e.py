"""The watcher over real folders with real observers (inotify, and polling as for network shares)."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import time
from pathlib import Path

import pytest
from watcher_helpers import STABLE, MakeWatcher, Recorder, wait_until, wav_header, write_wav

from releaseosd.model.config import WatchFolder

# watchdog's own race when nested folders appear at once; it recovers, and our scans cover it anyway.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder


def test_slow_writer_is_never_reported_early(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher, mode: str
) -> None:
    """A DAW rendering in place: chunks over ~3 s, each pause shorter than stable_seconds."""
    make_watcher([exports], polling=mode == "polling")
    wav = exports / "render.wav"
    chunks = 12
    chunk = b"\x01\x02" * 8192
    with wav.open("wb") as f:
        f.write(wav_header(0))  # header first, sizes patched at the end, as DAWs do
        f.flush()
        for _ in range(chunks):
            time.sleep(STABLE * 0.6)  # the slow writer being simulated, not a wait
            f.write(chunk)
            f.flush()
        time.sleep(STABLE * 0.6)
        f.seek(0)
        before_last_write = time.monotonic()
        f.write(wav_header(chunks * len(chunk)))
    recorder.wait_reported(wav)
    reported = recorder.first_report(wav)
    assert reported >= before_last_write + STABLE, (
        f"reported {before_last_write + STABLE - reported:.3f} s early"
    )
    assert reported <= before_last_write + STABLE + 2.0
    assert recorder.count(wav) == 1


def test_rename_into_place(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher, mode: str
) -> None:
    make_watcher([exports], polling=mode == "polling")
    part = write_wav(exports / "mix.wav.part")
    time.sleep(STABLE * 1.5)  # the temp file sits there longer than stable_seconds
    renamed_at = time.monotonic()
    os.rename(part, exports / "mix.wav")
    recorder.wait_reported(exports / "mix.wav")
    assert recorder.first_report(exports / "mix.wav") >= renamed_at + STABLE
    assert recorder.stable_paths() == [exports / "mix.wav"]


def test_sidecar_before_audio_and_after_audio(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher
) -> None:
    make_watcher([exports])
    (exports / "a.yaml").write_text("title: A\n")
    recorder.wait_reported(exports / "a.yaml")
    write_wav(exports / "a.wav")
    recorder.wait_reported(exports / "a.wav")
    write_wav(exports / "b.wav")
    recorder.wait_reported(exports / "b.wav")
    (exports / "b.yml").write_text("title: B\n")
    (exports / "release.yaml").write_text("artist: Me\n")
    recorder.wait_reported(exports / "b.yml", exports / "release.yaml")
    assert sorted(recorder.stable_paths()) == sorted(
        exports / n for n in ("a.yaml", "a.wav", "b.wav", "b.yml", "release.yaml")
    )


def test_track_and_sidecar_settling_together_report_the_sidecar_first(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher
) -> None:
    write_wav(exports / "t.wav")
    (exports / "t.yaml").write_text("title: T\n")
    make_watcher([exports])
    recorder.wait_reported(exports / "t.wav", exports / "t.yaml")
    assert recorder.stable_paths() == [exports / "t.yaml", exports / "t.wav"]


def test_changed_file_is_reported_again_and_deleted_file_gone(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher, mode: str
) -> None:
    make_watcher([exports], polling=mode == "polling")
    sidecar = exports / "a.yaml"
    sidecar.write_text("title: A\n")
    recorder.wait_reported(sidecar)
    sidecar.write_text("title: A (edit)\n")
    recorder.wait_reported(sidecar, times=2)
    wav = write_wav(exports / "a.wav")
    recorder.wait_reported(wav)
    assert recorder.count(sidecar) == 2
    wav.unlink()
    recorder.wait_gone(wav)
    os.rename(sidecar, exports.parent / "moved-away.yaml")
    recorder.wait_gone(sidecar)
    assert recorder.gone_paths() == [wav, sidecar]


def test_ignored_names_and_state_dir_are_never_reported(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher, mode: str
) -> None:
    state = exports / "state"
    make_watcher([exports], polling=mode == "polling", ignore_dirs=[state])
    noise = [
        "a.wav.part", "a.wav.tmp", "b.mp3.crdownload", "~a.wav", ".a.wav", ".DS_Store", "._a.wav",
        "a.wav.asd", "a.reapeaks", "a.pkf", "a.wav.peak", "a.yaml.bak", "notes.txt",
        ".hidden/x.wav", "state/previews/x.mp3", "state/x.yaml",
    ]  # fmt: skip
    for name in noise:
        write_wav(exports / name)
    marker = write_wav(exports / "real.wav")  # written last: by its report, noise had its chance
    recorder.wait_reported(marker)
    assert recorder.stable_paths() == [marker]


def test_file_deleted_before_stable_is_dropped_quietly(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher
) -> None:
    make_watcher([exports])
    short_lived = write_wav(exports / "oops.wav")
    short_lived.unlink()
    marker = write_wav(exports / "real.wav")
    recorder.wait_reported(marker)
    time.sleep(STABLE)  # let any late report of the deleted file surface
    assert recorder.stable_paths() == [marker]
    assert recorder.gone_paths() == []


def test_zero_length_file_is_reported_but_not_before_stable_seconds(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher
) -> None:
    make_watcher([exports])
    created = time.monotonic()
    (exports / "empty.wav").touch()
    recorder.wait_reported(exports / "empty.wav")
    assert recorder.first_report(exports / "empty.wav") >= created + STABLE


def test_burst_of_200_files_each_reported_exactly_once(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher, mode: str
) -> None:
    watcher = make_watcher([exports], polling=mode == "polling")
    staging = exports.parent / "staging"
    files = [write_wav(staging / f"sub{i % 5}" / f"track{i:03}.wav", 200) for i in range(200)]
    for sub in sorted({f.parent for f in files}):
        os.rename(sub, exports / sub.name)  # whole folders dropped in at once
    moved = [exports / f.parent.name / f.name for f in files]
    recorder.wait_reported(*moved)
    watcher.rescan()
    marker = write_wav(exports / "after.wav")
    recorder.wait_reported(marker)
    assert sorted(recorder.stable_paths()) == sorted([*moved, marker])
    wait_until(lambda: watcher.pending() == [], what="nothing pending")


def test_files_present_before_start_are_found(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher
) -> None:
    old = [write_wav(exports / "old.wav"), write_wav(exports / "deep" / "older.flac")]
    (exports / "deep" / "older.yaml").write_text("title: Older\n")
    started = time.monotonic()
    make_watcher([exports])
    recorder.wait_reported(*old, exports / "deep" / "older.yaml")
    # A file found at start-up may still be mid-export: it gets the full stable period too.
    assert min(t for _, t in recorder.stable) >= started + STABLE


def test_reconcile_finds_what_the_observer_missed(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher
) -> None:
    # A polling observer that would not look again for an hour: only the reconcile can see changes.
    first = write_wav(exports / "while-down.wav")
    make_watcher([exports], polling=True, poll_seconds=3600, reconcile_seconds=0.5)
    recorder.wait_reported(first)
    first.unlink()
    recorder.wait_gone(first)
    second = write_wav(exports / "missed.wav")
    recorder.wait_reported(second)


def test_inotify_overflow_triggers_a_rescan(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher
) -> None:
    started = write_wav(exports / "present-at-start.wav")
    make_watcher([exports], polling=True, poll_seconds=3600, reconcile_seconds=3600)
    recorder.wait_reported(started)  # the start-up scan is over
    missed = write_wav(exports / "lost-in-overflow.wav")
    time.sleep(STABLE * 2)  # long enough that a report would have come, had anything looked
    assert recorder.stable_paths() == [started]
    # What watchdog 7 does on IN_Q_OVERFLOW: rebuild its watches and log this line.
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    recorder.wait_reported(missed)


def test_dead_observer_is_restarted_and_folder_rescanned(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher
) -> None:
    watcher = make_watcher([exports])
    write_wav(exports / "before.wav")
    recorder.wait_reported(exports / "before.wav")
    # Simulate a crash of watchdog's observer thread (there is no public way to make it die).
    for observer in list(watcher._observers.values()):
        observer.stop()
        observer.join()
    missed = write_wav(exports / "during-outage.wav")
    recorder.wait_reported(missed)
    later = write_wav(exports / "after-restart.wav")
    recorder.wait_reported(later)


def test_missing_watch_folder_is_logged_and_picked_up_on_rescan(
    tmp_path: Path,
    recorder: Recorder,
    make_watcher: MakeWatcher,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    caplog.set_level(logging.INFO, logger="releaseosd.pipeline.watch")
    missing = tmp_path / "not-mounted-yet"
    present = tmp_path / "present"
    present.mkdir()
    watcher = make_watcher([missing, present], polling=mode == "polling", reconcile_seconds=3600)
    write_wav(present / "ok.wav")
    recorder.wait_reported(present / "ok.wav")  # the other folder works meanwhile
    assert any(str(missing) in r.getMessage() and "does not exist" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    write_wav(missing / "first.wav")
    watcher.rescan()
    recorder.wait_reported(missing / "first.wav")
    write_wav(missing / "second.wav")  # and it is watched from now on
    recorder.wait_reported(missing / "second.wav")


def test_deleted_watch_folder_recreated_is_watched_again(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher, mode: str
) -> None:
    make_watcher([exports], polling=mode == "polling", reconcile_seconds=3600)
    wav = write_wav(exports / "a.wav")
    recorder.wait_reported(wav)
    shutil.rmtree(exports)
    recorder.wait_gone(wav)
    exports.mkdir()
    again = write_wav(exports / "b.wav")
    recorder.wait_reported(again)  # the health check noticed; no reconcile needed


def test_update_folders_keeps_pending_files_of_folders_that_stay(
    tmp_path: Path, recorder: Recorder, make_watcher: MakeWatcher
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    watcher = make_watcher([a], stable_seconds=1.0)
    pending = write_wav(a / "in-flight.wav")
    wait_until(lambda: watcher.pending() == [pending], what="in-flight.wav pending")
    write_wav(b / "waiting.wav")
    watcher.update_folders([WatchFolder(path=a), WatchFolder(path=b)])
    recorder.wait_reported(pending, b / "waiting.wav")
    watcher.update_folders([WatchFolder(path=b)])
    write_wav(a / "unwatched.wav")
    marker = write_wav(b / "marker.wav")
    recorder.wait_reported(marker)
    assert a / "unwatched.wav" not in recorder.stable_paths()
    assert recorder.count(pending) == 1


def test_update_folders_before_start(
    tmp_path: Path, recorder: Recorder, make_watcher: MakeWatcher
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_wav(a / "x.wav")
    write_wav(b / "y.wav")
    watcher = make_watcher([a], start=False)
    watcher.update_folders([WatchFolder(path=b)])
    watcher.start()
    recorder.wait_reported(b / "y.wav")
    assert recorder.stable_paths() == [b / "y.wav"]


def test_not_complete_yet_is_asked_again_later(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher
) -> None:
    wav = exports / "header-later.wav"
    recorder.answers[wav] = [False, False]
    make_watcher([exports])
    write_wav(wav)
    recorder.wait_reported(wav, times=3)
    times = [t for p, t in recorder.stable if p == wav]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= STABLE - 0.01 and gaps[1] >= 2 * STABLE - 0.01  # backoff
    marker = write_wav(exports / "marker.wav")
    recorder.wait_reported(marker)
    assert recorder.count(wav) == 3  # accepted on the third ask: not asked again


def test_callback_errors_are_logged_and_do_not_stop_the_watcher(
    exports: Path,
    recorder: Recorder,
    make_watcher: MakeWatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = exports / "bad.wav"
    recorder.raises.add(bad)
    make_watcher([exports])
    write_wav(bad)
    recorder.wait_reported(bad, times=2)  # retried: an exception counts as "not yet"
    assert any(str(bad) in r.getMessage() and r.exc_info for r in caplog.records)
    good = write_wav(exports / "good.wav")
    recorder.wait_reported(good)


def test_gone_callback_errors_are_logged(
    exports: Path, make_watcher: MakeWatcher, caplog: pytest.LogCaptureFixture, recorder: Recorder
) -> None:
    def broken_gone(path: Path) -> None:
        raise OSError(f"store unavailable for {path.name}")

    watcher = make_watcher([exports], start=False)
    watcher._on_gone = broken_gone
    watcher.start()
    wav = write_wav(exports / "a.wav")
    recorder.wait_reported(wav)
    wav.unlink()
    wait_until(lambda: any(str(wav) in r.getMessage() for r in caplog.records if r.exc_info))
    marker = write_wav(exports / "still-alive.wav")
    recorder.wait_reported(marker)


def test_non_recursive_folder_ignores_subfolders(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher, mode: str
) -> None:
    write_wav(exports / "sub" / "before.wav")
    make_watcher([WatchFolder(path=exports, recursive=False, polling=mode == "polling")])
    write_wav(exports / "sub" / "after.wav")
    marker = write_wav(exports / "top.wav")
    recorder.wait_reported(marker)
    assert recorder.stable_paths() == [marker]


def test_folder_moved_in_and_moved_out(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher
) -> None:
    make_watcher([exports])
    album = exports.parent / "album"
    tracks = [write_wav(album / f"{i}.wav") for i in range(3)]
    os.rename(album, exports / "album")
    inside = [exports / "album" / t.name for t in tracks]
    recorder.wait_reported(*inside)
    os.rename(exports / "album", exports.parent / "archived")
    wait_until(lambda: sorted(recorder.gone_paths()) == sorted(inside), what="all three gone")


def test_ingest_reading_a_file_does_not_make_it_pending(
    exports: Path, recorder: Recorder, make_watcher: MakeWatcher
) -> None:
    watcher = make_watcher([exports])
    wav = write_wav(exports / "a.wav")
    recorder.wait_reported(wav)
    wav.read_bytes()  # open + close-without-write events
    os.utime(wav, ns=(time.time_ns(), wav.stat().st_mtime_ns))  # atime only
    marker = write_wav(exports / "marker.wav")
    recorder.wait_reported(marker)
    assert recorder.count(wav) == 1
    assert watcher.pending() == []
