"""Where what SoundCloud has drifts from what the producer asked for: concurrent playlist
creation, a release time added while the upload runs, artwork edits, remove racing a retry, and a
symlink swapped in after the check."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    DONE,
    ThreadedDaemon,
    command,
    dump,
    eventually,
    in_state,
    local,
    make_audio,
    read_tracks,
    track,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State
from releaseosd.soundcloud import client as client_module
from releaseosd.soundcloud.client import SoundCloudClient

# The CLI reaches the in-process daemon over its control socket.
pytestmark = pytest.mark.usefixtures("runtime_dir")


def test_two_tracks_of_one_ep_create_one_playlist(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tracks of one EP finishing together (uploads.concurrency 2, two publish workers) make
    one 'Night EP'. The barrier makes the two look-ups overlap if nothing serialises them, as two
    workers on a slow connection do; it gives up after 3 s when they are serialised."""
    barrier = threading.Barrier(2, timeout=3)
    real = SoundCloudClient.find_playlist

    def overlapping(self: SoundCloudClient, title: str) -> Any:
        found = real(self, title)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return found

    monkeypatch.setattr(SoundCloudClient, "find_playlist", overlapping)
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    for i, name in enumerate(("Side A", "Side B")):
        (exports / f"{name}.yaml").write_text(
            f"title: {name}\nsharing: public\nplaylist: Night EP\n"
        )
        make_audio(exports / f"{name}.wav", freq=600 + i)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: (
                len(ts := read_tracks(state)) == 2
                and all(t.state in DONE and t.sync is None for t in ts)
            ),
            timeout=60,
            what="both released and in their playlist",
        )
    playlists = sandbox.playlists()
    assert [p["title"] for p in playlists] == ["Night EP"], (
        f"{len(playlists)} playlists: "
        + "; ".join(f"{p['title']} {[t['title'] for t in p['tracks']]}" for p in playlists)
    )


