"""The login as the producer changes it while the daemon runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    CLIENT_ID,
    DONE,
    ThreadedDaemon,
    dump,
    eventually,
    in_state,
    make_audio,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State

# The CLI reaches the in-process daemon over its control socket.
pytestmark = pytest.mark.usefixtures("runtime_dir")


def test_after_logout_forgot_the_tokens_the_daemon_uploads_nothing_more(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """`auth logout` deletes the keyring entries; its sign-out at SoundCloud is best effort
    ('forgot the tokens' when it could not reach it). The running daemon reads the keyring at each
    use, so nothing more goes up with the forgotten tokens."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Before.yaml").write_text("title: Before\nsharing: public\n")
    make_audio(exports / "Before.wav", freq=901)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Before", *DONE), what="first upload")
        token_store.delete_all(CLIENT_ID)  # what 'auth logout' leaves when sign-out failed
        (exports / "After.yaml").write_text("title: After\nsharing: public\n")
        make_audio(exports / "After.wav", freq=902)
        after = eventually(lambda: in_state(state, "After", State.NEEDS_LOGIN, *DONE), 30)
    assert after is not None, dump(state)
    assert after.state == State.NEEDS_LOGIN, (
        f"logged out, yet 'After' went up ({after.state}, {after.soundcloud.permalink_url})"
    )
