"""Hostile and mistaken sidecars in the real daemon: an alias bomb, an impossible date, a key
given twice and a bracket never closed each end `invalid` with a file:line message, quickly, and
the good track dropped beside them still goes up to the sandbox."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from daemon_harness import ThreadedDaemon, make_audio, read_tracks, wait_for, write_config
from sandbox_tools import TestSandbox

from releaseosd.model.states import State
from releaseosd.model.track import Track


def _bomb() -> str:
    """~450 bytes that expand to a billion values: each level aliases the one before ten times."""
    names = [f"l{i}" for i in range(9)]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['x'] * 10)}]"]
    for prev, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]")
    return "title: Bomb\n" + "\n".join(lines) + "\n"


BAD = {
    # stem: (sidecar text, what its last_error must contain, after the file's path)
    "Bomb": (_bomb(), ":5: l3: too many aliases: expands to 11,111 values"),
    "BadDate": (
        "title: Bad Date\nsharing: public\nrelease_at: 2026-13-01T10:00:00\n",
        ":3: release_at: ",
    ),
    "Twice": (
        "title: Twice\nsharing: public\ntitle: Twice Again\n",
        ":3: title: given twice (first on line 1)",
    ),
    "Open": (
        "title: Open\ntags: [techno, house\nsharing: public\n",
        ":2: tags: the list opened here is never closed ('[' without ']')",
    ),
}


def _by_audio(state: Path) -> dict[str, Track]:
    return {Path(t.audio_path).stem: t for t in read_tracks(state)}


def test_bad_sidecars_end_invalid_and_the_good_track_still_uploads(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config_path = write_config(tmp_path, sandbox.base_url)
    exports = tmp_path / "exports"
    state = tmp_path / "state"

    with ThreadedDaemon(config_path, token_store):
        # The bad ones first, so the good one is ingested while (or after) they are handled.
        for i, (stem, (text, _)) in enumerate(BAD.items()):
            (exports / f"{stem}.yaml").write_text(text, encoding="utf-8")
            make_audio(exports / f"{stem}.wav", freq=310 + 70 * i)
        (exports / "Good.yaml").write_text("title: Good Song\nsharing: public\n", encoding="utf-8")
        make_audio(exports / "Good.wav", freq=990)

        bad = wait_for(
            lambda: (
                (tracks := _by_audio(state))
                and all(stem in tracks and tracks[stem].state == State.INVALID for stem in BAD)
                and tracks
            ),
            timeout=30,
            what="every bad sidecar reported invalid",
        )
        good = wait_for(
            lambda: (
                (t := _by_audio(state).get("Good")) is not None
                and t.state in (State.RELEASED, State.PUBLISHED)
                and t
            ),
            timeout=60,
            what="the good track uploaded beside them",
        )

    for stem, (_, expected) in BAD.items():
        error = bad[stem].last_error or ""
        assert f"{exports / stem}.yaml{expected}" in error, (stem, error)
        assert "Traceback" not in error
        assert len(error) < 1000, (stem, len(error))
    assert good.state == State.RELEASED
    remote = sandbox.tracks()
    assert [t["title"] for t in remote] == ["Good Song"]
    assert remote[0]["sharing"] == "public"