def test_a_release_time_added_while_the_upload_runs_is_never_public_before_it(
    tmp_path: Path, token_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload started public (no release_at). The producer adds `release_at: tomorrow`
    while it is in flight: the copy is made private as soon as it exists, not once SoundCloud's
    processing ends."""
    box = TestSandbox(
        data_dir=tmp_path / "sandbox2",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        processing_seconds=4.0,  # a long track's transcoding
    )
    box.start()
    try:
        from daemon_harness import log_in

        log_in(token_store, box)
        reached, go = threading.Event(), threading.Event()
        original = client_module._verified_chunks

        def held(part: Any) -> Iterator[bytes]:
            if part.name == "track[asset_data]" and not go.is_set():
                reached.set()
                go.wait(30)
            yield from original(part)

        monkeypatch.setattr(client_module, "_verified_chunks", held)
        config = write_config(tmp_path, box.base_url)
        exports, state = tmp_path / "exports", tmp_path / "state"
        sidecar = exports / "Secret.yaml"
        sidecar.write_text("title: Secret\nsharing: public\n")
        make_audio(exports / "Secret.wav", freq=630)
        tomorrow = local(86400).isoformat()
        public_seen: list[str] = []
        with ThreadedDaemon(config, token_store):
            assert reached.wait(30)
            sidecar.write_text(f"title: Secret\nsharing: public\nrelease_at: {tomorrow}\n")
            wait_for(
                lambda: (t := track(state, "Secret")) and t.release_at is not None,
                what="the release time recorded",
            )
            go.set()

            def settled() -> bool:
                for remote in box.tracks():
                    if remote.get("sharing") == "public":
                        public_seen.append(f"{remote['title']} public, state {remote.get('state')}")
                return in_state(state, "Secret", State.SCHEDULED) is not None

            wait_for(settled, timeout=60, every=0.02, what="scheduled")
        assert public_seen == [], (
            "public on SoundCloud a day before its release_at: " + public_seen[0]
        )
    finally:
        box.stop()


def test_new_artwork_in_the_sidecar_after_upload_reaches_soundcloud_or_is_reported(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """README: 'editing it after the upload ... sends only the changed fields'. The cover is a
    sidecar field. Changed after the upload, it is sent or the producer is told."""
    from PIL import Image

    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    Image.new("RGB", (800, 800), "red").save(exports / "red.png")
    Image.new("RGB", (800, 800), "blue").save(exports / "blue.png")
    sidecar = exports / "Cover.yaml"
    later = local(3600).isoformat()
    sidecar.write_text(f"title: Cover\nsharing: public\nartwork: red.png\nrelease_at: {later}\n")
    make_audio(exports / "Cover.wav", freq=640)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Cover", State.SCHEDULED), what="scheduled")
        [remote] = sandbox.tracks()
        before = sandbox.upload_of(remote["urn"]).artwork
        assert before is not None
        before_bytes = before.read_bytes()
        sidecar.write_text(
            f"title: Cover\nsharing: public\nartwork: blue.png\nrelease_at: {later}\n"
        )
        wait_for(
            lambda: (
                (t := track(state, "Cover"))
                and t.sidecar_digest != first.sidecar_digest
                and t.sync is None
            ),
            what="the edit taken",
        )
        now = track(state, "Cover")
        assert now is not None
        art = sandbox.upload_of(remote["urn"]).artwork
        changed = art is not None and art.read_bytes() != before_bytes
        told = bool(now.last_error or now.warning) or any(
            "artwork" in h.note for h in now.history[-3:]
        )
        assert changed or told, (
            "the new cover was silently dropped: SoundCloud keeps red.png, the record says "
            f"nothing (last_error={now.last_error!r}, warning={now.warning!r}, "
            f"notes={[h.note for h in now.history[-3:]]})"
        )


def test_remove_remote_racing_a_retry_leaves_no_copy_on_soundcloud(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`remove --remote` lists and deletes on SoundCloud (seconds on a big account). A retry that
    comes due meanwhile must not upload afresh behind its back: the scheduler keeps its hands off
    the track until the remove is done, and nothing is left on SoundCloud."""
    config = write_config(
        tmp_path,
        sandbox.base_url,
        uploads={"backoff_base_seconds": 3, "backoff_max_seconds": 3},
    )
    exports, state = tmp_path / "exports", tmp_path / "state"
    sandbox.faults.update(drop_upload_answers=1)
    (exports / "Racy.yaml").write_text("title: Racy\nsharing: public\n")
    make_audio(exports / "Racy.wav", freq=650)
    real_delete = SoundCloudClient.delete_track

    def slow_delete(self: SoundCloudClient, urn: str) -> bool:
        gone = real_delete(self, urn)
        # The remove is still busy (more copies to check, a slow link) past the retry's time:
        # the retry gets every chance to upload again.
        eventually(lambda: sandbox.tracks(), timeout=4)
        return gone

    monkeypatch.setattr(SoundCloudClient, "delete_track", slow_delete)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: (t := in_state(state, "Racy", State.READY)) and t.posted_sha256 and t,
            what="an upload whose answer was lost",
        )
        said = command(config, "remove", track="Racy", remote=True)
        wait_for(lambda: in_state(state, "Racy", State.REMOVED), what="removed")
        eventually(lambda: sandbox.tracks(), timeout=2)  # a late upload would show up now
    left = sandbox.tracks()
    assert left == [], (
        f"remove said {said!r} but SoundCloud still has "
        f"{[(r['title'], r['sharing']) for r in left]}:\n" + dump(state)
    )


