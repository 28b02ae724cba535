"""What a producer can ask for — retry, release, remove, pause — applied to the store.

The same code runs inside the daemon (reached over the control socket) and in the CLI when no
daemon runs; the daemon passes hooks so that a change takes effect at once (a wake-up, a rebuild).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from releaseosd.model.localtime import parse, shown
from releaseosd.model.metadata import release_date, stored_sidecar
from releaseosd.model.states import State
from releaseosd.model.store import Store
from releaseosd.model.track import AudioStat, Retrying, Track, remove_built_files, utcnow

if TYPE_CHECKING:
    from releaseosd.soundcloud.remote import Remote

log = logging.getLogger("releaseosd.app.commands")


def json_lines(texts: list[str]) -> str:
    """JSON texts as one JSON array, one a line."""
    return "[\n" + ",\n".join(texts) + "\n]" if texts else "[]"


class CommandError(Exception):
    """The request cannot be done as asked; the message says why and what to do instead."""


@dataclass
class Hooks:
    """What the daemon does after a command changed the store; no-ops for the plain CLI."""

    kick: Callable[[], None] = lambda: None
    wake: Callable[[str, dt.datetime], None] = lambda _id, _when: None
    rebuild: Callable[[str], None] = lambda _path: None
    client: Callable[[], Remote] | None = None
    # Keeps the scheduler off a track while a command changes it (no upload or release races it).
    hold: Callable[[str], AbstractContextManager[None]] = lambda _id: contextlib.nullcontext()


def resolve(store: Store, ref: str) -> Track:
    """The one track TRACK names, or a CommandError listing what it could mean."""
    matches = store.find(ref)
    if not matches:
        raise CommandError(f"no track matches '{ref}' (try an id from 'releaseosd status')")
    if len(matches) > 1:
        listed = "; ".join(describe(t) for t in matches[:8])
        more = f" and {len(matches) - 8} more" if len(matches) > 8 else ""
        raise CommandError(
            f"'{ref}' could mean {len(matches)} tracks: {listed}{more}. Nothing was done; name "
            "one by its id"
        )
    return matches[0]


def describe(track: Track) -> str:
    """A track as a confirmation names it: title, id, state and where it is on SoundCloud."""
    where = track.soundcloud.permalink_url or track.soundcloud.urn
    return f"'{track.title}' (id {track.id}, {track.state.value}{', ' + where if where else ''})"


class Commands:
    def __init__(
        self,
        store: Store,
        hooks: Hooks | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        *,
        state_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.hooks = hooks or Hooks()
        self.clock = clock
        self.state_dir = state_dir  # where the tracks' built files are (None: none to delete)

    def status_json(self) -> str:
        """`status --json`: one JSON array, one track a line."""
        return json_lines(self.store.status_texts())

    def retry(self, ref: str) -> str:
        track = resolve(self.store, ref)
        if track.state == State.FAILED:
            # On SoundCloud already: pick up after the upload (check, then schedule or publish).
            back = State.PROCESSING if track.soundcloud.urn else State.READY
            self.store.transition(
                track.id,
                back,
                note="retry asked by the user",
                attempts=0,
                offline_attempts=0,
                next_attempt_at=None,
                last_error=None,
            )
        elif track.state == State.READY:
            self.store.update(
                track.id,
                lambda t: setattr(t, "next_attempt_at", None),
                note="retry now asked by the user",
            )
        elif track.state in (State.INVALID, State.PENDING):
            self.hooks.rebuild(track.audio_path)
        elif track.state in (State.SCHEDULED, State.PUBLISHED, State.RELEASED):
            # Send the sidecar to SoundCloud again (after a refused edit, a missed playlist).
            self.store.update(
                track.id,
                lambda t: setattr(t, "sync", Retrying(due_at=self.clock())),
                note="retry asked by the user: SoundCloud is brought in line with the sidecar",
            )
        elif track.state == State.NEEDS_LOGIN:
            raise CommandError(
                f"'{track.title}' waits for a SoundCloud login: run 'releaseosd auth login'; it "
                "resumes by itself"
            )
        else:
            raise CommandError(f"'{track.title}' is {track.state}: there is nothing to retry")
        self.hooks.kick()
        return f"{track.title}: will be tried again now"

    def release(self, ref: str, when: dt.datetime | None) -> str:
        """Set the release time (None = now). The track goes public at that time."""
        track = resolve(self.store, ref)
        now = self.clock()
        at = when or now
        if track.state in (State.RELEASED, State.REMOVED):
            raise CommandError(f"'{track.title}' is {track.state} already")
        if track.state in (State.INVALID, State.FAILED, State.NEEDS_LOGIN) and when is None:
            raise CommandError(
                f"'{track.title}' is {track.state}: fix that first ('releaseosd status' says why)"
            )

        def apply(t: Track) -> None:
            # Kept apart from the sidecar's values, so a later sidecar reload cannot undo it.
            t.user_release = at
            t.release_at = at
            t.hold_private = False
            t.metadata = {**t.metadata, "release_date": release_date(stored_sidecar(t), at)}
            t.next_attempt_at = None
            if t.state == State.PUBLISHED:
                t.state = State.SCHEDULED

        self.store.update(track.id, apply, note=f"release set to {at.isoformat()} by the user")
        self.hooks.wake(track.id, at)
        self.hooks.kick()
        up = track.soundcloud.urn is not None
        moment = "now" if at <= now else f"at {shown(at)}"
        if up:
            return f"{describe(track)}: goes public {moment}"
        waits = " (uploads are paused: 'releaseosd resume')" if self.store.flag("paused") else ""
        later = "as soon as it is uploaded" if at <= now else f"{moment}, once it is uploaded"
        return f"{describe(track)}: goes public {later}{waits}"

    def show(self, ref: str) -> dict[str, Any]:
        """What TRACK resolves to, for a confirmation to name before anything is done."""
        track = resolve(self.store, ref)
        return {"id": track.id, "description": describe(track)}

    def remove(self, ref: str, remote: bool) -> str:
        found = resolve(self.store, ref)
        with self.hooks.hold(found.id):
            # As it is now that no upload or release can start on it (one running has ended).
            track = self.store.get(found.id) or found
            return self._remove(track, remote)

    def _remove(self, track: Track, remote: bool) -> str:
        if track.state == State.BUILDING:
            raise CommandError(f"{describe(track)} is being built right now; try again in a moment")
        said = ""
        if remote:
            said = self._delete_remote(track)
        elif track.soundcloud.urn:
            said = f"; it stays on SoundCloud ({track.soundcloud.permalink_url})"
        elif track.maybe_remote:
            said = (
                "; an upload of it may have reached SoundCloud without an answer: look there, or "
                f"run 'releaseosd remove {track.id} --remote' to find and delete it"
            )
        if track.state != State.REMOVED:

            def removed(t: Track) -> None:
                t.state = State.REMOVED
                t.sync = None
                # Only this very file stays left alone: a new export at its path is a new track.
                # A file that changed since it was last looked at may be a bounce still being
                # written as the producer removes it: that one is left alone too, once done.
                with contextlib.suppress(OSError):
                    now = AudioStat.of(os.stat(t.audio_path))
                    t.removed_mid_write = now != t.audio_stat
                    t.audio_stat = now

            self.store.update(track.id, removed, note="removed by the user" + said)
        if self.state_dir is not None:
            # Its preview and artwork go with it: nothing builds or uploads a removed track.
            remove_built_files(self.state_dir, track.id)
        return f"{describe(track)}: removed{said}"

    def _delete_remote(self, track: Track) -> str:
        """Delete every copy of the track on SoundCloud: its URN, and any upload found by machine
        tag (one whose answer was lost). If SoundCloud cannot be asked, nothing is removed."""
        from releaseosd.soundcloud.errors import SoundCloudError

        if not track.maybe_remote and not track.sha256:
            return " (it was never on SoundCloud)"
        if self.hooks.client is None:
            raise CommandError(
                "removing from SoundCloud needs SoundCloud access: start the daemon "
                "(releaseosd run) and run this again"
            )
        client = self.hooks.client()
        digests = [
            d
            for d in dict.fromkeys(
                [*track.posted_sha256, track.sha256, track.soundcloud.sha256, track.preview_sha256]
            )
            if d
        ]
        try:
            found = client.copies_of(digests) if digests else []
            # A copy another record knows as its own is that track's, whatever audio they share
            # (a refused copy of a released track, removed with --remote, deleted the original).
            copies = [str(c["urn"]) for c in found]
            strays = [
                urn for urn in copies if all(t.id == track.id for t in self.store.by_urn(urn))
            ]
            urns = list(dict.fromkeys([track.soundcloud.urn, *strays]))
            deleted = [urn for urn in urns if urn and client.delete_track(urn)]
        except SoundCloudError as exc:
            raise CommandError(
                f"could not make sure {describe(track)} is gone from SoundCloud ({exc}); nothing "
                "was removed. Try again when SoundCloud can be reached."
            ) from None
        owners = [
            other
            for urn in copies
            if urn not in strays
            for other in self.store.by_urn(urn)
            if other.id != track.id
        ]
        kept = "".join(
            f"; the same audio stays on SoundCloud as {describe(other)}, a track of its own"
            for other in {o.id: o for o in owners}.values()
        )
        if not deleted:
            return f" (nothing of it was on SoundCloud){kept}"
        return f" and deleted on SoundCloud ({', '.join(deleted)}){kept}"

    def pause(self) -> str:
        self.store.set_flag("paused", True)
        return "uploads paused (releases at their time still happen); 'releaseosd resume' resumes"

    def resume(self) -> str:
        self.store.set_flag("paused", False)
        self.hooks.kick()
        return "uploads resumed"


def dispatch(commands: Commands, name: str, body: dict[str, Any]) -> Any:
    """One command by name with its JSON body: the daemon's socket, the daemon-less CLI and the
    dashboard all go through here."""
    if name == "retry":
        return commands.retry(str(body["track"]))
    if name == "release":
        when = parse(str(body["at"])) if body.get("at") else None
        return commands.release(str(body["track"]), when)
    if name == "remove":
        remote = body.get("remote", False)
        if not isinstance(remote, bool):
            # "false" would be true: a deletion that cannot be undone is asked for in JSON.
            raise ValueError(f"'remote' must be true or false, not {remote!r}")
        return commands.remove(str(body["track"]), remote)
    if name == "show":
        return commands.show(str(body["track"]))
    if name == "pause":
        return commands.pause()
    if name == "resume":
        return commands.resume()
    raise CommandError(f"unknown command {name}")
