"""Desktop notifications as a listener: the events a producer wants to hear about, told through
the `Notifier` (its queue and worker thread keep the stage that emitted from waiting)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from releaseosd.model.events import (
    ArtworkDropped,
    Event,
    Failed,
    LoginBeforeRelease,
    NeedsLogin,
    Released,
    Uploaded,
)

if TYPE_CHECKING:
    from releaseosd.listeners.desktop import Notifier


class DesktopNotifications:
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def __call__(self, event: Event) -> None:
        tell = self.notifier
        match event:
            case Released():
                tell.released(event.title, event.url, event.late_by)
            case Uploaded():
                tell.uploaded(event.title, event.url, event.public_at)
            case Failed():
                tell.failed(event.title, event.reason, event.fix_command)
            case ArtworkDropped():
                tell.artwork_dropped(event.title)
            case NeedsLogin():
                tell.needs_login(event.problem)
            case LoginBeforeRelease():
                tell.login_before_release(event.title, event.public_at, event.problem)
