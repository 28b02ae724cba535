"""Upload stage: one attempt to get one ready track onto SoundCloud, and the processing checks
after it. Every outcome is written to the store; the scheduler reads what is due from there."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from releaseosd.model.events import ArtworkDropped, Failed, UploadProgress
from releaseosd.model.states import State
from releaseosd.model.track import AudioStat, Retrying, Track, gone_message
from releaseosd.pipeline.retry import at, plan_for, plan_retry
from releaseosd.pipeline.stage import (
    POLL_FIRST_SECONDS,
    POLL_MAX_SECONDS,
    OnStage,
    Stage,
    track_fields,
    upload_sharing,
    wait_for_user,
)

if TYPE_CHECKING:
    from releaseosd.soundcloud.client import TrackFields

log = logging.getLogger("releaseosd.pipeline.upload")

# Upload progress events at most this often (a dashboard's bar, the terminal's).
PROGRESS_EVERY_SECONDS = 0.25


class PacedProgress:
    """An upload's progress as events: a few a second at most, and the latest always follows
    within PROGRESS_EVERY_SECONDS, also when the upload then stalls (a slow or stuck uplink is
    when a producer watches the bar); nothing once the upload call has returned."""

    def __init__(self, emit: Callable[[int, int], None]) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._last = -PROGRESS_EVERY_SECONDS
        self._latest: tuple[int, int] | None = None
        self._timer: threading.Timer | None = None
        self._closed = False

    def __call__(self, sent: int, total: int) -> None:
        with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            wait = self._last + PROGRESS_EVERY_SECONDS - now
            if sent < total and wait > 0:
                self._latest = (sent, total)
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._flush)
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._latest = None
            self._last = now
            # Under the lock: a deferred report can never overtake a newer one.
            self._emit(sent, total)

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            if self._closed or self._latest is None:
                return
            sent, total = self._latest
            self._latest = None
            self._last = time.monotonic()
            self._emit(sent, total)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


def _tagged(remote: dict[str, Any], digest: str) -> bool:
    from releaseosd.soundcloud.tags import has_machine_tag

    return has_machine_tag(remote.get("tag_list"), digest)


def _secret_token(remote: dict[str, Any]) -> str | None:
    from releaseosd.soundcloud.client import secret_token_of

    return secret_token_of(remote)


class Uploader(OnStage):
    def __init__(self, stage: Stage, after_processed: Callable[[str], None]) -> None:
        super().__init__(stage)
        self.after_processed = after_processed

    # --- one attempt ---------------------------------------------------------------------------

    def attempt(self, track_id: str) -> None:
        """Upload (or adopt) one READY track. Never raises: every outcome lands in the store."""
        from releaseosd.soundcloud.errors import (
            NEEDS_USER,
            AssetChanged,
            RequestWithdrawn,
            SoundCloudError,
        )

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
                stale = self._stale_build(track)
                if stale is not None:
                    self._rebuild(track, stale)
                    return
                audio, digest, duration = self._payload(track)
                self.client().check_quota(duration)
                meta, defaults = self._metadata_now(track)
                fields = track_fields(track, upload_sharing(track), meta)
                posting = True
                remote = self._upload(track, fields, audio, digest, duration)
                sent, copy_digest = fields.metadata(digest), str(digest)
            else:
                log.info("%s: found on SoundCloud as %s; adopting it", track.title, remote["urn"])
                meta = track.metadata
                defaults = self.config.defaults.model_dump(mode="json")
                sent, found_digest = self._adopted(track, remote)
                copy_digest = found_digest or ""
            self._record_upload(track, remote, sent, meta, defaults, copy_digest)
        except AssetChanged as exc:
            self._rebuild(track, str(exc))
        except RequestWithdrawn as exc:
            self.store.transition(track_id, State.READY, note=str(exc), next_attempt_at=None)
            self.wake(track_id, self.clock())
        except NEEDS_USER as exc:
            wait_for_user(self.store, self.events, track_id, exc)
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
        # Its own digests too: a copy uploaded by an earlier record of this audio (a store
        # restored from a backup) is adopted rather than doubled.
        own = [track.sha256, track.preview_sha256]
        digests = [d for d in dict.fromkeys([*track.posted_sha256, *own]) if d]
        copies = self.client().copies_of(digests) if digests else []
        return copies[0] if copies else None

    def _stale_build(self, track: Track) -> str | None:
        """Why what was checked and built is not what would be sent now, or None.

        The watcher reports a re-export only once it has settled; an upload that starts in
        between must not send the half-written file under the old file's machine tag."""
        from releaseosd.media.build import build_shape
        from releaseosd.model.metadata import stored_sidecar

        if track.metadata.get("upload") != "preview" and track.audio_stat is not None:
            try:
                now = AudioStat.of(os.stat(track.audio_path))
            except OSError:
                return f"{track.audio_path} is gone; nothing was uploaded"
            if now != track.audio_stat:
                return f"{track.audio_path} changed since it was checked; checking it again"
        sidecar = stored_sidecar(track)
        if track.built_shape is not None and build_shape(sidecar) != track.built_shape:
            return "the sidecar changed what the preview and artwork show; building them again"
        return None

    def _rebuild(self, track: Track, why: str) -> None:
        """The export (or what its build shows) changed: back to pending, checked and built
        afresh; only then is it uploaded, as the bytes then checked. An export that is gone has
        nothing to upload (a moved one is found again where it went)."""

        # The record as it is now, not as this attempt began: its folder renamed meanwhile, the
        # snapshot's path is gone while the export is where the record now says (the watcher
        # does not report a renamed folder's files again, so nothing else would rebuild it).
        current = self.store.get(track.id) or track
        if current.audio_path != track.audio_path:
            why = f"moved to {current.audio_path} while it was being uploaded; checking it again"
        log.info("%s: %s", track.title, why)
        if not Path(current.audio_path).exists():
            self.store.transition(
                track.id, State.PENDING, note=why, last_error=gone_message(current)
            )
            return
        self.store.transition(track.id, State.PENDING, note=why, last_error=None)
        self.stage.rebuild(current.audio_path)

    def _metadata_now(self, track: Track) -> tuple[dict[str, Any], dict[str, Any]]:
        """The metadata as it goes up, and the config defaults it was made with: those of this
        moment (a reload since the build counts), kept with the track once it is up. Records
        from before sidecars were kept send their metadata as built."""
        from releaseosd.model.metadata import metadata_for, stored_sidecar

        config = self.config  # one config for the request, even if a reload swaps it now
        defaults = config.defaults.model_dump(mode="json")
        sidecar = stored_sidecar(track)
        if sidecar is None:
            return track.metadata, defaults
        return metadata_for(track, config, sidecar, Path(track.audio_path)), defaults

    def _payload(self, track: Track) -> tuple[Path, str, float | None]:
        """The file to send (the export, or its preview for `upload: preview`), the digest it
        was checked to have, and its length."""
        from releaseosd.media.build import file_sha256

        if track.metadata.get("upload") == "preview" and track.preview_path:
            # The preview as built: a sidecar's own length, or one from before a reload, is not
            # the config's.
            from releaseosd.media.probe import AudioProblem, probe

            preview = Path(track.preview_path)
            digest = track.preview_sha256 or file_sha256(preview)
            try:
                return preview, digest, probe(preview).duration
            except (AudioProblem, OSError):
                return preview, digest, self.config.preview.length
        duration = (track.probe or {}).get("duration")
        audio = Path(track.audio_path)
        return (
            audio,
            track.sha256 or file_sha256(audio),
            float(duration) if duration is not None else None,
        )

    def _upload(
        self,
        track: Track,
        fields: TrackFields,
        audio: Path,
        digest: str,
        duration: float | None,
    ) -> dict[str, Any]:
        artwork = None
        if track.artwork_path and not track.without_artwork:
            artwork = Path(track.artwork_path)
        if digest not in track.posted_sha256:
            # Written before the first byte goes out, so a crash mid-POST is looked up later.
            self.store.update(track.id, lambda t: t.posted_sha256.append(digest))
        stat = track.audio_stat if audio == Path(track.audio_path) else None
        progress = PacedProgress(
            lambda sent, total: self.emit(
                UploadProgress(track_id=track.id, title=track.title, sent=sent, total=total)
            )
        )
        try:
            return self.client().upload_track(
                audio,
                fields,
                artwork,
                progress,
                sha256=digest,
                duration_seconds=duration,
                check_quota=False,
                identity=(stat.device, stat.inode) if stat is not None else None,
                before_end=self._still_wanted(track.id, fields.sharing),
            )
        finally:
            progress.close()

    def _still_wanted(self, track_id: str, sharing: str) -> Callable[[], None]:
        """Checked before the upload's last byte: a copy that would be public while the track
        must not be yet (a release time added while it was sent) is never created."""

        def check() -> None:
            from releaseosd.soundcloud.errors import RequestWithdrawn

            now = self.store.get(track_id)
            if sharing == "public" and now is not None and upload_sharing(now) != "public":
                raise RequestWithdrawn(
                    "withdrawn before its last byte: it would have been public before its "
                    "release time; uploading it private now"
                )

        return check

    def _adopted(self, track: Track, remote: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """What an earlier upload found on SoundCloud says of itself (so that whatever differs
        from the sidecar is sent afterwards), and which of the track's digests it carries."""
        from releaseosd.soundcloud.client import fields_of_track

        candidates = [*track.posted_sha256, track.sha256, track.preview_sha256]
        digest = next((d for d in candidates if d and _tagged(remote, d)), None)
        return fields_of_track(remote), digest

    def _record_upload(
        self,
        track: Track,
        remote: dict[str, Any],
        sent: dict[str, Any],
        meta: dict[str, Any],
        defaults: dict[str, Any],
        copy_digest: str,
    ) -> None:
        """`sent` is what the request carried (or what the adopted copy has), never a recomputed
        wish: the sidecar may have changed while the upload ran, and that change is sent after;
        `defaults` are those the request was made with."""
        now = self.clock()

        def recorded(t: Track) -> None:
            # The URN is written before anything else happens: from here on the track is known
            # to be on SoundCloud whatever follows.
            t.soundcloud.urn = str(remote["urn"])
            t.soundcloud.permalink_url = remote.get("permalink_url")
            t.soundcloud.secret_token = _secret_token(remote)
            t.soundcloud.sharing = str(remote.get("sharing") or sent.get("sharing") or "private")
            t.soundcloud.uploaded_at = t.soundcloud.uploaded_at or now
            t.soundcloud.sent_fields = sent
            t.soundcloud.sha256 = copy_digest or None
            t.soundcloud.defaults = t.soundcloud.defaults or defaults
            if t.sidecar_digest == track.sidecar_digest:
                # No edit came in meanwhile: the record says what went up.
                t.metadata = meta
                t.title = str(meta.get("title") or t.title)
            if copy_digest not in ("", t.sha256, t.preview_sha256):
                # An earlier export is what SoundCloud has; the newer audio stays local.
                t.local_change = {
                    "sha256": t.sha256,
                    "seen_at": now.isoformat(),
                    "path": t.audio_path,
                }
                t.sha256, t.audio_digest = copy_digest, None
            t.state = State.PROCESSING
            t.last_error = None
            t.offline_attempts = 0
            t.next_attempt_at = None
            t.retry = Retrying()

        fresh = self.store.update(track.id, recorded, note=f"uploaded as {remote['urn']}")
        if self.too_public(fresh) and not self.make_private(fresh):
            return  # retried like a processing check; nothing goes on while it is public
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
            wait_for_user(self.store, self.events, track_id, exc)
            return
        except SoundCloudError as exc:
            self.step_failed(
                track, exc, "checking SoundCloud's processing", "processing", quick=True
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

    def _poll_later(self, track_id: str, seconds: float) -> None:
        when = at(self.clock(), seconds)
        self.store.update(track_id, lambda t: setattr(t, "next_attempt_at", when))
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
            self.step_failed(
                track,
                exc,
                f"deleting {urn}, which SoundCloud could not process",
                "delete-unprocessed",
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
            t.soundcloud.sent_fields = {}
            t.soundcloud.defaults = None
            t.attempts = plan.attempts
            t.last_error = note
            t.next_attempt_at = when
            t.retry = Retrying()
            t.state = State.READY if not plan.give_up else State.FAILED

        self.store.update(track.id, reset, note=note)
        if plan.give_up:
            self.emit(
                Failed(
                    track_id=track.id,
                    title=track.title,
                    reason=note,
                    fix_command=f"releaseosd retry {track.id}",
                )
            )
        else:
            self.wake(track.id, when)

    # --- failures ------------------------------------------------------------------------------

    def _failed_attempt(self, track_id: str, exc: BaseException, posting: bool = False) -> None:
        from releaseosd.soundcloud.errors import (
            artwork_5xx_streak,
            failure_of,
            should_drop_artwork,
        )

        track = self.store.get(track_id)
        if track is None:
            return
        failure = failure_of(exc)
        now = self.clock()
        if not failure.transient:

            def refused(t: Track) -> None:
                t.state = State.FAILED
                t.last_error = failure.message
                t.attempts = track.attempts + 1
                t.met("upload", failure, now)

            self.store.update(track_id, refused)
            self.emit(
                Failed(
                    track_id=track.id,
                    title=track.title,
                    reason=failure.message,
                    fix_command=f"releaseosd retry {track.id}",
                )
            )
            return
        cfg = self.config.uploads
        plan = plan_for(
            failure,
            track.attempts,
            track.offline_attempts,
            cfg.max_attempts,
            cfg.backoff_base_seconds,
            cfg.backoff_max_seconds,
            self.rng,
        )
        carried_artwork = posting and bool(track.artwork_path) and not track.without_artwork
        streak = artwork_5xx_streak(track.artwork_5xx, failure.status) if carried_artwork else 0
        drop_artwork = should_drop_artwork(streak)
        when = at(self.clock(), plan.delay_seconds)
        message = failure.message

        def retry(t: Track) -> None:
            t.attempts = plan.attempts
            t.offline_attempts = plan.offline_attempts
            t.last_error = message
            t.next_attempt_at = None if plan.give_up else when
            t.state = State.FAILED if plan.give_up else State.READY
            t.artwork_5xx = 0 if drop_artwork else streak
            t.without_artwork = t.without_artwork or drop_artwork
            t.met("upload", failure, now)

        self.store.update(track_id, retry, note=f"attempt failed: {message}")
        if drop_artwork:
            log.warning(
                "%s: SoundCloud keeps failing uploads that carry artwork; trying without it "
                "(add the artwork on soundcloud.com afterwards)",
                track.title,
            )
            self.emit(ArtworkDropped(track_id=track.id, title=track.title))
        if plan.give_up:
            log.error("%s: giving up after %d attempts: %s", track.title, plan.attempts, message)
            self.emit(
                Failed(
                    track_id=track.id,
                    title=track.title,
                    reason=message,
                    fix_command=f"releaseosd retry {track.id}",
                )
            )
        else:
            log.info(
                "%s: attempt %d failed (%s); next try at %s",
                track.title,
                plan.attempts,
                message,
                when.isoformat(timespec="seconds"),
            )
            self.wake(track_id, when)
