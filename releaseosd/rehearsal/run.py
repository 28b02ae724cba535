"""`releaseosd run --sandbox`: the whole flow against a local SoundCloud stand-in, with no account.

The sandbox runs in-process; tokens live in memory (a rehearsal must work on a headless box with
no keyring), and the login is the real authorization-code + PKCE exchange over loopback HTTP,
with the browser's part (following /authorize's redirect) played here.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from releaseosd.model.config import Config, SoundCloudConfig, WatchFolder, rehearsal_state_dir
from releaseosd.rehearsal.sandbox import Sandbox
from releaseosd.soundcloud.auth import authorize_url, pkce_pair
from releaseosd.soundcloud.tokens import MemoryKeyring, TokenStore, request_tokens

log = logging.getLogger("releaseosd.rehearsal.run")

SANDBOX_CLIENT_ID = "releaseosd-sandbox"
SANDBOX_REDIRECT = "http://127.0.0.1:8765/callback"


def rehearsal_watch(config: Config) -> list[WatchFolder]:
    """The config's folders, or ~/Music/Exports when it names none: a rehearsal on a fresh
    machine still has somewhere to drop a track."""
    if config.watch:
        return list(config.watch)
    default = Path.home() / "Music" / "Exports"
    default.mkdir(parents=True, exist_ok=True)
    return [WatchFolder(path=default)]


class Rehearsal:
    def __init__(self, state_dir: Path, port: int = 0) -> None:
        self.secret = secrets.token_urlsafe(24)
        self.sandbox = Sandbox(
            data_dir=state_dir / "sandbox",
            client_id=SANDBOX_CLIENT_ID,
            client_secret=self.secret,
        )
        self.port = port
        self.tokens = TokenStore(backend=MemoryKeyring())

    def start(self) -> str:
        return self.sandbox.start(port=self.port)

    def configure(self, config: Config) -> Config:
        """The same config, pointed at the sandbox, with its own state and an exports folder."""
        base = self.sandbox.base_url
        soundcloud = SoundCloudConfig(
            client_id=SANDBOX_CLIENT_ID,
            api_url=base,
            auth_url=base,
            redirect_uri=SANDBOX_REDIRECT,
        )
        return config.model_copy(
            update={
                "soundcloud": soundcloud,
                "watch": rehearsal_watch(config),
                "state_dir": rehearsal_state_dir(config),
            }
        )

    def restore_app_secret(self) -> None:
        """The sandbox app's secret back in the rehearsal's keyring (a Disconnect forgets it,
        as `auth logout` does), so that Connect works again without `auth setup`."""
        self.tokens.set_client_secret(SANDBOX_CLIENT_ID, self.secret)

    def login(self, config: SoundCloudConfig) -> None:
        """Authorization code + PKCE against the sandbox; the redirect is read, not followed."""
        self.restore_app_secret()
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        with httpx.Client(timeout=10) as http:
            answer = http.get(authorize_url(config, challenge, state), follow_redirects=False)
            location = answer.headers.get("location", "")
            query = parse_qs(urlsplit(location).query)
            if query.get("state") != [state] or "code" not in query:
                raise RuntimeError(f"the sandbox's /authorize answered {answer.status_code}")
            form = {
                "grant_type": "authorization_code",
                "client_id": config.client_id,
                "client_secret": self.secret,
                "redirect_uri": config.redirect_uri,
                "code": query["code"][0],
                "code_verifier": verifier,
            }
            import time

            self.tokens.set_tokens(
                config.client_id, request_tokens(http, config, form, time.time())
            )
        log.info("logged in to the sandbox as its test artist")

    def stop(self) -> None:
        self.sandbox.stop()
