"""A listener is one callable and one line of wiring: it hears every event of a real run, in
the order things happened, and a listener that breaks does not break the run."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    ThreadedDaemon,
    command,
    in_state,
    local,
    make_audio,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.events import (
    Edited,
    Event,
    Released,
    StateChanged,
    TrackEvent,
    Uploaded,
    UploadProgress,
)
from releaseosd.model.states import State

pytestmark = pytest.mark.usefixtures("runtime_dir")


class Recorder:
    """The whole listener: what a dashboard stream or a webhook would start from."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


def test_a_listener_hears_a_scheduled_track_from_upload_to_release_in_order(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    release_at = local(86400).replace(microsecond=0)
    (exports / "Heard.yaml").write_text(
        f"title: Heard\nsharing: public\nrelease_at: '{release_at.isoformat()}'\n"
    )
    make_audio(exports / "Heard.wav", freq=701)
    recorder = Recorder()
    daemon = ThreadedDaemon(config, token_store)

    def broken(event: Event) -> None:
        raise RuntimeError("a listener with a bug")

    daemon.daemon.events.subscribe(broken)
    daemon.daemon.events.subscribe(recorder)  # the wiring line
    with daemon:
        wait_for(lambda: in_state(state, "Heard", State.SCHEDULED), what="scheduled")
        sidecar = exports / "Heard.yaml"
        sidecar.write_text(sidecar.read_text() + "genre: Dub\n")
        wait_for(lambda: any(isinstance(e, Edited) for e in recorder.events), what="edit heard")
        command(config, "release", track="Heard")  # now
        released = wait_for(lambda: in_state(state, "Heard", State.RELEASED), what="released")
        wait_for(lambda: any(isinstance(e, Released) for e in recorder.events), what="heard")
    changes = [e for e in recorder.events if isinstance(e, StateChanged)]
    # Every change of state, from the record's creation on, each from where the last one left.
    assert changes[0].before is None and changes[-1].after == State.RELEASED, changes
    assert all(a.after == b.before for a, b in itertools.pairwise(changes)), changes
    assert State.UPLOADING in [c.after for c in changes]
    steps = [e for e in recorder.events if not isinstance(e, StateChanged)]
    # Each stage's event comes after the store holds the state it reports.
    order = [
        type(e).__name__ if not isinstance(e, StateChanged) else e.after for e in recorder.events
    ]
    assert order.index("Uploaded") > order.index(State.SCHEDULED)
    assert order.index("Released") > order.index(State.RELEASED)
    recorder.events = steps
    kinds = [type(e) for e in recorder.events if isinstance(e, TrackEvent)]
    sending = kinds.count(UploadProgress)
    assert sending >= 1, kinds
    assert kinds == [UploadProgress] * sending + [Uploaded, Edited, Released], kinds
    progress = [e for e in recorder.events if isinstance(e, UploadProgress)]
    assert progress[-1].sent == progress[-1].total > Path(released.audio_path).stat().st_size
    assert [e.sent for e in progress] == sorted(e.sent for e in progress)
    uploaded, edited, went_public = recorder.events[sending:]
    assert isinstance(edited, Edited) and edited.on_soundcloud
    assert isinstance(uploaded, Uploaded) and isinstance(went_public, Released)
    assert uploaded.track_id == went_public.track_id == released.id
    assert uploaded.public_at is not None and uploaded.public_at.timestamp() == pytest.approx(
        release_at.timestamp()
    )
    assert went_public.url == released.soundcloud.permalink_url
    assert uploaded.at <= went_public.at
    assert len(sandbox.tracks()) == 1


def test_failures_are_values_on_the_record_counted_by_kind(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """A 429 and a 503 on the upload, then a 503 going public: each is on the record as kind,
    status and step (no decision reads the history's wording)."""
    sandbox.faults.push(429, retry_after=1, match="POST /tracks")
    sandbox.faults.push(503, match="POST /tracks")
    sandbox.faults.push(503, match="PUT /tracks/{track_urn}")
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    release_at = local(86400).replace(microsecond=0)
    (exports / "Bumpy.yaml").write_text(
        f"title: Bumpy\nsharing: public\nrelease_at: '{release_at.isoformat()}'\n"
    )
    make_audio(exports / "Bumpy.wav", freq=702)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Bumpy", State.SCHEDULED), what="scheduled")
        command(config, "release", track="Bumpy")
        done = wait_for(lambda: in_state(state, "Bumpy", State.RELEASED), what="released")
    assert done.failure_counts == {"rate-limited": 1, "retryable": 2}, done.failure_counts
    assert done.failure is not None
    assert (done.failure.step, done.failure.kind, done.failure.status) == (
        "release",
        "retryable",
        503,
    )
    assert done.failure.message in "\n".join(h.note for h in done.history)
