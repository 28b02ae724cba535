"""End to end over real loopback HTTP: exports dropped into a watched folder end on the sandbox."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from daemon_harness import ThreadedDaemon, by_title, local, make_audio, wait_for, write_config
from sandbox_tools import TestSandbox

from releaseosd.model.states import State


def test_plain_scheduled_and_bad_tracks(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config_path = write_config(tmp_path, sandbox.base_url)
    exports = tmp_path / "exports"
    state = tmp_path / "state"
    release_at = local(6)

    (exports / "Plain.yaml").write_text(
        "title: Plain Song\nsharing: public\ngenre: House\ntags: [house, late night]\n"
        "bpm: 124\nkey: Am\nplaylist: Night Works\n"
    )
    make_audio(exports / "Plain.wav", freq=330)
    (exports / "Later.yaml").write_text(
        f"title: Later Song\nsharing: public\nrelease_at: {release_at.isoformat()}\n"
    )
    make_audio(exports / "Later.wav", freq=550)
    (exports / "Broken.yaml").write_text("title: Broken\nbpm: fast\nsharing: everyone\n")
    make_audio(exports / "Broken.wav", freq=770)

    with ThreadedDaemon(config_path, token_store):
        tracks = wait_for(
            lambda: (
                (t := by_title(state))
                and t.get("Plain Song", None) is not None
                and t["Plain Song"].state == State.RELEASED
                and t.get("Later Song") is not None
                and t["Later Song"].state == State.SCHEDULED
                and t
            ),
            what="plain released and later scheduled",
        )
        later = tracks["Later Song"]
        assert later.soundcloud.sharing == "private"
        remote = {t["title"]: t for t in sandbox.tracks()}
        assert remote["Later Song"]["sharing"] == "private"

        released = wait_for(
            lambda: (
                by_title(state)["Later Song"].state == State.RELEASED
                and by_title(state)["Later Song"]
            ),
            timeout=20,
            what="later released",
        )
        published_at = released.soundcloud.published_at
        assert published_at is not None
        # Goes public at its time (within 2 s), never before.
        assert release_at <= published_at <= release_at + dt.timedelta(seconds=2)

    tracks = by_title(state)
    broken = next(t for t in tracks.values() if t.audio_path.endswith("Broken.wav"))
    assert broken.state == State.INVALID
    assert "Broken.yaml:2: bpm:" in (broken.last_error or "")
    assert "Broken.yaml:3: sharing:" in (broken.last_error or "")

    remote_tracks = sandbox.tracks()
    assert sorted(t["title"] for t in remote_tracks) == ["Later Song", "Plain Song"]
    plain = next(t for t in remote_tracks if t["title"] == "Plain Song")
    assert plain["sharing"] == "public"
    assert plain["genre"] == "House"
    assert '"late night"' in plain["tag_list"] and "house" in plain["tag_list"]
    assert "releaseosd:sha256=" in plain["tag_list"]
    assert "BPM: 124" in plain["description"] and "Key: Am" in plain["description"]
    assert all(t["sharing"] == "public" for t in remote_tracks)
    playlists = sandbox.playlists()
    assert [p["title"] for p in playlists] == ["Night Works"]
    assert [t["urn"] for t in playlists[0]["tracks"]] == [tracks["Plain Song"].soundcloud.urn]


def test_without_a_soundcloud_app_tracks_wait_for_the_user(
    tmp_path: Path, sandbox: TestSandbox, notification_bus: Any
) -> None:
    config_path = write_config(tmp_path, sandbox.base_url)
    config_path.write_text(config_path.read_text().replace("  client_id: e2e-client\n", ""))
    exports = tmp_path / "exports"
    for name in ("One", "Two"):
        (exports / f"{name}.yaml").write_text(f"title: {name}\nsharing: public\n")
        make_audio(exports / f"{name}.wav", freq=300 + len(name) * 40 + ord(name[0]))
    from daemon_harness import ThreadedDaemon as Daemon

    from releaseosd.soundcloud.tokens import TokenStore

    with Daemon(config_path, TokenStore(backend=_EmptyKeyring())):
        tracks = wait_for(
            lambda: (
                len(ts := by_title(tmp_path / "state")) == 2
                and all(t.state == State.NEEDS_LOGIN for t in ts.values())
                and ts
            ),
            what="both waiting for the user",
        )
        notification_bus.wait_for(1)
    assert all("soundcloud.client_id is not set" in (t.last_error or "") for t in tracks.values())
    assert all(t.attempts == 0 for t in tracks.values())
    # One notification for the episode, not one per track.
    [note] = notification_bus.received()
    assert note["summary"] == "releaseosd cannot reach your SoundCloud"
    assert "soundcloud.client_id is not set" in note["body"]
    assert sandbox.tracks() == []


class _EmptyKeyring:
    def get_password(self, service: str, username: str) -> None:
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        raise AssertionError("nothing should be stored")

    def delete_password(self, service: str, username: str) -> None:
        pass
