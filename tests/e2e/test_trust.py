"""What a producer trusts the daemon with, tried at the moments it used to break: the bytes that
go up are the bytes that were checked, what the sidecar says is what SoundCloud gets, a restart
changes nothing, release times mean the producer's wall clock, nothing outside a watch folder is
read, and removing means removing. Each test runs the real daemon on real files against the
sandbox over loopback."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    DONE,
    ThreadedDaemon,
    by_title,
    command,
    file_token_store,
    in_state,
    keyring_file,
    local,
    log_in,
    make_audio,
    pause_before_start,
    read_tracks,
    track,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State
from releaseosd.model.store import Store
from releaseosd.model.track import Track
from releaseosd.soundcloud.tags import machine_tag

# The CLI's commands reach the in-process daemon over its control socket.
pytestmark = pytest.mark.usefixtures("runtime_dir")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def copies(sandbox: TestSandbox) -> list[dict[str, Any]]:
    return sandbox.tracks()


def asset(sandbox: TestSandbox, remote: dict[str, Any]) -> bytes:
    return sandbox.upload_of(str(remote["urn"])).path.read_bytes()


@contextlib.contextmanager
def logged_in_client(sandbox: TestSandbox) -> Iterator[Any]:
    """The product's SoundCloud client on a sandbox login, without a daemon."""
    import httpx

    from releaseosd.model.config import SoundCloudConfig
    from releaseosd.soundcloud.client import SoundCloudClient
    from releaseosd.soundcloud.tokens import MemoryKeyring, TokenManager, TokenStore

    store = TokenStore(MemoryKeyring())
    log_in(store, sandbox)
    config = SoundCloudConfig(
        client_id=CLIENT_ID, api_url=sandbox.base_url, auth_url=sandbox.base_url
    )
    with httpx.Client() as http:
        yield SoundCloudClient(config, TokenManager(store, config, http), http)


# --- 1. the bytes that go up are the bytes that were checked ----------------------------------


