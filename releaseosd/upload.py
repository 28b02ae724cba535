"""Upload stage: one attempt to get one ready track onto SoundCloud, and the processing checks
after it. Every outcome is written to the store; the scheduler reads what is due from there."""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from releaseosd.config import Config
from releaseosd.retry import at, backoff_seconds, plan_retry
from releaseosd.states import State
from releaseosd.store import Store
from releaseosd.track import Track, utcnow

if TYPE_CHECKING:
    from releaseosd.soundcloud.client import SoundCloudClient, TrackFields

log = logging.getLogger("releaseosd.upload")

# After this many 5xx answers to uploads carrying artwork, upload without it (SoundCloud has
# answered 500 only when artwork_data was attached: soundcloud/api#409).
ARTWORK_5XX_LIMIT = 3
POLL_FIRST_SECONDS = 2.0
POLL_MAX_SECONDS = 60.0


class Announcer(Protocol):
    """Tells the producer (notify.Notifier); returns whether a notification went out."""

    def released(self, title: str, url: str, late_by: dt.timedelta | None = None) -> bool: ...
    def uploaded(self, title: str, url: str | None, public_at: dt.datetime | None) -> bool: ...
    def failed(self, title: str, reason: str, fix_command: str) -> bool: ...
    def needs_login(self, problem: str | None = None) -> bool: ...
    def artwork_dropped(self, title: str) -> bool: ...


Wake = Callable[[str, dt.datetime], None]


def track_fields(track: Track, sharing: str) -> TrackFields:
    from releaseosd.soundcloud.client import TrackFields

    meta = track.metadata
    release_date = meta.get("release_date")
    return TrackFields(
        title=track.title,
        description=meta.get("description") or None,
        genre=meta.get("genre"),
        tags=tuple(meta.get("tags") or ()),
        sharing=sharing,  # type: ignore[arg-type]
        release_date=dt.date.fromisoformat(release_date) if release_date else None,
        label_name=meta.get("label"),
        release=meta.get("release"),
        isrc=meta.get("isrc"),
        license=meta.get("license"),
        downloadable=meta.get("downloadable"),
        streamable=meta.get("streamable"),
        commentable=meta.get("commentable"),
        quiet=meta.get("quiet"),
        permalink=meta.get("permalink"),
    )


def target_sharing(track: Track) -> str:
    """What the track becomes at its release: `releaseosd release` means public."""
    if track.user_release is not None:
        return "public"
    return str(track.metadata.get("sharing") or "private")


def upload_sharing(track: Track) -> str:
    """A track with a release time goes up private; it is flipped at that minute."""
    return "private" if track.release_at is not None else target_sharing(track)


def wait_for_user(store: Store, announce: Announcer, track_id: str, exc: Exception) -> None:
    """Park a track in needs_login (the state it waited in is in its history, so it resumes
    there). One notification per episode, not one per track."""
    from releaseosd.soundcloud.errors import NeedsLogin

    others_waiting = [t for t in store.in_states(State.NEEDS_LOGIN) if t.id != track_id]
    store.transition(track_id, State.NEEDS_LOGIN, last_error=str(exc))
    if not others_waiting:
        announce.needs_login(None if isinstance(exc, NeedsLogin) else str(exc))


def _tagged(remote: dict[str, Any], digest: str) -> bool:
    from releaseosd.soundcloud.tags import has_machine_tag

    return has_machine_tag(remote.get("tag_list"), digest)


@dataclass
class Stage:
    """What the stages that talk to SoundCloud (upload, publish) share. A reload swaps `config`
    here, once, for both."""

    config: Config
    store: Store
    client: Callable[[], SoundCloudClient]
    announce: Announcer
    wake: Wake
    clock: Callable[[], dt.datetime] = utcnow
    rng: random.Random = field(default_factory=random.Random)


