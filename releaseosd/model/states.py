"""Track states and the only transitions between them.

Every stage reads a track in one state and moves it to the next; keeping the allowed moves in one
table means a bug elsewhere shows up as a refused transition, not as a track silently skipped.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    PENDING = "pending"  # seen, not complete yet (audio still being written, or no sidecar yet)
    INVALID = "invalid"  # bad sidecar or audio; waits for the producer to fix the file
    BUILDING = "building"  # probing, preview and artwork under way
    READY = "ready"  # built; waiting for an upload slot or the next attempt time
    UPLOADING = "uploading"  # an upload is (or may be) in flight
    PROCESSING = "processing"  # on SoundCloud, which is still transcoding it
    SCHEDULED = "scheduled"  # on SoundCloud privately; goes public at release_at
    PUBLISHED = "published"  # on SoundCloud, private, nothing more to do
    RELEASED = "released"  # on SoundCloud, public
    FAILED = "failed"  # gave up; needs the producer (`releaseosd retry`)
    NEEDS_LOGIN = "needs_login"  # SoundCloud login expired; resumes after `releaseosd auth login`
    REMOVED = "removed"  # removed by the producer; kept so the file is not ingested again


ALLOWED: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.BUILDING, State.INVALID, State.REMOVED}),
    State.INVALID: frozenset({State.PENDING, State.BUILDING, State.REMOVED}),
    State.BUILDING: frozenset({State.READY, State.INVALID, State.PENDING, State.REMOVED}),
    State.READY: frozenset(
        {State.UPLOADING, State.BUILDING, State.INVALID, State.PENDING, State.FAILED, State.REMOVED}
    ),
    # An upload that may have reached SoundCloud never goes back to a purely local state without
    # the machine-tag lookup: READY here means "look it up, then upload if absent".
    # PENDING: the export changed under the upload, which was cut off before its last byte.
    State.UPLOADING: frozenset(
        {
            State.PROCESSING,
            State.READY,
            State.PENDING,
            State.FAILED,
            State.NEEDS_LOGIN,
            State.REMOVED,
        }
    ),
    State.PROCESSING: frozenset(
        {
            State.SCHEDULED,
            State.PUBLISHED,
            State.RELEASED,
            State.READY,  # processing failed: the remote copy is deleted, then uploaded again
            State.FAILED,
            State.NEEDS_LOGIN,
            State.REMOVED,
        }
    ),
    State.SCHEDULED: frozenset(
        {State.RELEASED, State.PUBLISHED, State.FAILED, State.NEEDS_LOGIN, State.REMOVED}
    ),
    State.PUBLISHED: frozenset({State.RELEASED, State.SCHEDULED, State.NEEDS_LOGIN, State.REMOVED}),
    # PUBLISHED: its sidecar took it back ('sharing: private'); it is private on SoundCloud now.
    State.RELEASED: frozenset({State.PUBLISHED, State.REMOVED}),
    State.FAILED: frozenset(
        {
            State.READY,
            State.INVALID,
            State.PENDING,
            State.BUILDING,
            State.PROCESSING,
            State.SCHEDULED,
            State.PUBLISHED,
            State.REMOVED,
        }
    ),
    # A track that never reached SoundCloud waits here like a ready one: a re-export or a sidecar
    # edit rebuilds it (the ingest checks it is not on SoundCloud first).
    State.NEEDS_LOGIN: frozenset(
        {
            State.PENDING,
            State.BUILDING,
            State.INVALID,
            State.READY,
            State.PROCESSING,
            State.SCHEDULED,
            State.PUBLISHED,
            State.FAILED,
            State.REMOVED,
        }
    ),
    State.REMOVED: frozenset(),
}

# Done with: nothing is due for these unless the producer changes something (a sidecar edit, a
# removal). The store keeps them apart from the work in progress (see store.py).
FINISHED = frozenset({State.PUBLISHED, State.RELEASED, State.REMOVED})

# States in which the audio may already be on SoundCloud.
REMOTE = frozenset(
    {State.UPLOADING, State.PROCESSING, State.SCHEDULED, State.PUBLISHED, State.RELEASED}
)


class TransitionError(Exception):
    def __init__(self, track_id: str, current: State, wanted: State) -> None:
        super().__init__(f"track {track_id}: cannot go from {current} to {wanted}")
        self.current = current
        self.wanted = wanted


def can_move(current: State, wanted: State) -> bool:
    return wanted == current or wanted in ALLOWED[current]
