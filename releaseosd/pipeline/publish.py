"""Publish stage: what happens once SoundCloud has the track — schedule it, flip it public at its
release minute, and keep SoundCloud in line with the sidecar (edits, playlists).

Every remote step that meets a transient failure is tried again by the uploads' rules (backoff,
Retry-After, rate limits and offline spells not counting); a permanent one tells the producer
what to do. What is still owed to SoundCloud lives in the record (`sync`), so a crash or a
restart picks it up where it was.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from releaseosd.model.events import Failed, Released, Uploaded
from releaseosd.model.states import State
from releaseosd.model.track import Retrying, Track
from releaseosd.pipeline.retry import at, plan_for
from releaseosd.pipeline.stage import OnStage, target_sharing, track_fields, wait_for_user

log = logging.getLogger("releaseosd.pipeline.publish")

# A release this much later than asked for is reported as late in the notification.
LATE_AFTER = dt.timedelta(seconds=60)
# States in which what SoundCloud shows is kept in line with the sidecar.
SYNCED = (State.SCHEDULED, State.PUBLISHED, State.RELEASED)
# Free-text fields SoundCloud empties when sent "" (the others have no "nothing" value to send).
CLEARABLE = ("description", "genre", "label_name", "release", "isrc")


class Publisher(OnStage):
    def processed(self, track_id: str) -> None:
        """SoundCloud finished processing: schedule the release, or finish now."""
        track = self.store.get(track_id)
        if track is None or track.state != State.PROCESSING:
            return
        self.step_done(track_id)
        now = self.clock()
        if track.release_at is not None and track.release_at > now:
            if track.soundcloud.sharing != "private" and not self.make_private(track):
                return
            self.store.transition(
                track_id, State.SCHEDULED, next_attempt_at=None, sync=Retrying(due_at=now)
            )
            public_at = track.release_at if target_sharing(track) == "public" else None
            self.emit(
                Uploaded(
                    track_id=track.id,
                    title=track.title,
                    url=track.soundcloud.permalink_url,
                    public_at=public_at,
                )
            )
            log.info("%s: uploaded privately; goes public at %s", track.title, track.release_at)
            self.wake(track_id, track.release_at)
            self.sync(track_id)  # edits made while it was uploading; its private playlists
            return
        if track.release_at is not None or track.soundcloud.sharing != target_sharing(track):
            self.release(track_id)
            return
        self._finished(track, now)

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
            wait_for_user(self.store, self.events, track_id, exc)
            return
        except SoundCloudError as exc:
            doing = "going public" if sharing == "public" else f"setting it {sharing}"
            self.step_failed(
                track, exc, doing, "release", fix=f"releaseosd release {track.id} --now"
            )
            return

        def shared(t: Track) -> None:
            t.soundcloud.sharing = sharing
            t.soundcloud.sent_fields = {**t.soundcloud.sent_fields, "sharing": sharing}

        self.store.update(track_id, shared)
        self.step_done(track_id)
        fresh = self.store.get(track_id)
        if fresh is not None:
            self._finished(fresh, self.clock())

    def _finished(self, track: Track, now: dt.datetime) -> None:
        public = track.soundcloud.sharing == "public"
        late_by = None
        if track.release_at is not None and now - track.release_at > LATE_AFTER:
            late_by = now - track.release_at

        def done(t: Track) -> None:
            # One write: nobody may see the new state without its publication time, and what is
            # owed to SoundCloud now (edits, the playlists a public track may join) is on record
            # before anything is sent.
            t.state = State.RELEASED if public else State.PUBLISHED
            t.soundcloud.published_at = now
            t.next_attempt_at = None
            t.last_error = None
            t.warning = None
            t.sync = Retrying(due_at=now)

        self.store.update(track.id, done, note=f"late by {late_by}" if late_by else "")
        url = track.soundcloud.permalink_url or ""
        if public:
            self.emit(Released(track_id=track.id, title=track.title, url=url, late_by=late_by))
        else:
            self.emit(Uploaded(track_id=track.id, title=track.title, url=url, public_at=None))
        self.sync(track.id)

    # --- keeping SoundCloud in line with the sidecar -------------------------------------------

    def sync(self, track_id: str) -> None:
        """Send what SoundCloud is owed: a moved release time, the sidecar's changed fields, the
        playlists. Never raises; what could not be done is retried or reported."""
        from releaseosd.soundcloud.errors import NEEDS_USER, SoundCloudError

        track = self.store.get(track_id)
        if track is None or track.sync is None or not track.soundcloud.urn:
            return
        if track.state not in SYNCED:
            return  # still processing: processed() arms this again when it is done
        if self._reschedule(track):
            return
        track = self.store.get(track_id)
        if track is None:
            return
        try:
            self._send_changes(track)
            self._playlists(track_id)
        except NEEDS_USER as exc:
            if track.state == State.RELEASED:
                # A released track has no waiting state: try again by the offline rules; the
                # needs_login notification comes from whichever track is parked.
                self._sync_failed(track_id, exc, login=True)
            else:
                wait_for_user(self.store, self.events, track_id, exc)
            return
        except SoundCloudError as exc:
            self._sync_failed(track_id, exc)
            return
        self.store.update(track_id, lambda t: setattr(t, "sync", None))

    def _reschedule(self, track: Track) -> bool:
        """A release time edited in (or out) of the sidecar: move the release. True when the
        release went ahead, which syncs the rest itself."""
        if track.state not in (State.SCHEDULED, State.PUBLISHED):
            return False
        if track.release_at is not None and track.release_at > self.clock():
            if track.state == State.PUBLISHED:
                self.store.transition(track.id, State.SCHEDULED, note="release time set")
            self.wake(track.id, track.release_at)
            return False
        if track.state == State.SCHEDULED or track.soundcloud.sharing != target_sharing(track):
            # The release time was taken out or has passed, or the sharing changed: it goes to its
            # sharing now, as a scheduled release (retried like one if that fails).
            if track.state == State.PUBLISHED:
                self.store.transition(track.id, State.SCHEDULED, note="sharing changed")
            self.release(track.id)
            return True
        return False

    def _send_changes(self, track: Track) -> None:
        assert track.soundcloud.urn is not None
        sharing = track.soundcloud.sharing or "private"
        if track.state == State.RELEASED and target_sharing(track) == "private":
            sharing = "private"  # the sidecar takes a released track back
        sent = track.soundcloud.sent_fields
        wanted = track_fields(track, sharing).metadata(track.soundcloud.sha256 or track.sha256)
        changes: dict[str, Any] = {k: v for k, v in wanted.items() if sent.get(k) != v}
        # A text field taken out of the sidecar is cleared, not left as it was.
        changes.update({k: "" for k in CLEARABLE if sent.get(k) and k not in wanted})
        if not changes:
            return
        self.client().update_track(track.soundcloud.urn, changes)

        def sent_now(t: Track) -> None:
            t.soundcloud.sent_fields = {
                **t.soundcloud.sent_fields,
                **{k: v for k, v in changes.items() if v != ""},
            }
            for k, v in changes.items():
                if v == "":
                    t.soundcloud.sent_fields.pop(k, None)
            if changes.get("sharing") == "private":
                t.soundcloud.sharing = "private"
                if t.state == State.RELEASED:
                    t.state = State.PUBLISHED

        self.store.update(
            track.id, sent_now, note="sent changed fields: " + ", ".join(sorted(changes))
        )

    def _playlists(self, track_id: str) -> None:
        """Add the track to its sidecar's playlists; a missing one is created private. A track
        not public yet joins only private playlists: a public one would show it early; it joins
        those once it is released."""
        track = self.store.get(track_id)
        if track is None or not track.soundcloud.urn:
            return
        urn = track.soundcloud.urn
        public = track.soundcloud.sharing == "public"
        for name in track.metadata.get("playlist") or []:
            if name in track.soundcloud.playlists:
                continue
            client = self.client()
            # Two tracks of one EP finishing together must not each create "Night EP".
            with self.stage.playlists:
                playlist = client.find_playlist(name)
                if playlist is None:
                    client.create_playlist(name, "private", [urn])
                elif playlist.get("sharing") == "public" and not public:
                    log.info("%s: joins public playlist '%s' once released", track.title, name)
                    continue
                else:
                    client.add_to_playlist(str(playlist["urn"]), urn)

            def joined(t: Track, name: str = name) -> None:
                t.soundcloud.playlists.append(name)

            self.store.update(track_id, joined, note=f"added to playlist '{name}'")

    def _sync_failed(self, track_id: str, exc: BaseException, login: bool = False) -> None:
        from releaseosd.model.failure import Failure, Kind
        from releaseosd.soundcloud.errors import failure_of

        track = self.store.get(track_id)
        if track is None or track.sync is None:
            return
        failure = failure_of(exc)
        if login:
            failure = Failure(Kind.OFFLINE, failure.message)
        cfg = self.config.uploads
        plan = plan_for(
            failure,
            track.sync.attempts,
            track.sync.offline_attempts,
            cfg.max_attempts,
            cfg.backoff_base_seconds,
            cfg.backoff_max_seconds,
            self.rng,
        )
        message = f"SoundCloud is not up to date with the sidecar: {failure.message}"
        now = self.clock()
        if plan.give_up:

            def gave_up(t: Track) -> None:
                t.sync = None
                t.last_error = message
                t.met("sync", failure, now)

            self.store.update(track_id, gave_up, note=message)
            log.error("%s: %s", track.title, message)
            self.emit(
                Failed(
                    track_id=track.id,
                    title=track.title,
                    reason=message,
                    fix_command=f"fix the sidecar and save it, or: releaseosd retry {track.id}",
                )
            )
            return
        when = at(self.clock(), plan.delay_seconds)
        retrying = Retrying(
            attempts=plan.attempts,
            offline_attempts=plan.offline_attempts,
            due_at=when,
            error=failure.message,
        )

        def later(t: Track) -> None:
            t.sync = retrying
            t.met("sync", failure, now)

        self.store.update(track_id, later, note=f"sending to SoundCloud failed: {failure.message}")
        log.warning("%s: %s; trying again at %s", track.title, message, when.isoformat())
        self.wake(track_id, when)
