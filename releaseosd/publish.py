"""Publish stage: what happens once SoundCloud has the track — schedule it, flip it public at its
release minute, add it to playlists, and send later sidecar edits."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from releaseosd.retry import at, backoff_seconds
from releaseosd.states import State
from releaseosd.track import Track
from releaseosd.upload import OnStage, target_sharing, track_fields, wait_for_user

if TYPE_CHECKING:
    pass

log = logging.getLogger("releaseosd.publish")

# A release this much later than asked for is reported as late in the notification.
LATE_AFTER = dt.timedelta(seconds=60)


class Publisher(OnStage):
    def processed(self, track_id: str) -> None:
        """SoundCloud finished processing: schedule the release, or finish now."""
        track = self.store.get(track_id)
        if track is None or track.state != State.PROCESSING:
            return
        now = self.clock()
        if track.release_at is not None and track.release_at > now:
            if track.soundcloud.sharing != "private" and not self._make_private(track):
                return
            self.store.transition(track_id, State.SCHEDULED, next_attempt_at=None)
            public_at = track.release_at if target_sharing(track) == "public" else None
            self.announce.uploaded(track.title, track.soundcloud.permalink_url, public_at)
            log.info("%s: uploaded privately; goes public at %s", track.title, track.release_at)
            self.wake(track_id, track.release_at)
            self.sync_metadata(track_id)  # edits made while it was uploading
            return
        if track.release_at is not None or track.soundcloud.sharing != target_sharing(track):
            self.release(track_id)
            return
        self._finished(track, now)

    def _make_private(self, track: Track) -> bool:
        """A release time arrived while the upload ran public (or an adopted copy is public):
        hide it until its minute. False when that failed and a retry is scheduled."""
        from releaseosd.soundcloud.errors import NEEDS_USER, SoundCloudError

        assert track.soundcloud.urn is not None
        try:
            self.client().update_track(track.soundcloud.urn, {"sharing": "private"})
        except NEEDS_USER as exc:
            wait_for_user(self.store, self.announce, track.id, exc)
            return False
        except SoundCloudError as exc:
            when = at(self.clock(), backoff_seconds(1, 2.0, 60.0, self.rng, exc.retry_after))
            self.store.update(
                track.id,
                lambda t: setattr(t, "next_attempt_at", when),
                note=f"check failed: making it private until release: {exc}",
            )
            self.wake(track.id, when)
            return False

        def hidden(t: Track) -> None:
            t.soundcloud.sharing = "private"
            t.soundcloud.sent_fields = {**t.soundcloud.sent_fields, "sharing": "private"}

        self.store.update(track.id, hidden, note="made private until its release time")
        return True

    def release(self, track_id: str) -> None:
        """Flip the track to its sidecar's sharing (public, normally). Never raises."""
        from releaseosd.soundcloud.errors import NEEDS_USER, SoundCloudError

        track = self.store.get(track_id)
        if track is None or track.state not in (
            State.SCHEDULED,
            State.PROCESSING,
            State.PUBLISHED,
        ):
            return
        if not track.soundcloud.urn:
            return
        sharing = target_sharing(track)
        try:
            if track.soundcloud.sharing != sharing:
                self.client().update_track(track.soundcloud.urn, {"sharing": sharing})
        except NEEDS_USER as exc:
            wait_for_user(self.store, self.announce, track_id, exc)
            return
        except SoundCloudError as exc:
            if not exc.retryable:
                self.store.transition(track_id, State.FAILED, last_error=str(exc))
                self.announce.failed(track.title, str(exc), f"releaseosd release {track.id} --now")
                return
            self._retry_release(track, exc)
            return

        def shared(t: Track) -> None:
            t.soundcloud.sharing = sharing
            t.soundcloud.sent_fields = {**t.soundcloud.sent_fields, "sharing": sharing}

        self.store.update(track_id, shared)
        fresh = self.store.get(track_id)
        if fresh is not None:
            self._finished(fresh, self.clock())

    def _retry_release(self, track: Track, exc: Any) -> None:
        attempt = sum(1 for h in track.history if h.note.startswith("release attempt failed")) + 1
        delay = backoff_seconds(
            attempt,
            min(self.config.uploads.backoff_base_seconds, 30.0),
            min(self.config.uploads.backoff_max_seconds, 300.0),
            self.rng,
            exc.retry_after,
        )
        when = at(self.clock(), delay)

        def later(t: Track) -> None:
            t.next_attempt_at = when
            t.last_error = str(exc)

        self.store.update(track.id, later, note=f"release attempt failed: {exc}")
        log.warning("%s: going public failed (%s); trying again at %s", track.title, exc, when)
        self.wake(track.id, when)

    def _finished(self, track: Track, now: dt.datetime) -> None:
        public = track.soundcloud.sharing == "public"
        late_by = None
        if track.release_at is not None and now - track.release_at > LATE_AFTER:
            late_by = now - track.release_at

        def done(t: Track) -> None:
            # One write: nobody may see the new state without its publication time.
            t.state = State.RELEASED if public else State.PUBLISHED
            t.soundcloud.published_at = now
            t.next_attempt_at = None
            t.last_error = None

        self.store.update(track.id, done, note=f"late by {late_by}" if late_by else "")
        url = track.soundcloud.permalink_url or ""
        if public:
            self.announce.released(track.title, url, late_by)
        else:
            self.announce.uploaded(track.title, url, None)
        self._playlists(track.id)
        self.sync_metadata(track.id)  # edits made while it was uploading

    def _playlists(self, track_id: str) -> None:
        from releaseosd.soundcloud.errors import SoundCloudError

        track = self.store.get(track_id)
        if track is None or not track.soundcloud.urn:
            return
        for name in track.metadata.get("playlist") or []:
            if name in track.soundcloud.playlists:
                continue
            try:
                self.client().ensure_in_playlist(name, track.soundcloud.urn)
            except SoundCloudError as exc:
                log.warning("%s: could not add to playlist '%s': %s", track.title, name, exc)
                self._note_playlist(track_id, name, f"not added to playlist '{name}': {exc}")
                continue
            self._note_playlist(track_id, name, None)

    def _note_playlist(self, track_id: str, name: str, error: str | None) -> None:
        def note(t: Track) -> None:
            if error is None:
                t.soundcloud.playlists.append(name)
            else:
                t.last_error = error

        self.store.update(track_id, note, note=error or f"added to playlist '{name}'")

    def sync_metadata(self, track_id: str) -> None:
        """After a sidecar edit: move the release if its time moved, send only what changed."""
        from releaseosd.soundcloud.errors import SoundCloudError

        track = self.store.get(track_id)
        if track is None or not track.soundcloud.urn:
            return
        urn = track.soundcloud.urn
        if track.state in (State.SCHEDULED, State.PUBLISHED):
            if track.release_at is not None and track.release_at > self.clock():
                if track.state == State.PUBLISHED:
                    self.store.transition(track_id, State.SCHEDULED, note="release time set")
                self.wake(track_id, track.release_at)
            elif track.state == State.SCHEDULED or track.soundcloud.sharing != target_sharing(
                track
            ):
                # The release time was taken out or has passed, or the sharing changed: it goes
                # to its sharing now, as a scheduled release (retried like one if that fails).
                if track.state == State.PUBLISHED:
                    self.store.transition(track_id, State.SCHEDULED, note="sharing changed")
                self.release(track_id)
            track = self.store.get(track_id)
            if track is None:
                return
        if track.state not in (State.SCHEDULED, State.PUBLISHED, State.RELEASED):
            return  # still processing: processed() sends whatever changed meanwhile
        sharing = track.soundcloud.sharing or "private"
        wanted = track_fields(track, sharing).metadata(track.sha256)
        changes = {k: v for k, v in wanted.items() if track.soundcloud.sent_fields.get(k) != v}
        if not changes:
            return
        try:
            self.client().update_track(urn, changes)
        except SoundCloudError as exc:
            log.warning("%s: could not send the sidecar's changes: %s", track.title, exc)
            pending = f"sidecar changes not sent yet: {exc}"
            self.store.update(track_id, lambda t: setattr(t, "last_error", pending))
            return

        def sent(t: Track) -> None:
            t.soundcloud.sent_fields = {**t.soundcloud.sent_fields, **changes}
            t.last_error = None

        self.store.update(track_id, sent, note="sent changed fields: " + ", ".join(sorted(changes)))