def test_a_re_export_in_place_while_queued_is_checked_again_and_only_the_finished_file_goes_up(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    pause_before_start(state)
    (exports / "Queued.yaml").write_text("title: Queued\nsharing: public\n")
    make_audio(exports / "Queued.wav", seconds=2.0, freq=500)
    final = make_audio(tmp_path / "mix2" / "Queued.wav", seconds=2.0, freq=700).read_bytes()
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Queued", State.READY), what="queued, paused")
        # The DAW starts writing the new mix over the old file, in place, and is not done yet.
        with (exports / "Queued.wav").open("r+b") as fh:
            fh.truncate(0)
            fh.write(final[: len(final) // 2])
        command(config, "resume")
        wait_for(
            lambda: (
                any(
                    "changed since it was checked" in h.note
                    for h in (track(state, "Queued") or first).history
                )
                or copies(sandbox)
            ),
            what="the upload noticing the export changed",
        )
        assert copies(sandbox) == [], "half a re-export went up"
        with (exports / "Queued.wav").open("r+b") as fh:
            fh.seek(len(final) // 2)
            fh.write(final[len(final) // 2 :])
        done = wait_for(lambda: in_state(state, "Queued", *DONE), what="released")
    [remote] = copies(sandbox)
    assert asset(sandbox, remote) == final
    assert machine_tag(sha(final)) in remote["tag_list"]
    assert done.sha256 == sha(final) and done.sha256 != first.sha256
    assert done.preview_sha256 != first.preview_sha256, "the preview is of the new mix"


def test_an_export_rewritten_while_it_is_sent_is_cut_off_before_its_last_byte(
    tmp_path: Path, sandbox: TestSandbox
) -> None:
    from releaseosd.soundcloud.client import TrackFields
    from releaseosd.soundcloud.errors import AssetChanged

    audio = tmp_path / "Big.wav"
    checked = b"RIFF" + os.urandom(3 * 1024 * 1024)
    audio.write_bytes(checked)
    rewritten: list[int] = []

    def rewrite_after_first_chunk(done: int, total: int) -> None:
        if done > 1024 * 1024 and not rewritten:
            with audio.open("r+b") as fh:  # a re-export in place, same length
                fh.seek(2 * 1024 * 1024)
                fh.write(os.urandom(1024 * 1024))
            rewritten.append(done)

    with (
        logged_in_client(sandbox) as client,
        pytest.raises(AssetChanged, match="not the file that was checked"),
    ):
        client.upload_track(
            audio,
            TrackFields(title="Big"),
            progress=rewrite_after_first_chunk,
            sha256=sha(checked),
            check_quota=False,
        )
    assert rewritten, "the file was rewritten mid-upload"
    assert sandbox.tracks() == [], "SoundCloud received a whole request for bytes never checked"


def test_an_export_swapped_for_a_link_to_a_private_file_after_its_check_sends_nothing_of_it(
    tmp_path: Path, sandbox: TestSandbox
) -> None:
    from releaseosd.soundcloud.client import TrackFields
    from releaseosd.soundcloud.errors import AssetChanged

    export = tmp_path / "exports" / "Swap.wav"
    checked = make_audio(export, freq=870).read_bytes()
    identity = (export.stat().st_dev, export.stat().st_ino)
    private = tmp_path / "private" / "Diary.wav"
    private.parent.mkdir()
    private.write_bytes(os.urandom(len(checked)))  # same size: only the file's identity tells
    export.unlink()
    export.symlink_to(private)
    with logged_in_client(sandbox) as client, pytest.raises(AssetChanged, match="another file"):
        client.upload_track(
            export,
            TrackFields(title="Swap"),
            sha256=sha(checked),
            check_quota=False,
            identity=identity,
        )
    assert sandbox.tracks() == []


# --- 2. a track that never reached SoundCloud is local, whatever it waits for -----------------


def test_a_re_export_while_waiting_for_a_login_is_rebuilt_and_uploaded_as_the_new_audio(
    tmp_path: Path, sandbox: TestSandbox
) -> None:
    store = file_token_store(keyring_file(tmp_path))
    store.set_client_secret(CLIENT_ID, CLIENT_SECRET)  # an app set up, but nobody logged in
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Login.yaml").write_text("title: Login\nsharing: public\n")
    make_audio(exports / "Login.wav", freq=330)
    with ThreadedDaemon(config, store):
        parked = wait_for(lambda: in_state(state, "Login", State.NEEDS_LOGIN), what="needs login")
        new_mix = make_audio(exports / "Login.wav", freq=440).read_bytes()
        rebuilt = wait_for(
            lambda: (
                (t := in_state(state, "Login", State.NEEDS_LOGIN))
                and t.sha256 == sha(new_mix)
                and t
            ),
            what="rebuilt from the new mix, waiting for the login again",
        )
        assert rebuilt.local_change is None, "a track never uploaded has no 'local change'"
        assert rebuilt.preview_sha256 != parked.preview_sha256
        log_in(store, sandbox)
        wait_for(lambda: in_state(state, "Login", *DONE), what="released after login")
    [remote] = copies(sandbox)
    assert asset(sandbox, remote) == new_mix
    assert machine_tag(sha(new_mix)) in remote["tag_list"]


# --- 3. the same audio is one track, whatever its container says -------------------------------


def test_the_same_samples_under_other_tags_or_chunks_are_one_track(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    from mutagen.id3 import ID3, TIT2

    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    first = make_audio(tmp_path / "a" / "Bounce.wav", freq=510, options=("-metadata", "title=One"))
    again = make_audio(tmp_path / "b" / "Bounce.wav", freq=510, options=("-metadata", "artist=Me"))
    assert first.read_bytes() != again.read_bytes(), "different metadata chunks"
    mp3 = make_audio(tmp_path / "c" / "Loop.mp3", freq=620, codec="libmp3lame")
    retagged = tmp_path / "d" / "Loop.mp3"
    retagged.parent.mkdir()
    shutil.copy(mp3, retagged)
    tags = ID3(retagged)
    tags.add(TIT2(encoding=3, text="Loop (re-tagged)"))
    tags.save()
    assert mp3.read_bytes() != retagged.read_bytes()
    with ThreadedDaemon(config, token_store):
        for name, source in (
            ("Bounce", first),
            ("Bounce copy", again),
            ("Loop", mp3),
            ("Loop retagged", retagged),
        ):
            (exports / f"{name}.yaml").write_text(f"title: {name}\nsharing: public\n")
            shutil.copy(source, exports / f"{name}{source.suffix}")
        wait_for(
            lambda: (
                sorted(t.state for t in read_tracks(state))
                == sorted([State.RELEASED, State.RELEASED, State.INVALID, State.INVALID])
            ),
            timeout=60,
            what="two tracks released, two copies refused",
        )
    tracks = read_tracks(state)
    assert len(copies(sandbox)) == 2
    for refused in (t for t in tracks if t.state == State.INVALID):
        assert "the same audio as" in (refused.last_error or "")
        assert refused.duplicate_of in {t.id for t in tracks if t.state == State.RELEASED}


# --- 4. an edit made while the upload is in flight is sent afterwards -------------------------


def test_a_sidecar_edited_while_its_upload_is_in_flight_reaches_soundcloud(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from releaseosd.soundcloud import client as client_module

    reached, go = threading.Event(), threading.Event()
    original = client_module._verified_chunks

    def held(part: Any) -> Iterator[bytes]:
        if part.name == "track[asset_data]" and not go.is_set():
            reached.set()
            go.wait(30)
        yield from original(part)

    monkeypatch.setattr(client_module, "_verified_chunks", held)
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    sidecar = exports / "Flight.yaml"
    sidecar.write_text("title: Flight\ngenre: House\nsharing: public\n")
    make_audio(exports / "Flight.wav", freq=450)
    with ThreadedDaemon(config, token_store):
        assert reached.wait(30), "the upload never started"
        sidecar.write_text(
            "title: Flight\ngenre: Techno\ndescription: Edited mid-air\nsharing: public\n"
        )
        wait_for(
            lambda: (t := track(state, "Flight")) and t.metadata.get("genre") == "Techno",
            what="the edit recorded while the upload is held",
        )
        go.set()
        done = wait_for(
            lambda: (t := in_state(state, "Flight", State.RELEASED)) and t.sync is None and t,
            what="released with the edit sent",
        )
    [remote] = copies(sandbox)
    assert remote["genre"] == "Techno"
    assert remote["description"].startswith("Edited mid-air")
    assert done.soundcloud.sent_fields["genre"] == "Techno"


# --- 5. a restart with nothing changed reads nothing, writes nothing, sends nothing -----------


def test_a_restart_reads_no_audio_writes_nothing_and_sends_nothing(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    for i, name in enumerate(("One", "Two")):
        (exports / f"{name}.yaml").write_text(f"title: {name}\nsharing: public\ngenre: Ambient\n")
        make_audio(exports / f"{name}.wav", freq=300 + 40 * i)
    later = local(3600)
    (exports / "Soon.yaml").write_text(
        f"title: Soon\nsharing: public\nrelease_at: {later.isoformat()}\n"
    )
    make_audio(exports / "Soon.wav", freq=390)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Soon", State.SCHEDULED), what="scheduled")
        command(config, "release", track="Soon")
        wait_for(
            lambda: (
                all(t.state == State.RELEASED and t.sync is None for t in read_tracks(state))
                and len(read_tracks(state)) == 3
            ),
            what="all released",
        )
    before = {t.id: t for t in read_tracks(state)}
    # All three of the store's files: records of active tracks, the archive, the history.
    store_files = [state / name for name in ("store.json", "archive.jsonl", "history.jsonl")]
    stats = [(f.stat().st_ino, f.stat().st_size, f.stat().st_mtime_ns) for f in store_files]
    # The config's defaults change meanwhile: released tracks must not be rewritten for it.
    config.write_text(
        config.read_text() + "defaults:\n  genre: Changed\n  description_template: 'New {title}'\n"
    )
    sent_before = len(sandbox.requests)
    reads: list[str] = []
    from releaseosd.media import build, probe

    for module, name in ((probe, "probe"), (build, "content_digests"), (build, "build_assets")):
        real = getattr(module, name)

        def counting(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            reads.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counting)
    with ThreadedDaemon(config, token_store) as running:
        assert running.daemon.first_scan_done.wait(30), "the start-up scan never finished"
        # A command round trip: the daemon is up and has looked at every export.
        command(config, "show", track="One")
    after = {t.id: t for t in read_tracks(state)}
    assert reads == [], f"audio read again at start-up: {reads}"
    assert [(f.stat().st_ino, f.stat().st_size, f.stat().st_mtime_ns) for f in store_files] == (
        stats
    ), "a restart with nothing changed wrote to the store"
    assert [
        (r.method, r.path) for r in sandbox.requests[sent_before:] if r.method != "GET"
    ] == [], "a restart sent something to SoundCloud"
    assert after.keys() == before.keys()
    soon = next(t for t in after.values() if t.title == "Soon")
    assert soon.metadata["release_date"] == before[soon.id].metadata["release_date"]
    assert soon.user_release is not None


def test_an_edit_after_release_sends_only_what_the_sidecar_changed_not_new_defaults(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    sidecar = exports / "Edit.yaml"
    sidecar.write_text("title: Edit\nsharing: public\n")
    make_audio(exports / "Edit.wav", freq=350)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Edit", State.RELEASED), what="released")
    config.write_text(config.read_text() + "defaults:\n  genre: Changed\n")
    mark = len(sandbox.requests)
    with ThreadedDaemon(config, token_store) as running:
        assert running.daemon.first_scan_done.wait(30)
        sidecar.write_text("title: Edited\nsharing: public\n")
        wait_for(
            lambda: (
                (t := track(state, "Edited"))
                and t.sync is None
                and t.soundcloud.sent_fields["title"] == "Edited"
            ),
            what="the edit sent",
        )
    puts = [r for r in sandbox.requests[mark:] if r.method == "PUT"]
    assert len(puts) == 1
    assert set((puts[0].json_body or {})["track"]) == {"title"}
    [remote] = copies(sandbox)
    assert remote["title"] == "Edited" and not remote.get("genre")


# --- 6. release times are the producer's wall clock ---------------------------------------------


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


def test_a_release_time_in_the_spring_forward_gap_is_not_an_hour_early(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, zone: Any
) -> None:
    zone("Europe/Berlin")
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    # 02:30 does not exist that night (02:00 → 03:00): it may never mean 00:30 UTC (01:30 CET).
    (exports / "Gap.yaml").write_text("title: Gap\nsharing: public\nrelease_at: 2027-03-28T02:30\n")
    make_audio(exports / "Gap.wav", freq=610)
    with ThreadedDaemon(config, token_store):
        scheduled = wait_for(lambda: in_state(state, "Gap", State.SCHEDULED), what="scheduled")
    assert scheduled.release_at is not None
    assert scheduled.release_at.astimezone(dt.UTC) == dt.datetime(2027, 3, 28, 1, 30, tzinfo=dt.UTC)
    [remote] = copies(sandbox)
    assert remote["sharing"] == "private"


def test_release_now_shows_the_producers_local_date_not_utcs(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, zone: Any
) -> None:
    utc_now = dt.datetime.now(dt.UTC)
    # A zone whose calendar day differs from UTC's right now.
    zone("Pacific/Kiritimati" if utc_now.hour >= 10 else "Pacific/Pago_Pago")
    local_day = dt.datetime.now().astimezone().date()
    assert local_day != utc_now.date()
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Day.yaml").write_text(
        f"title: Day\nsharing: public\nrelease_at: {local(7 * 86400).isoformat()}\n"
    )
    make_audio(exports / "Day.wav", freq=640)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Day", State.SCHEDULED), what="scheduled")
        command(config, "release", track="Day")
        done = wait_for(
            lambda: (t := in_state(state, "Day", State.RELEASED)) and t.sync is None and t,
            what="released now",
        )
    assert done.metadata["release_date"] == local_day.isoformat()
    [remote] = copies(sandbox)
    assert (remote["release_year"], remote["release_month"], remote["release_day"]) == (
        local_day.year,
        local_day.month,
        local_day.day,
    )


# --- 7. steps after the upload meet failures too, and are tried again ---------------------------


def test_a_rate_limited_playlist_is_created_on_a_later_try(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    sandbox.faults.push(429, retry_after=1, match="POST /playlists")
    sandbox.faults.push(503, match="GET /me/playlists")
    (exports / "EP1.yaml").write_text("title: EP1\nsharing: public\nplaylist: Night EP\n")
    make_audio(exports / "EP1.wav", freq=710)
    with ThreadedDaemon(config, token_store):
        done = wait_for(
            lambda: (t := in_state(state, "EP1", State.RELEASED)) and t.sync is None and t,
            timeout=60,
            what="in its playlist",
        )
    [playlist] = sandbox.playlists()
    assert playlist["title"] == "Night EP"
    assert [t["urn"] for t in playlist["tracks"]] == [done.soundcloud.urn]
    assert done.soundcloud.playlists == ["Night EP"]
    assert sandbox.retry_after_violations() == []


def test_a_scheduled_tracks_playlist_is_created_private_and_filled_at_once(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Later.yaml").write_text(
        f"title: Later\nsharing: public\nplaylist: [Later EP]\nrelease_at: {local(3600).isoformat()}\n"
    )
    make_audio(exports / "Later.wav", freq=730)
    with ThreadedDaemon(config, token_store):
        scheduled = wait_for(
            lambda: (t := in_state(state, "Later", State.SCHEDULED)) and t.sync is None and t,
            what="scheduled and in its playlist",
        )
    [playlist] = sandbox.playlists()
    assert playlist["sharing"] == "private"
    assert [t["urn"] for t in playlist["tracks"]] == [scheduled.soundcloud.urn]


def test_an_edit_that_meets_a_5xx_is_sent_on_a_later_try(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    sidecar = exports / "Retry.yaml"
    sidecar.write_text("title: Retry\nsharing: public\n")
    make_audio(exports / "Retry.wav", freq=760)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Retry", State.RELEASED), what="released")
        sandbox.faults.push(503, match="PUT /tracks/{track_urn}", times=2)
        sidecar.write_text("title: Retry\ngenre: Dub\nsharing: public\n")
        wait_for(
            lambda: (
                (t := track(state, "Retry"))
                and t.sync is None
                and t.soundcloud.sent_fields.get("genre") == "Dub"
            ),
            what="the edit sent after two 503s",
        )
    [remote] = copies(sandbox)
    assert remote["genre"] == "Dub"


def test_a_playlist_soundcloud_refuses_for_good_is_reported_with_the_fix(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    sandbox.faults.push(422, body='{"message": "title is reserved"}', match="POST /playlists")
    (exports / "Refused.yaml").write_text("title: Refused\nsharing: public\nplaylist: Bad EP\n")
    make_audio(exports / "Refused.wav", freq=790)
    with ThreadedDaemon(config, token_store):
        done = wait_for(
            lambda: (t := in_state(state, "Refused", State.RELEASED)) and t.last_error and t,
            what="the refusal on record",
        )
    assert "title is reserved" in (done.last_error or "")
    assert done.sync is None, "a permanent refusal is not retried forever"


# --- 10. nothing outside a watch folder is read ------------------------------------------------


def test_a_symlink_to_audio_outside_the_watch_folder_is_refused(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    private = make_audio(tmp_path / "private" / "Unreleased.wav", freq=820)
    (exports / "Leak.yaml").write_text("title: Leak\nsharing: public\n")
    (exports / "Leak.wav").symlink_to(private)
    (exports / "Fine.yaml").write_text("title: Fine\nsharing: public\n")
    make_audio(exports / "Fine.wav", freq=830)
    with ThreadedDaemon(config, token_store):
        refused = wait_for(lambda: in_state(state, "Leak", State.INVALID), what="refused")
        wait_for(lambda: in_state(state, "Fine", State.RELEASED), what="the other track is fine")
    assert "outside the watched folder" in (refused.last_error or "")
    assert str(private) in (refused.last_error or "")
    [remote] = copies(sandbox)
    assert remote["title"] == "Fine"


# --- 12. remove --remote finds a copy whose answer was lost -------------------------------------


def test_remove_remote_deletes_an_upload_whose_answer_was_lost(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    # The next attempt is an hour away, so the lost upload stays un-adopted while we remove it.
    config = write_config(
        tmp_path,
        sandbox.base_url,
        uploads={"backoff_base_seconds": 3600, "backoff_max_seconds": 3600},
    )
    exports, state = tmp_path / "exports", tmp_path / "state"
    sandbox.faults.update(drop_upload_answers=1)
    (exports / "Lost.yaml").write_text("title: Lost\nsharing: public\n")
    make_audio(exports / "Lost.wav", freq=910)
    with ThreadedDaemon(config, token_store):
        lost = wait_for(
            lambda: (t := in_state(state, "Lost", State.READY)) and t.posted_sha256 and t,
            what="an upload whose answer was lost",
        )
        assert lost.soundcloud.urn is None and len(copies(sandbox)) == 1
        said = command(config, "remove", track="Lost", remote=True)
        wait_for(lambda: in_state(state, "Lost", State.REMOVED), what="removed")
    assert copies(sandbox) == [], "a copy stayed on SoundCloud"
    assert "deleted on SoundCloud" in said and lost.id in said


# --- 13. what TRACK names --------------------------------------------------------------------


def test_an_exact_title_beats_an_id_prefix_and_an_ambiguous_name_is_refused(
    tmp_path: Path, sandbox: TestSandbox
) -> None:
    from releaseosd.app.commands import CommandError

    config = write_config(tmp_path, sandbox.base_url)
    state = tmp_path / "state"
    store = Store.open(state)
    try:
        anthem = store.insert(
            Track(id="bad123456789", title="Summer Anthem", audio_path="/x/1.wav")
        )
        bad = store.insert(Track(id="0aa000000001", title="Bad", audio_path="/x/2.wav"))
        store.insert(Track(id="nig000000002", title="Morning", audio_path="/x/3.wav"))
        store.insert(Track(id="0cc000000003", title="Nightfall", audio_path="/x/4.wav"))
    finally:
        store.close()
    said = command(config, "remove", track="bad", remote=False)
    assert "'Bad'" in said and bad.id in said
    with pytest.raises(CommandError) as refused:
        command(config, "remove", track="nig", remote=False)
    assert "Morning" in str(refused.value) and "Nightfall" in str(refused.value)
    assert "Nothing was done" in str(refused.value)
    states = {t.id: t.state for t in read_tracks(state)}
    assert states[anthem.id] == State.PENDING and states[bad.id] == State.REMOVED
    assert list(states.values()).count(State.REMOVED) == 1


def test_remove_remote_asks_naming_the_title_id_and_link_it_resolved_to(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    import subprocess
    import sys

    from daemon_harness import daemon_env

    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Ask.yaml").write_text("title: Ask Me\nsharing: public\n")
    make_audio(exports / "Ask.wav", freq=940)
    with ThreadedDaemon(config, token_store):
        done = wait_for(lambda: in_state(state, "Ask Me", State.RELEASED), what="released")
    answer = subprocess.run(
        [sys.executable, "-m", "releaseosd", "--config", str(config), "remove", "ask", "--remote"],
        input="n\n",
        env=daemon_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode != 0
    asked = answer.stdout + answer.stderr
    assert "'Ask Me'" in asked and done.id in asked and str(done.soundcloud.permalink_url) in asked
    assert in_state(state, "Ask Me", State.RELEASED) is not None and len(copies(sandbox)) == 1


# --- 9. a login that is gone is said a day ahead, not at the release minute ---------------------


def test_a_release_within_a_day_warns_at_once_when_the_login_is_gone(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, notification_bus: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Tomorrow.yaml").write_text(
        f"title: Tomorrow\nsharing: public\nrelease_at: {local(6 * 3600).isoformat()}\n"
    )
    make_audio(exports / "Tomorrow.wav", freq=960)
    with ThreadedDaemon(config, token_store, login_check_seconds=0.3):
        wait_for(lambda: in_state(state, "Tomorrow", State.SCHEDULED), what="scheduled")
        assert (track(state, "Tomorrow") or Track(audio_path="")).warning is None
        token_store.delete_tokens(CLIENT_ID)  # e.g. 'auth logout', or a keyring reset
        warned = wait_for(
            lambda: (t := track(state, "Tomorrow")) and t.warning and t, what="the warning"
        )
        assert "auth login" in (warned.warning or "")
        told = wait_for(
            lambda: [
                n for n in notification_bus.received() if n["summary"].startswith("Log in before")
            ],
            what="the notification",
        )
        assert len(told) == 1 and "auth login" in told[0]["body"]
        log_in(token_store, sandbox)
        wait_for(lambda: (t := track(state, "Tomorrow")) and t.warning is None, what="cleared")


# --- 16. an odd file is shown as invalid with its reason, never skipped ----------------------


def test_damaged_exports_show_as_invalid_with_a_reason_and_the_rest_goes_on(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    m4a = make_audio(tmp_path / "src" / "Cut.m4a", freq=520, codec="aac").read_bytes()
    # Cut 4 bytes into the header of the file's last box, as an export killed mid-write leaves it.
    aiff = bytearray(
        make_audio(tmp_path / "src" / "Rate.aiff", freq=530, codec="pcm_s16be").read_bytes()
    )
    rate = aiff.index(b"COMM") + 8 + 2 + 4 + 2
    aiff[rate : rate + 2] = b"\x7f\xfe"  # an exponent no sample rate has
    for name in ("Cut", "Rate", "Good"):
        (exports / f"{name}.yaml").write_text(f"title: {name}\nsharing: public\n")
    last_box = m4a.rindex(b"moov") - 4  # ffmpeg writes the moov box last
    (exports / "Cut.m4a").write_bytes(m4a[: last_box + 4])
    (exports / "Rate.aiff").write_bytes(bytes(aiff))
    make_audio(exports / "Good.wav", freq=540)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: (
                {t.title: t.state for t in read_tracks(state)}
                == {"Cut": State.INVALID, "Rate": State.INVALID, "Good": State.RELEASED}
            ),
            timeout=90,
            what="both damaged files invalid, the good one released",
        )
    tracks = by_title(state)
    assert "Cut.m4a" in (tracks["Cut"].last_error or "")
    assert "impossible sample rate" in (tracks["Rate"].last_error or "")
    assert [t["title"] for t in copies(sandbox)] == ["Good"]


def test_an_export_that_breaks_ingest_unexpectedly_is_shown_not_skipped(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from releaseosd.media import probe as probe_module

    real = probe_module.probe

    def broken(path: Path) -> Any:
        if path.name == "Odd.wav":
            raise RuntimeError("an unforeseen failure")
        return real(path)

    monkeypatch.setattr(probe_module, "probe", broken)
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Odd.yaml").write_text("title: Odd\nsharing: public\n")
    make_audio(exports / "Odd.wav", freq=550)
    with ThreadedDaemon(config, token_store):
        odd = wait_for(
            lambda: (ts := read_tracks(state)) and ts[0].state == State.INVALID and ts[0],
            what="invalid",
        )
    assert "Odd.wav" in (odd.last_error or "") and "an unforeseen failure" in (odd.last_error or "")
