"""What the dashboard's tests share besides fixtures (conftest.py): a running daemon's
addresses, where screenshots go, which browser."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from daemon_harness import ThreadedDaemon

from releaseosd.dashboard.server import login_url

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"


@dataclass
class Running:
    daemon: ThreadedDaemon
    root: Path
    exports: Path
    state: Path
    url: str  # the dashboard's address, e.g. http://127.0.0.1:40123/

    @property
    def signed_in(self) -> str:
        return login_url(self.state)
