"""Keyrings for tests: an in-memory one that records every call, and the real file backend."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import keyring.errors


class MemoryKeyring:
    """Duck-typed keyring backend (not a KeyringBackend subclass, which would register itself
    with keyring's backend discovery for every later test). `events` is shared with whoever
    wants to see keyring writes interleaved with HTTP requests."""

    def __init__(self, events: list[tuple[str, ...]] | None = None) -> None:
        self.values: dict[tuple[str, str], str] = {}
        self.events = events if events is not None else []
        self._lock = threading.Lock()

    def get_password(self, service: str, username: str) -> str | None:
        with self._lock:
            return self.values.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        with self._lock:
            self.values[(service, username)] = password
            self.events.append(("keyring-set", username, password))

    def delete_password(self, service: str, username: str) -> None:
        with self._lock:
            if (service, username) not in self.values:
                raise keyring.errors.PasswordDeleteError("not found")
            del self.values[(service, username)]
            self.events.append(("keyring-delete", username))


class LockedKeyring:
    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("Failed to unlock the collection!")

    set_password = delete_password = get_password


def plaintext_keyring(directory: Path) -> Any:
    """keyrings.alt's file backend with its file in a temporary directory: a real backend."""
    from keyrings.alt.file import PlaintextKeyring  # type: ignore[import-untyped]

    backend = PlaintextKeyring()
    backend.file_path = str(directory / "keyring_pass.cfg")
    return backend