def test_an_export_swapped_for_a_symlink_after_the_check_sends_no_private_bytes(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export is swapped for a link to a private file between the upload's last check and
    its request (while check_quota runs): not a byte of the private file is sent."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    private = tmp_path / "private" / "Unreleased.wav"
    private.parent.mkdir()
    private.write_bytes(b"PRIVATE!" * (512 * 1024))  # 4 MiB nobody may publish
    (exports / "Swap.yaml").write_text("title: Swap\nsharing: public\n")
    make_audio(exports / "Swap.wav", seconds=3, freq=660)
    swapped = threading.Event()
    real_quota = SoundCloudClient.check_quota

    def quota_then_swap(self: SoundCloudClient, duration: float | None = None) -> Any:
        answer = real_quota(self, duration)
        if not swapped.is_set():
            tmp = exports / ".swap"
            tmp.symlink_to(private)
            os.replace(tmp, exports / "Swap.wav")  # atomic: the export is now a link
            swapped.set()
        return answer

    monkeypatch.setattr(SoundCloudClient, "check_quota", quota_then_swap)
    sent: list[bytes] = []
    original = client_module._verified_chunks

    def recorded(part: Any) -> Iterator[bytes]:
        for chunk in original(part):
            if part.name == "track[asset_data]":
                sent.append(chunk)
            yield chunk

    monkeypatch.setattr(client_module, "_verified_chunks", recorded)
    with ThreadedDaemon(config, token_store):
        assert wait_for(swapped.is_set, what="the swap")
        wait_for(lambda: in_state(state, "Swap", State.INVALID, *DONE), what="settled")
    leaked = sum(chunk.count(b"PRIVATE!") * 8 for chunk in sent)
    assert sandbox.tracks() == []
    assert leaked == 0, f"{leaked} bytes of {private} were streamed to SoundCloud"


def test_a_link_swapped_in_right_after_the_containment_check_is_never_uploaded(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile writer to a shared folder swaps a link in between the ingest's containment check
    and its stat (looping os.replace): the private file never becomes 'the checked export'."""
    from releaseosd.pipeline import ingest as ingest_module

    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    private = make_audio(tmp_path / "private" / "Unreleased.wav", seconds=2, freq=671)
    (exports / "Bait.yaml").write_text("title: Bait\nsharing: public\n")
    make_audio(exports / "Bait.wav", seconds=2, freq=672)
    real_check = ingest_module.outside_its_root
    swapped = threading.Event()

    def check_then_swap(path: Path, root: Path) -> str | None:
        verdict = real_check(path, root)
        if path.name == "Bait.wav" and verdict is None and not swapped.is_set():
            tmp = exports / ".bait"
            tmp.symlink_to(private)
            os.replace(tmp, exports / "Bait.wav")
            swapped.set()
        return verdict

    monkeypatch.setattr(ingest_module, "outside_its_root", check_then_swap)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Bait", State.INVALID, *DONE), what="settled")
    assert swapped.is_set()
    leaked = [
        r["title"] for r in sandbox.tracks()
        if sandbox.upload_of(r["urn"]).path.read_bytes() == private.read_bytes()
    ]  # fmt: skip
    assert leaked == [], f"{private} was published as {leaked}:\n" + dump(state)


def test_remove_remote_of_a_refused_copy_leaves_the_original_on_soundcloud(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Chaos seed 1001: a backup copy was refused as the same audio; 'remove COPY --remote'
    looked SoundCloud up by the audio's machine tag and deleted the released original."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Keeper.yaml").write_text("title: Keeper\nsharing: public\n")
    make_audio(exports / "Keeper.wav", freq=741)
    with ThreadedDaemon(config, token_store):
        original = wait_for(lambda: in_state(state, "Keeper", State.RELEASED), what="released")
        (exports / "backup").mkdir()
        (exports / "backup" / "Keeper.yaml").write_text("title: Keeper Backup\nsharing: public\n")
        make_audio(exports / "backup" / "Keeper.wav", freq=741)
        copy = wait_for(
            lambda: next((t for t in read_tracks(state) if t.duplicate_of), None),
            what="the copy refused",
        )
        said = command(config, "remove", track=copy.id, remote=True)
        assert "removed" in said, said
        # The producer is told where the audio still is, and that it is another track's.
        assert f"stays on SoundCloud as 'Keeper' (id {original.id}" in said, said
        assert str(original.soundcloud.permalink_url) in said, said
    assert [t["urn"] for t in sandbox.tracks()] == [original.soundcloud.urn]
    assert [r for r in sandbox.requests if r.method == "DELETE"] == []
