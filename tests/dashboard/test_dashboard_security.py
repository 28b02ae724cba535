"""The dashboard's guard, tried as an attacker would: from another site (DNS rebinding, CSRF),
without the secret, with a foreign Origin, through a sidecar that carries markup; and where it
may listen."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from daemon_harness import daemon_env, make_audio, wait_for
from dashboard_harness import ARTIFACTS, Running
from playwright.sync_api import Page, expect

from releaseosd.dashboard.access import CONTENT_SECURITY_POLICY, secret_path
from releaseosd.dashboard.listen import BindRefused, bind
from releaseosd.model.config import DashboardConfig

SECOND = 1000


def signed_in_client(dashboard: Running) -> httpx.Client:
    client = httpx.Client(base_url=dashboard.url, timeout=10)
    answer = client.get(dashboard.signed_in.removeprefix(dashboard.url.rstrip("/")))
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    return client


def csrf_of(client: httpx.Client) -> str:
    page = client.get("/").text
    return page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


def test_foreign_host_is_refused_even_with_the_cookie(dashboard: Running) -> None:
    with closing(signed_in_client(dashboard)) as client:
        port = urlsplit(dashboard.url).port
        assert client.get("/").status_code == 200
        # A page on attacker.example whose name was rebound to 127.0.0.1.
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1:1", "localhost"):
            answer = client.get("/", headers={"Host": host})
            assert answer.status_code == 403, host
        for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
            assert client.get("/", headers={"Host": host}).status_code == 200


def test_without_the_cookie_nothing_is_shown_or_done(dashboard: Running) -> None:
    with httpx.Client(base_url=dashboard.url, timeout=10) as client:
        for path in ("/", "/account", "/events", "/tracks/x", "/tracks/x/artwork"):
            assert client.get(path).status_code == 401, path
        assert client.post("/actions/pause", json={}).status_code == 401
        # A wrong token gets no cookie.
        answer = client.get("/login", params={"token": "guess"})
        assert answer.status_code == 401 and "set-cookie" not in answer.headers


def test_post_needs_the_csrf_token_and_a_same_origin(dashboard: Running) -> None:
    with closing(signed_in_client(dashboard)) as client:
        token = csrf_of(client)
        origin = dashboard.url.rstrip("/")
        no_token = client.post("/actions/pause", json={}, headers={"Origin": origin})
        assert no_token.status_code == 403
        foreign = client.post(
            "/actions/pause",
            json={},
            headers={"Origin": "http://attacker.example", "X-CSRF-Token": token},
        )
        assert foreign.status_code == 403
        no_origin = client.post("/actions/pause", json={}, headers={"X-CSRF-Token": token})
        assert no_origin.status_code == 403
        # GET never changes anything: there is no GET route that acts.
        assert client.get("/actions/pause").status_code == 405
        assert "uploads paused" not in client.get("/").text
        ok = client.post(
            "/actions/pause", json={}, headers={"Origin": origin, "X-CSRF-Token": token}
        )
        assert ok.status_code == 200
        assert "uploads paused" in client.get("/").text


def test_every_answer_carries_the_strict_headers_and_no_cors(dashboard: Running) -> None:
    with closing(signed_in_client(dashboard)) as client:
        for path in ("/", "/static/dashboard.js", "/account", "/nothing-here"):
            answer = client.get(path, headers={"Origin": "http://attacker.example"})
            assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
            assert answer.headers["x-frame-options"] == "DENY"
            assert not any(k.lower().startswith("access-control-") for k in answer.headers)
        preflight = client.request("OPTIONS", "/actions/pause")
        assert preflight.status_code == 405


def test_the_secret_file_is_private_to_the_user(dashboard: Running) -> None:
    mode = stat.S_IMODE(os.stat(secret_path(dashboard.state)).st_mode)
    assert mode == 0o600


def test_a_non_loopback_bind_is_refused_unless_asked_for(tmp_path: Path) -> None:
    with pytest.raises(BindRefused, match=r"0\.0\.0\.0.*loopback only"):
        bind(DashboardConfig(bind=["0.0.0.0"], port=0))
    with pytest.raises(BindRefused, match="loopback only"):
        bind(DashboardConfig(bind=["127.0.0.1", "::"], port=0))
    # Asked for on purpose: it listens (with a warning in the log).
    sockets = bind(DashboardConfig(bind=["0.0.0.0"], port=0, allow_non_loopback=True))
    try:
        assert sockets[0].getsockname()[0] == "0.0.0.0"
    finally:
        for sock in sockets:
            sock.close()


def test_the_daemon_runs_on_without_a_dashboard_it_may_not_bind(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"state_dir: {state}\ndashboard:\n  bind: ['0.0.0.0']\n  port: 0\n", encoding="utf-8"
    )
    log = tmp_path / "daemon.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "releaseosd", "--config", str(config), "run"],
        env=daemon_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    try:
        wait_for(lambda: "releaseosd running" in log.read_text(), what="the daemon to run")
        text = log.read_text()
        assert "the dashboard is not running: dashboard.bind names 0.0.0.0" in text
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(15)


def test_markup_in_a_sidecar_renders_as_text(page: Page, dashboard: Running) -> None:
    evil = "<script>alert('owned')</script><img src=x onerror=alert(1)>"
    (dashboard.exports / "Evil.yaml").write_text(
        f'title: "{evil}"\nartist: "<b>bold</b>"\ndescription: "</dd><script>alert(2)</script>"\n'
        "sharing: private\n"
    )
    make_audio(dashboard.exports / "Evil.wav", freq=880)
    alerts: list[str] = []
    page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
    heading = page.get_by_role("heading", name="<script>alert('owned')</script>")
    expect(heading).to_be_visible(timeout=20 * SECOND)
    expect(page.locator("article.card .artist")).to_have_text("<b>bold</b>")
    heading.get_by_role("link").click()
    expect(page.locator(".metadata").first).to_contain_text("</dd><script>alert(2)</script>")
    assert page.locator("script:not([src])").count() == 0
    assert page.locator("img[src=x]").count() == 0
    page.screenshot(path=str(ARTIFACTS / "markup-as-text.png"))
    assert alerts == []
