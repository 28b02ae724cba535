"""Things tried that held up (kept as regression guards)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DONE, ThreadedDaemon, in_state, make_audio, track, wait_for, write_config
from sandbox_tools import TestSandbox

from releaseosd.model.states import State
from releaseosd.soundcloud import client as client_module
from releaseosd.soundcloud.tags import machine_tag

# The CLI reaches the in-process daemon over its control socket.
pytestmark = pytest.mark.usefixtures("runtime_dir")


def test_a_sidecar_deleted_after_upload_and_written_back_sends_only_the_real_edit(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    sidecar = exports / "Gone.yaml"
    text = "title: Gone\nsharing: public\ngenre: Dub\n"
    sidecar.write_text(text)
    make_audio(exports / "Gone.wav", freq=951)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Gone", State.RELEASED), what="released")
        mark = len(sandbox.requests)
        sidecar.unlink()  # (a deleted sidecar alone is not acted on: nothing to see)
        time.sleep(1.0)  # a few stable periods without it
        sidecar.write_text(text)
        time.sleep(1.0)
        assert (track(state, "Gone") or first).sidecar_digest == first.sidecar_digest
        sidecar.write_text(text.replace("Dub", "Dubstep"))
        wait_for(
            lambda: (
                (t := track(state, "Gone"))
                and t.soundcloud.sent_fields.get("genre") == "Dubstep"
                and t.sync is None
            ),
            what="edit sent",
        )
    puts = [r.json_body for r in sandbox.requests[mark:] if r.method == "PUT"]
    assert puts == [{"track": {"genre": "Dubstep"}}]


def test_a_re_export_by_rename_during_the_upload_sends_the_checked_mix_and_reports_the_new(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reached, go = threading.Event(), threading.Event()
    original = client_module._verified_chunks

    def held(part: Any) -> Iterator[bytes]:
        chunks = original(part)
        if part.name == "track[asset_data]" and not go.is_set():
            first = next(chunks)  # the file is open: then the DAW renames a new mix over it
            reached.set()
            go.wait(30)
            yield first
        yield from chunks

    monkeypatch.setattr(client_module, "_verified_chunks", held)
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Mid.yaml").write_text("title: Mid\nsharing: public\n")
    old = make_audio(exports / "Mid.wav", freq=961).read_bytes()
    with ThreadedDaemon(config, token_store):
        assert reached.wait(30)
        make_audio(exports / "Mid.wav", freq=962)  # os.replace over the file being sent
        go.set()
        done = wait_for(
            lambda: (t := in_state(state, "Mid", *DONE)) and t.local_change and t,
            what="released, new mix reported",
        )
    [remote] = sandbox.tracks()
    assert sandbox.upload_of(remote["urn"]).path.read_bytes() == old
    assert machine_tag(done.soundcloud.sha256 or "") in remote["tag_list"]