class OnStage:
    """Base of Uploader and Publisher: the shared Stage's parts, its config read at each use."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.store = stage.store
        self.client = stage.client
        self.announce = stage.announce
        self.wake = stage.wake
        self.clock = stage.clock
        self.rng = stage.rng

    @property
    def config(self) -> Config:
        return self.stage.config


class Uploader(OnStage):
    def __init__(self, stage: Stage, after_processed: Callable[[str], None]) -> None:
        super().__init__(stage)
        self.after_processed = after_processed

    # --- one attempt ---------------------------------------------------------------------------

    def attempt(self, track_id: str) -> None:
        """Upload (or adopt) one READY track. Never raises: every outcome lands in the store."""
        from releaseosd.soundcloud.errors import NEEDS_USER, SoundCloudError

        track = self.store.get(track_id)
        if track is None or track.state != State.READY:
            return
        track = self.store.transition(
            track_id, State.UPLOADING, note=f"attempt {track.attempts + 1}", next_attempt_at=None
        )
        posting = False
        try:
            remote = self._find_earlier_upload(track)
            if remote is None:
                audio, duration = self._payload(track)
                self.client().check_quota(duration)
                posting = True
                sharing = upload_sharing(track)
                remote = self._upload(track, sharing, audio, duration)
            else:
                sharing = str(remote.get("sharing") or "private")
                log.info("%s: found on SoundCloud as %s; adopting it", track.title, remote["urn"])
            self._record_upload(track, remote, sharing)
        except NEEDS_USER as exc:
            wait_for_user(self.store, self.announce, track_id, exc)
        except SoundCloudError as exc:
            self._failed_attempt(track_id, exc, posting)
        except Exception as exc:
            log.exception("%s: unexpected error during upload", track.title)
            self._failed_attempt(track_id, exc, posting)

    def _find_earlier_upload(self, track: Track) -> dict[str, Any] | None:
        """Before every POST: is any audio this track ever sent already on SoundCloud?

        An attempt may have reached SoundCloud before its answer was lost (a crash, a dropped
        connection, a timeout after the body was in); the machine tag finds it, and adopting it
        beats uploading twice. One listing checks every digest the track has posted."""
        from releaseosd.soundcloud.tags import has_machine_tag

        digests = [d for d in dict.fromkeys([*track.posted_sha256, track.sha256 or ""]) if d]
        if not digests:
            return None
        for remote in self.client().my_tracks():
            if any(has_machine_tag(remote.get("tag_list"), d) for d in digests):
                return remote
        return None

    def _payload(self, track: Track) -> tuple[Path, float | None]:
        """The file to send (the export, or its preview for `upload: preview`) and its length."""
        if track.metadata.get("upload") == "preview" and track.preview_path:
            # The preview as built: a sidecar's own length, or one from before a reload, is not
            # the config's.
            from releaseosd.media.probe import AudioProblem, probe

            preview = Path(track.preview_path)
            try:
                return preview, probe(preview).duration
            except (AudioProblem, OSError):
                return preview, self.config.preview.length
        duration = (track.probe or {}).get("duration")
        return Path(track.audio_path), float(duration) if duration is not None else None

    def _upload(
        self, track: Track, sharing: str, audio: Path, duration: float | None
    ) -> dict[str, Any]:
        artwork = None
        if track.artwork_path and not track.without_artwork:
            artwork = Path(track.artwork_path)
        if track.sha256 and track.sha256 not in track.posted_sha256:
            # Written before the first byte goes out, so a crash mid-POST is looked up later.
            digest = track.sha256
            self.store.update(track.id, lambda t: t.posted_sha256.append(digest))
        return self.client().upload_track(
            audio,
            track_fields(track, sharing),
            artwork,
            sha256=track.sha256,
            duration_seconds=duration,
            check_quota=False,
        )

    def _record_upload(self, track: Track, remote: dict[str, Any], sharing: str) -> None:
        """`sharing` is what the POST said (or what the adopted copy has), never a recomputed
        wish: the sidecar may have changed while the upload ran."""
        now = self.clock()
        remote_digest = next(
            (d for d in [track.sha256, *track.posted_sha256] if d and _tagged(remote, d)),
            track.sha256,
        )

        def recorded(t: Track) -> None:
            # The URN is written before anything else happens: from here on the track is known
            # to be on SoundCloud whatever follows.
            t.soundcloud.urn = str(remote["urn"])
            t.soundcloud.permalink_url = remote.get("permalink_url")
            t.soundcloud.sharing = str(remote.get("sharing") or sharing)
            t.soundcloud.uploaded_at = t.soundcloud.uploaded_at or now
            t.soundcloud.sent_fields = track_fields(t, sharing).metadata(remote_digest)
            if remote_digest and remote_digest != t.sha256:
                # An earlier export is what SoundCloud has; the newer audio stays local.
                t.local_change = {
                    "sha256": t.sha256,
                    "seen_at": now.isoformat(),
                    "path": t.audio_path,
                }
                t.sha256 = remote_digest
            t.state = State.PROCESSING
            t.last_error = None
            t.offline_attempts = 0
            t.next_attempt_at = None

        self.store.update(track.id, recorded, note=f"uploaded as {remote['urn']}")
        if remote.get("state") in (None, "finished"):
            self.after_processed(track.id)
        elif remote.get("state") == "failed":
            self._processing_failed(track.id)
        else:
            self._poll_later(track.id, POLL_FIRST_SECONDS)

    # --- processing ----------------------------------------------------------------------------

    def poll(self, track_id: str) -> None:
        from releaseosd.soundcloud.errors import NEEDS_USER, NotFound, SoundCloudError

        track = self.store.get(track_id)
        if track is None or track.state != State.PROCESSING or not track.soundcloud.urn:
            return
        try:
            remote = self.client().get_track(track.soundcloud.urn)
        except NotFound:
            self._remote_vanished(track)
            return
        except NEEDS_USER as exc:
            wait_for_user(self.store, self.announce, track_id, exc)
            return
        except SoundCloudError as exc:
            log.warning("%s: checking processing failed (%s); will check again", track.title, exc)
            self._poll_later(
                track_id,
                self._check_delay(track),
                retry_after=exc.retry_after,
                note=f"check failed: {exc}",
            )
            return
        state = remote.get("state")
        if state in (None, "finished"):
            self.after_processed(track_id)
        elif state == "failed":
            self._processing_failed(track_id)
        else:
            waited = (self.clock() - (track.soundcloud.uploaded_at or self.clock())).total_seconds()
            self._poll_later(track_id, min(POLL_MAX_SECONDS, max(POLL_FIRST_SECONDS, waited / 4)))

    def _check_delay(self, track: Track) -> float:
        """Backoff for processing checks that failed: the upload's schedule, capped at a minute."""
        failures = sum(1 for h in track.history[-20:] if h.note.startswith("check failed"))
        cfg = self.config.uploads
        return backoff_seconds(
            failures + 1,
            min(cfg.backoff_base_seconds, POLL_FIRST_SECONDS),
            min(cfg.backoff_max_seconds, POLL_MAX_SECONDS),
            self.rng,
        )

    def _poll_later(
        self, track_id: str, seconds: float, retry_after: float | None = None, note: str = ""
    ) -> None:
        when = at(self.clock(), max(seconds, (retry_after or 0) + 0.05))
        self.store.update(track_id, lambda t: setattr(t, "next_attempt_at", when), note=note)
        self.wake(track_id, when)

    def _processing_failed(self, track_id: str) -> None:
        """SoundCloud could not transcode it: delete the broken copy, then upload afresh."""
        from releaseosd.soundcloud.errors import SoundCloudError

        track = self.store.get(track_id)
        if track is None or not track.soundcloud.urn:
            return
        urn = track.soundcloud.urn
        try:
            self.client().delete_track(urn)
        except SoundCloudError as exc:
            log.warning("%s: could not delete failed upload %s (%s)", track.title, urn, exc)
            self._poll_later(
                track_id,
                self._check_delay(track),
                retry_after=exc.retry_after,
                note=f"check failed: deleting {urn}: {exc}",
            )
            return
        self._back_to_ready(
            track, f"SoundCloud could not process {urn}; deleted it to upload again"
        )

    def _remote_vanished(self, track: Track) -> None:
        self._back_to_ready(
            track, f"{track.soundcloud.urn} is gone from SoundCloud before processing ended"
        )

    def _back_to_ready(self, track: Track, note: str) -> None:
        plan = plan_retry(
            track.attempts,
            track.offline_attempts,
            False,
            self.config.uploads.max_attempts,
            self.config.uploads.backoff_base_seconds,
            self.config.uploads.backoff_max_seconds,
            self.rng,
        )
        when = at(self.clock(), plan.delay_seconds)

        def reset(t: Track) -> None:
            t.soundcloud.urn = None
            t.soundcloud.permalink_url = None
            t.soundcloud.uploaded_at = None
            t.soundcloud.sharing = None
            t.attempts = plan.attempts
            t.last_error = note
            t.next_attempt_at = when
            t.state = State.READY if not plan.give_up else State.FAILED

        self.store.update(track.id, reset, note=note)
        if plan.give_up:
            self.announce.failed(track.title, note, f"releaseosd retry {track.id}")
        else:
            self.wake(track.id, when)

    # --- failures ------------------------------------------------------------------------------

    def _failed_attempt(self, track_id: str, exc: BaseException, posting: bool = False) -> None:
        from releaseosd.soundcloud.errors import RateLimited, SoundCloudError

        track = self.store.get(track_id)
        if track is None:
            return
        retryable = exc.retryable if isinstance(exc, SoundCloudError) else True
        status = exc.status if isinstance(exc, SoundCloudError) else None
        retry_after = exc.retry_after if isinstance(exc, SoundCloudError) else None
        message = str(exc) or type(exc).__name__
        offline = (
            retryable
            and status is None
            and isinstance(exc, SoundCloudError)
            and not isinstance(exc, RateLimited)
        )
        cfg = self.config.uploads
        if not retryable:
            self.store.transition(
                track_id, State.FAILED, last_error=message, attempts=track.attempts + 1
            )
            self.announce.failed(track.title, message, f"releaseosd retry {track.id}")
            return
        plan = plan_retry(
            track.attempts,
            track.offline_attempts,
            offline,
            cfg.max_attempts,
            cfg.backoff_base_seconds,
            cfg.backoff_max_seconds,
            self.rng,
            retry_after,
            rate_limited=isinstance(exc, RateLimited),
        )
        artwork_5xx = (
            posting
            and status is not None
            and status >= 500
            and bool(track.artwork_path)
            and not track.without_artwork
        )
        streak = track.artwork_5xx + 1 if artwork_5xx else 0
        drop_artwork = streak >= ARTWORK_5XX_LIMIT
        when = at(self.clock(), plan.delay_seconds)
        note = f"attempt failed: {message}"

        def retry(t: Track) -> None:
            t.attempts = plan.attempts
            t.offline_attempts = plan.offline_attempts
            t.last_error = message
            t.next_attempt_at = None if plan.give_up else when
            t.state = State.FAILED if plan.give_up else State.READY
            t.artwork_5xx = 0 if drop_artwork else streak
            t.without_artwork = t.without_artwork or drop_artwork

        self.store.update(track_id, retry, note=note)
        if drop_artwork:
            log.warning(
                "%s: SoundCloud keeps failing uploads that carry artwork; trying without it "
                "(add the artwork on soundcloud.com afterwards)",
                track.title,
            )
            self.announce.artwork_dropped(track.title)
        if plan.give_up:
            log.error("%s: giving up after %d attempts: %s", track.title, plan.attempts, message)
            self.announce.failed(track.title, message, f"releaseosd retry {track.id}")
        else:
            log.info(
                "%s: attempt %d failed (%s); next try at %s",
                track.title,
                plan.attempts,
                message,
                when.isoformat(timespec="seconds"),
            )
            self.wake(track_id, when)
