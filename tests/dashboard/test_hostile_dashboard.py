"""The dashboard, its HTTP stack and the rehearsal's listener pages, tried by a hostile reviewer:
as another local user, as a web page elsewhere (DNS rebinding, CSRF), through hostile records and
answers, and as a careless user. Each test asserts the safe behaviour: a failure is a finding."""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from daemon_harness import (
    ThreadedDaemon,
    by_title,
    command,
    daemon_env,
    free_port,
    make_audio,
    wait_for,
    write_config,
)
from dashboard_harness import Running
from playwright.sync_api import Browser, Page, expect
from sandbox_tools import TestSandbox

from releaseosd.app.control import request, socket_path
from releaseosd.dashboard.access import load_or_create_secret, secret_path
from releaseosd.dashboard.server import DashboardNotRunning, address_path, login_url
from releaseosd.model.config import load_config
from releaseosd.model.states import State
from releaseosd.model.store import Store, prepare_state_dir
from releaseosd.model.track import HistoryEntry, RemoteTrack, Track, built_dir

EVIL = "<img src=x onerror=alert(1)>"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SECOND = 1000  # Playwright counts in milliseconds


# --- helpers ---------------------------------------------------------------------------------


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def signed_in_client(url: str, state: Path) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=10)
    answer = client.get(login_url(state).removeprefix(url.rstrip("/")))
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(client: httpx.Client) -> str:
    page = client.get("/").text
    return page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


def same_origin(url: str, client: httpx.Client) -> dict[str, str]:
    return {"Origin": url.rstrip("/"), "X-CSRF-Token": csrf_of(client)}


def raw_http(port: int, request_bytes: bytes, timeout: float = 5.0) -> bytes:
    """One request as bytes on a fresh connection; the answer's bytes until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request_bytes)
        out = b""
        with suppress(TimeoutError):
            while chunk := sock.recv(65536):
                out += chunk
    return out


def status_line(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def session_cookie(url: str, state: Path) -> str:
    with closing(httpx.Client(base_url=url, timeout=10)) as client:
        answer = client.get(login_url(state).removeprefix(url.rstrip("/")))
    return answer.headers["set-cookie"].split(";", 1)[0]


def released(dashboard: Running, title: str, freq: int) -> Track:
    (dashboard.exports / f"{title}.yaml").write_text(f"title: {title}\nsharing: public\n")
    make_audio(dashboard.exports / f"{title}.wav", freq=freq)
    return wait_for(
        lambda: (t := by_title(dashboard.state).get(title)) and t.state == State.RELEASED and t,
        timeout=40,
        what=f"{title} to be released",
    )


def spawn_daemon(config: Path, root: Path, log: Path, **popen: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "releaseosd", "--config", str(config), "run"],
        env=daemon_env(root),
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        start_new_session=True,
        **popen,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# --- a daemon over a store planted with hostile records ----------------------------------------


@pytest.fixture
def planted(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, runtime_dir: Path
) -> Iterator[Running]:
    """A daemon whose store already holds records a careless hand edit, an old store or a
    misbehaving SoundCloud could leave: paths outside the state dir, a symlink in a built dir,
    a share link that is not a web address, markup in every text."""
    config = write_config(
        tmp_path,
        sandbox.base_url,
        dashboard=True,
        redirect_uri=f"http://127.0.0.1:{free_port()}/callback",
    )
    state = tmp_path / "state"
    prepare_state_dir(state)
    outside = tmp_path / "private-notes.txt"
    outside.write_text("NOT FOR THE DASHBOARD\n")
    store = Store.open(state)
    try:
        store.insert(
            Track(
                id="aaaaaaaaaaaa",
                title="Outside" + EVIL,
                audio_path=str(tmp_path / "exports" / f"a{EVIL}.wav"),
                state=State.REMOVED,
                artwork_path=str(outside),
                preview_path=str(
                    built_dir(state, "aaaaaaaaaaaa") / ".." / ".." / ".." / outside.name
                ),
                last_error=EVIL,
                soundcloud=RemoteTrack(
                    urn="soundcloud:tracks:999001",
                    permalink_url="javascript:alert(document.domain)",
                    sharing="public",
                ),
                history=[HistoryEntry(at=dt.datetime.now(dt.UTC), state=State.REMOVED, note=EVIL)],
            )
        )
        linked = built_dir(state, "bbbbbbbbbbbb")
        linked.mkdir(parents=True)
        (linked / "artwork.jpg").symlink_to(outside)
        (linked / "preview.mp3").symlink_to(outside)
        store.insert(
            Track(
                id="bbbbbbbbbbbb",
                title="Linked",
                audio_path=str(tmp_path / "exports" / "b.wav"),
                state=State.REMOVED,
                artwork_path=str(linked / "artwork.jpg"),
                preview_path=str(linked / "preview.mp3"),
            )
        )
    finally:
        store.close()
    daemon = ThreadedDaemon(config, token_store)
    with daemon:
        url = wait_for(lambda: daemon.daemon.dashboard_url, what="the dashboard to listen")
        yield Running(daemon, tmp_path, tmp_path / "exports", state, url)


def test_built_file_routes_never_serve_files_outside_the_tracks_own_folder(
    planted: Running,
) -> None:
    with closing(signed_in_client(planted.url, planted.state)) as client:
        for path in (
            "/tracks/aaaaaaaaaaaa/artwork",  # a record naming a file elsewhere
            "/tracks/aaaaaaaaaaaa/preview",  # ../ out of its built dir
            "/tracks/bbbbbbbbbbbb/artwork",  # a symlink inside the built dir
            "/tracks/bbbbbbbbbbbb/preview",
            "/tracks/..%2f..%2fprivate-notes.txt/artwork",
            "/static/..%2f..%2fdashboard.secret",
        ):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert b"NOT FOR THE DASHBOARD" not in answer.content


def test_markup_in_notes_paths_and_errors_is_escaped(planted: Running) -> None:
    with closing(signed_in_client(planted.url, planted.state)) as client:
        for path in ("/?show=removed", "/tracks/aaaaaaaaaaaa", "/tracks/aaaaaaaaaaaa/card"):
            text = client.get(path).text
            assert "Outside&lt;img" in text, path
            assert "<img src=x" not in text, path


def test_a_share_link_that_is_not_a_web_address_is_never_rendered_as_a_link(
    planted: Running,
) -> None:
    """The permalink comes from SoundCloud's answer (or a hand-edited store): a `javascript:` one
    is stopped only by the CSP today. It must not reach an href at all."""
    with closing(signed_in_client(planted.url, planted.state)) as client:
        for path in ("/?show=removed", "/tracks/aaaaaaaaaaaa", "/tracks/aaaaaaaaaaaa/card"):
            text = client.get(path).text
            assert 'href="javascript:' not in text, path


# --- other local users: loopback is shared with everyone on the machine -----------------------


def test_idle_connections_from_anyone_cannot_starve_the_daemon(tmp_path: Path) -> None:
    """Any local user can open TCP connections to the dashboard's port without its secret.
    uvicorn keeps a connection that never sends a byte open forever: enough of them use up
    the daemon's file descriptors, and then the control socket, the store and every upload fail
    (and the log floods with 'Too many open files')."""
    config = write_config(tmp_path, "http://127.0.0.1:9", dashboard=True)
    log = tmp_path / "daemon.log"
    limit = 256
    process = spawn_daemon(
        config,
        tmp_path,
        log,
        preexec_fn=lambda: resource.setrlimit(
            resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        ),
    )
    conns: list[socket.socket] = []
    try:
        address = tmp_path / "state" / "dashboard.json"
        wait_for(address.exists, what="the dashboard's address file")
        port = port_of(json.loads(address.read_text())["url"])
        for _ in range(limit + 50):
            with suppress(OSError):
                conns.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        try:
            answer = subprocess.run(
                [sys.executable, "-m", "releaseosd", "--config", str(config), "pause"],
                env=daemon_env(tmp_path),
                capture_output=True,
                text=True,
                timeout=20,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(
                "the control socket did not answer while idle dashboard connections were open"
            )
        assert answer.returncode == 0, answer.stderr[-400:]
        assert log.stat().st_size < 1_000_000, "the log floods while accept() fails"
    finally:
        for conn in conns:
            conn.close()
        stop(process)


def test_ui_never_puts_the_secret_on_a_command_line(dashboard: Running, tmp_path: Path) -> None:
    """`releaseosd ui` hands `/login?token=<secret>` to the browser as an argument: every user on
    the machine can read it in /proc/<pid>/cmdline (ps) for as long as that browser runs, and
    reach the loopback dashboard with it. Jupyter opens a private redirect file for this reason."""
    recorded = tmp_path / "browser-argv.txt"
    browser = tmp_path / "fake-browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {recorded}\n')
    browser.chmod(0o755)
    env = {
        **os.environ,
        "BROWSER": str(browser),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    answer = subprocess.run(
        [sys.executable, "-m", "releaseosd", "--config", str(dashboard.root / "config.yaml"), "ui"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0, answer.stderr
    wait_for(recorded.exists, what="the browser to be started")
    secret = secret_path(dashboard.state).read_text().strip()
    assert secret not in recorded.read_text(), "the dashboard secret is in the browser's argv"


def test_the_rehearsal_listener_pages_refuse_a_rebound_host(
    dashboard: Running, sandbox: TestSandbox
) -> None:
    """The sandbox's listener pages serve the rehearsed (unreleased) audio with no login to any
    Host: a web page whose name is rebound to 127.0.0.1 can read it, as the dashboard's Host
    check prevents for the dashboard itself."""
    track = released(dashboard, "Rebound", 660)
    link = track.soundcloud.permalink_url
    assert link
    number = str(track.soundcloud.urn).rsplit(":", 1)[1]
    base = sandbox.base_url
    for path in (urlsplit(link).path, f"/_listen/{number}/audio"):
        own = httpx.get(base + path, timeout=10)
        assert own.status_code == 200, path
        rebound = httpx.get(
            base + path, headers={"Host": f"attacker.example:{port_of(base)}"}, timeout=10
        )
        assert rebound.status_code in (403, 421), (path, rebound.status_code)


def test_a_stranger_cannot_sign_in_with_a_planted_address_file(tmp_path: Path) -> None:
    """`releaseosd ui` appends the secret to whatever URL dashboard.json names (and ignores its
    pid): a stale or planted file sends the secret to that host."""
    state = tmp_path / "state"
    prepare_state_dir(state)
    load_or_create_secret(state)
    address_path(state).write_text(json.dumps({"url": "http://attacker.example/", "pid": 1}))
    try:
        url = login_url(state)
    except DashboardNotRunning:
        return
    assert urlsplit(url).hostname in LOOPBACK, url


# --- web pages elsewhere: DNS rebinding and CSRF -------------------------------------------------


def test_host_header_variants_are_refused(dashboard: Running) -> None:
    port = port_of(dashboard.url)
    cookie = session_cookie(dashboard.url, dashboard.state)

    def get(host: str | None, target: str = "/", version: str = "1.1") -> int:
        head = f"Host: {host}\r\n" if host is not None else ""
        return status_line(
            raw_http(
                port,
                f"GET {target} HTTP/{version}\r\n{head}Cookie: {cookie}\r\n"
                "Connection: close\r\n\r\n".encode(),
            )
        )

    for host in (
        f"localhost.:{port}",
        f"127.0.0.1.:{port}",
        f"[0:0:0:0:0:0:0:1]:{port}",
        f"127.1:{port}",
        f"0x7f000001:{port}",
        f"127.0.0.1:0{port}",
        "127.0.0.1",
        f"attacker.example:{port}",
        f"127.0.0.1:{port}@attacker.example",
        "",
    ):
        assert get(host) in (400, 403), host
    assert get(None, version="1.0") == 403
    # Two Host headers: h11 refuses the request.
    two = raw_http(
        port,
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: attacker.example\r\n"
        f"Cookie: {cookie}\r\n\r\n".encode(),
    )
    assert status_line(two) == 400
    # An absolute-form target names another site: nothing of the dashboard answers it.
    assert get(f"127.0.0.1:{port}", "http://attacker.example/") == 404
    for host in (f"127.0.0.1:{port}", f"LocalHost:{port}", f"[::1]:{port}"):
        assert get(host) == 200, host


def test_cross_site_posts_are_refused_whatever_they_carry(dashboard: Running) -> None:
    with closing(signed_in_client(dashboard.url, dashboard.state)) as client:
        token = csrf_of(client)
        origin = dashboard.url.rstrip("/")
        attempts: list[dict[str, Any]] = [
            # An HTML form with enctype=text/plain: no custom header, a foreign Origin.
            {"content": '{"a":"=1"}', "headers": {"Content-Type": "text/plain", "Origin": "null"}},
            {"content": "x=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            {"json": {}, "headers": {"Origin": "null", "X-CSRF-Token": token}},
            {"json": {}, "headers": {"Origin": origin + "/", "X-CSRF-Token": token}},
            {"json": {}, "headers": {"Origin": origin.upper(), "X-CSRF-Token": token}},
            {
                "json": {},
                "headers": {"Origin": origin + ".attacker.example", "X-CSRF-Token": token},
            },
            {"json": {}, "headers": {"Referer": dashboard.url, "X-CSRF-Token": token}},
            {"json": {}, "headers": {"Origin": origin, "X-CSRF-Token": token + "0"}},
            {"json": {}, "headers": {"Origin": origin, "X-CSRF-Token": ""}},
        ]
        for attempt in attempts:
            for action in ("pause", "connect", "disconnect", "remove"):
                answer = client.post(f"/actions/{action}", **attempt)
                assert answer.status_code == 403, (action, attempt)
        assert "uploads paused" not in client.get("/").text
        assert client.get("/account").text.count("Connected as") == 1


def test_login_never_redirects_off_site_and_a_guess_gets_nothing(dashboard: Running) -> None:
    good = login_url(dashboard.state)
    token = parse_qs(urlsplit(good).query)["token"][0]
    with httpx.Client(base_url=dashboard.url, timeout=10) as client:
        for query in (
            {"token": token, "next": "http://attacker.example/"},
            {"token": token, "redirect": "//attacker.example"},
        ):
            answer = client.get("/login", params=query)
            assert answer.status_code == 303 and answer.headers["location"] == "/"
        for guess in ("", token[:-1], token + "x", token.upper(), " " + token, "é" * 43):
            answer = client.get("/login", params={"token": guess})
            assert answer.status_code == 401 and "set-cookie" not in answer.headers, guess
        # POST /login is not a way in either.
        assert client.post("/login", params={"token": token}).status_code == 405


# --- bodies and actions --------------------------------------------------------------------------


def test_actions_answer_odd_bodies_with_a_client_error(dashboard: Running) -> None:
    with closing(signed_in_client(dashboard.url, dashboard.state)) as client:
        headers = {**same_origin(dashboard.url, client), "Content-Type": "application/json"}
        bodies = [
            b"[]",
            b"null",
            b'"x"',
            b"{",
            b"\xff\xfe",
            b'{"track": null}',
            b'{"track": {"a": 1}}',
            b'{"track": "nope", "at": "garbage"}',
            b'{"track": "nope", "at": "2026-02-30T10:00"}',
            b'{"track": "nope", "at": "9999-12-31T23:59:59-23:59"}',
            b'{"track": "nope", "at": NaN}',
            b'{"track": "nope", "at": 1e400}',
            b"[" * 100_000,  # nesting deep enough to overflow json's recursion
        ]
        for body in bodies:
            for action in ("release", "retry", "remove"):
                answer = client.post(f"/actions/{action}", content=body, headers=headers)
                assert 400 <= answer.status_code < 500, (action, body[:40], answer.status_code)
                assert "error" in answer.json()


def test_disconnect_then_connect_works_from_the_dashboard(dashboard: Running) -> None:
    """Disconnect tells the user 'uploads wait until you connect again', and the account box
    then offers 'Connect SoundCloud'. logout() also deletes the app's client secret, so Connect
    is refused until the user runs 'releaseosd auth setup' in a terminal."""
    with closing(signed_in_client(dashboard.url, dashboard.state)) as client:
        headers = same_origin(dashboard.url, client)
        assert client.post("/actions/disconnect", json={}, headers=headers).status_code == 200
        assert "Connect SoundCloud" in client.get("/account").text
        answer = client.post("/actions/connect", json={}, headers=headers)
        assert answer.status_code == 200, answer.text
        assert "/authorize?" in answer.json()["url"]


def test_connect_pressed_twice_starts_one_fresh_login(dashboard: Running) -> None:
    with closing(signed_in_client(dashboard.url, dashboard.state)) as client:
        headers = same_origin(dashboard.url, client)
        first = client.post("/actions/connect", json={}, headers=headers)
        second = client.post("/actions/connect", json={}, headers=headers)
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        states = {parse_qs(urlsplit(a.json()["url"]).query)["state"][0] for a in (first, second)}
        assert len(states) == 2


# --- the stack's lifecycle -------------------------------------------------------------------------


def test_the_daemon_stops_in_time_with_live_pages_open(dashboard: Running) -> None:
    port = port_of(dashboard.url)
    cookie = session_cookie(dashboard.url, dashboard.state)
    streams = []
    for _ in range(6):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(
            f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n".encode()
        )
        streams.append(sock)
    # One page that never reads what it is sent.
    streams[-1].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    for sock in streams[:-1]:
        heard = b""
        while b"event: hello" not in heard:
            chunk = sock.recv(4096)
            assert chunk, heard
            heard += chunk
    try:
        started = time.monotonic()
        dashboard.daemon.daemon.request_stop()
        dashboard.daemon.thread.join(10)
        took = time.monotonic() - started
        assert not dashboard.daemon.thread.is_alive(), "the daemon did not stop"
        assert took < 8.0, f"stopping took {took:.1f} s"
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        for sock in streams:
            sock.close()


def test_a_fifo_at_the_secret_path_does_not_hang_the_daemon(tmp_path: Path) -> None:
    """read_secret opens the secret file before checking what it is: a FIFO there blocks
    open() forever and the daemon never starts (no watcher, no control socket, no releases)."""
    config = write_config(tmp_path, "http://127.0.0.1:9", dashboard=True)
    state = tmp_path / "state"
    prepare_state_dir(state)
    os.mkfifo(secret_path(state), 0o600)
    log = tmp_path / "daemon.log"
    process = spawn_daemon(config, tmp_path, log)
    try:
        wait_for(
            lambda: "releaseosd running" in log.read_text() or process.poll() is not None,
            timeout=30,
            what="the daemon to start past a FIFO at dashboard.secret",
        )
        assert process.poll() is None, log.read_text()[-2000:]
        assert "dashboard.secret" in log.read_text()
    finally:
        stop(process)


def test_a_busy_port_leaves_the_daemon_running_and_ui_says_why(
    tmp_path: Path, runtime_dir: Path
) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    config = write_config(tmp_path, "http://127.0.0.1:9", dashboard=True)
    config.write_text(
        config.read_text().replace("  port: 0", f"  port: {port}\n  bind: ['127.0.0.1']")
    )
    log = tmp_path / "daemon.log"
    process = spawn_daemon(config, tmp_path, log)
    try:
        wait_for(lambda: "releaseosd running" in log.read_text(), what="the daemon to run")
        assert f"port {port} on 127.0.0.1 is in use" in log.read_text()
        assert not address_path(tmp_path / "state").exists()
        answer = subprocess.run(
            [sys.executable, "-m", "releaseosd", "--config", str(config), "ui", "--no-browser"],
            env=daemon_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert answer.returncode != 0
        assert "token=" not in answer.stdout
    finally:
        stop(process)
        blocker.close()


def test_a_rehearsal_beside_a_dashboard_on_the_last_port_still_runs(
    tmp_path: Path, runtime_dir: Path
) -> None:
    """`run --sandbox` puts its dashboard on dashboard.port + 1, which for the config's allowed
    maximum (65535) makes bind() raise OverflowError: the rehearsal daemon dies at start."""
    from releaseosd.app.daemon import Daemon

    config_path = write_config(tmp_path, "http://127.0.0.1:9", dashboard=True)
    config_path.write_text(config_path.read_text().replace("  port: 0", "  port: 65535"))
    daemon = Daemon(load_config(config_path)[0], config_path, sandbox=True, tick_seconds=0.3)
    died: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run()
        except BaseException as exc:
            died.append(exc)

    thread = threading.Thread(target=run, name="rehearsal-under-test")
    thread.start()
    try:
        wait_for(
            lambda: daemon.first_scan_done.is_set() or not thread.is_alive(),
            what="the rehearsal to start",
        )
        assert thread.is_alive() and not died, died
    finally:
        daemon.request_stop()
        thread.join(15)


# --- the control socket on uvicorn -----------------------------------------------------------------


def test_the_control_socket_serves_others_while_slow_clients_hold_it(dashboard: Running) -> None:
    config_path = dashboard.root / "config.yaml"
    config = load_config(config_path)[0]
    path = socket_path(config.state_dir)
    slow = []
    try:
        for _ in range(20):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(path))
            # Headers promise a body that never comes.
            sock.sendall(b"POST /pause HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
            slow.append(sock)
        started = time.monotonic()
        assert "resumed" in command(config_path, "resume")
        results: list[Any] = []

        def ask() -> None:
            results.append(request(config, "GET", "/status", raw=True))

        askers = [threading.Thread(target=ask) for _ in range(24)]
        for t in askers:
            t.start()
        for t in askers:
            t.join(20)
        assert len(results) == 24 and all(r.startswith("[") for r in results)
        assert time.monotonic() - started < 15
        # Not JSON, or not an object: a client error, not a crash.
        for body in (b"[1]", b"nope", b"\xff"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(
                b"POST /pause HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            answer = b""
            with suppress(TimeoutError):
                while chunk := sock.recv(4096):
                    answer += chunk
            sock.close()
            assert status_line(answer) == 400, body
    finally:
        for sock in slow:
            sock.close()


# --- the rehearsal sandbox's listener pages ----------------------------------------------------


def test_a_listener_asset_with_an_odd_number_is_a_404(sandbox: TestSandbox) -> None:
    """`parts[1].isdigit()` is true for '²' and for 5000 digits, which int() refuses: the
    sandbox answers 500 'sandbox bug' instead of 404."""
    for number in ("%C2%B2", "9" * 5000):
        answer = httpx.get(f"{sandbox.base_url}/_listen/{number}/audio", timeout=10)
        assert answer.status_code == 404, (number[:8], answer.status_code)


# --- a careless user in the browser -------------------------------------------------------------


def test_a_release_time_is_read_in_the_browsers_time_zone(
    browser: Browser, dashboard: Running
) -> None:
    """The form is labelled 'Release at (your time zone)', but the page sends the picker's
    wall-clock value without an offset and the daemon reads it in *its* zone. A daemon started
    before the laptop's zone changed (glibc keeps the zone it first read), or a service without
    the session's $TZ, releases hours early or late."""
    zone = "Pacific/Kiritimati"  # UTC+14 all year: no daemon in a test runs there by chance
    (dashboard.exports / "Zoned.yaml").write_text(
        "title: Zoned Song\nsharing: public\nrelease_at: 2031-01-01T10:00:00+00:00\n"
    )
    make_audio(dashboard.exports / "Zoned.wav", freq=770)
    track = wait_for(
        lambda: (
            (t := by_title(dashboard.state).get("Zoned Song")) and t.state == State.SCHEDULED and t
        ),
        timeout=40,
        what="Zoned Song scheduled",
    )
    context = browser.new_context(timezone_id=zone)
    try:
        page = context.new_page()
        page.goto(dashboard.signed_in)
        page.goto(f"{dashboard.url}tracks/{track.id}")
        page.wait_for_selector("body[data-live=yes]")
        page.fill("#release-at", "2030-06-01T12:00")
        page.get_by_role("button", name="Set release time").click()
        expect(page.locator("#flash")).to_contain_text("goes public", timeout=10 * SECOND)
    finally:
        context.close()
    meant = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=14)))
    stored = by_title(dashboard.state)["Zoned Song"].release_at
    assert stored == meant, f"the user meant {meant.isoformat()}, the daemon stored {stored}"


def test_a_filtered_list_shows_only_its_own_tracks_as_they_move(
    page: Page, dashboard: Running
) -> None:
    # Held in the queue until the card is surely shown: on a loaded machine the track could
    # otherwise be out before the page ever listed it.
    command(dashboard.root / "config.yaml", "pause")
    page.goto(f"{dashboard.url}?show=on%20the%20way")
    page.wait_for_selector("body[data-live=yes]")
    (dashboard.exports / "Mover.yaml").write_text("title: Mover\nsharing: public\n")
    make_audio(dashboard.exports / "Mover.wav", freq=990)
    mover = page.locator("article.card", has=page.get_by_role("heading", name="Mover"))
    expect(mover).to_be_visible(timeout=20 * SECOND)
    command(dashboard.root / "config.yaml", "resume")
    wait_for(
        lambda: (t := by_title(dashboard.state).get("Mover")) and t.state == State.RELEASED,
        timeout=40,
        what="Mover released",
    )
    # Released is "out", not "on the way": the live update must not leave it in this list.
    expect(mover).to_have_count(0, timeout=10 * SECOND)


def test_remove_with_remote_false_as_a_string_keeps_the_soundcloud_copy(
    dashboard: Running, sandbox: TestSandbox
) -> None:
    """`bool(body.get("remote"))`: the string "false" (or "0", "no") deletes the track on
    SoundCloud, which cannot be undone. Only a JSON true should."""
    track = released(dashboard, "Kept", 880)
    with closing(signed_in_client(dashboard.url, dashboard.state)) as client:
        answer = client.post(
            "/actions/remove",
            json={"track": track.id, "remote": "false"},
            headers=same_origin(dashboard.url, client),
        )
    assert "deleted on SoundCloud" not in answer.text, answer.text
    assert len(sandbox.tracks()) == 1


def test_a_clean_stop_with_a_page_open_logs_no_error(
    dashboard: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Every stop (a restart of the service) with a dashboard tab open writes 'Exception in ASGI
    application' with a CancelledError traceback per tab, and uvicorn's 'timeout graceful
    shutdown exceeded', at ERROR: the journal shows errors for a normal stop."""
    port = port_of(dashboard.url)
    cookie = session_cookie(dashboard.url, dashboard.state)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n".encode()
        )
        heard = b""
        while b"event: hello" not in heard:
            heard += sock.recv(4096)
        caplog.clear()
        dashboard.daemon.daemon.request_stop()
        dashboard.daemon.thread.join(10)
    errors = [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == []


# --- what held: the secret file's checks, the live feed's bounds ---------------------------------


def test_a_secret_file_that_is_not_a_private_file_of_ours_is_refused(tmp_path: Path) -> None:
    from releaseosd.dashboard.access import SecretUnsafe, read_secret

    good = "x" * 43
    cases: dict[str, Any] = {}
    for name in ("link", "open", "foreign", "short"):
        state = tmp_path / name
        prepare_state_dir(state)
        cases[name] = state
    elsewhere = tmp_path / "planted"
    elsewhere.write_text(good)
    elsewhere.chmod(0o600)
    secret_path(cases["link"]).symlink_to(elsewhere)
    secret_path(cases["open"]).write_text(good)
    secret_path(cases["open"]).chmod(0o644)
    secret_path(cases["foreign"]).write_text(good)
    secret_path(cases["foreign"]).chmod(0o600)
    os.chown(secret_path(cases["foreign"]), 65534, 65534)
    secret_path(cases["short"]).write_text("abc\n")
    secret_path(cases["short"]).chmod(0o600)
    for name, state in cases.items():
        with pytest.raises(SecretUnsafe):
            load_or_create_secret(state)
        with pytest.raises(SecretUnsafe):
            read_secret(state)
        assert name  # each case named in the failure's traceback
    # A dangling link is not followed to create a file where it points either.
    dangling = tmp_path / "dangling"
    prepare_state_dir(dangling)
    target = tmp_path / "made-through-a-link"
    secret_path(dangling).symlink_to(target)
    with pytest.raises(SecretUnsafe):
        load_or_create_secret(dangling)
    assert not target.exists()


def test_the_live_feed_forgets_closed_pages_and_bounds_a_slow_one(dashboard: Running) -> None:
    import gc

    from releaseosd.dashboard.live import QUEUE_LIMIT, LiveFeed, Message

    port = port_of(dashboard.url)
    cookie = session_cookie(dashboard.url, dashboard.state)
    pages = []
    for _ in range(30):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.sendall(
            f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n".encode()
        )
        pages.append(sock)
    try:
        feed = wait_for(
            lambda: next(
                (o for o in gc.get_objects() if isinstance(o, LiveFeed) and len(o._pages) >= 30),
                None,
            ),
            what="30 pages to listen",
        )
        # Far more than a page that never reads can take: each keeps a bounded queue.
        for n in range(20_000):
            feed._send(Message("track", json.dumps({"id": f"{n:012d}" * 20})))
        wait_for(
            lambda: all(q.qsize() <= QUEUE_LIMIT for _, q in list(feed._pages.values())),
            what="the queues to settle",
        )
        assert all(q.qsize() <= QUEUE_LIMIT for _, q in list(feed._pages.values()))
    finally:
        for sock in pages:
            sock.close()
    wait_for(lambda: len(feed._pages) == 0, timeout=30, what="closed pages to be forgotten")


@pytest.mark.parametrize("planted_as", ["folder", "binary"])
def test_an_odd_secret_file_leaves_the_daemon_running(tmp_path: Path, planted_as: str) -> None:
    """read_secret os.fdopen()s the path in text mode before its checks: a folder there raises
    IsADirectoryError, bytes that are not UTF-8 UnicodeDecodeError, neither of which the daemon
    catches (only SecretUnsafe): `releaseosd run` dies at start instead of running without its
    dashboard."""
    config = write_config(tmp_path, "http://127.0.0.1:9", dashboard=True)
    state = tmp_path / "state"
    prepare_state_dir(state)
    if planted_as == "folder":
        secret_path(state).mkdir(mode=0o700)
    else:
        secret_path(state).write_bytes(b"\xff\xfe" * 40)
        secret_path(state).chmod(0o600)
    log = tmp_path / "daemon.log"
    process = spawn_daemon(config, tmp_path, log)
    try:
        wait_for(
            lambda: "releaseosd running" in log.read_text() or process.poll() is not None,
            timeout=30,
            what="the daemon to start or die",
        )
        assert process.poll() is None, log.read_text()[-1500:]
        assert "the dashboard is not running" in log.read_text()
    finally:
        stop(process)


def test_a_rehearsal_beside_the_real_daemon_keeps_its_own_dashboard(dashboard: Running) -> None:
    from releaseosd.app.daemon import Daemon
    from releaseosd.model.config import rehearsal_state_dir

    config_path = dashboard.root / "config.yaml"
    config = load_config(config_path)[0]
    rehearsal = Daemon(config, config_path, sandbox=True, tick_seconds=0.3)
    thread = threading.Thread(target=rehearsal.run, name="rehearsal-beside")
    thread.start()
    try:
        url = wait_for(
            lambda: rehearsal.dashboard_url or (not thread.is_alive() and "dead"),
            what="the rehearsal's dashboard",
        )
        assert url != "dead" and url != dashboard.url
        state = rehearsal_state_dir(config)
        assert login_url(state) != login_url(dashboard.state)
        # The real dashboard's session opens nothing on the rehearsal's, and back.
        real = session_cookie(dashboard.url, dashboard.state).split("=", 1)[1]
        port = port_of(url)
        forged = f"releaseosd_{port}={real}"
        answer = raw_http(
            port,
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {forged}\r\n"
            "Connection: close\r\n\r\n".encode(),
        )
        assert status_line(answer) == 401
        with closing(signed_in_client(url, state)) as client:
            assert "Rehearsal:" in client.get("/").text
        with closing(signed_in_client(dashboard.url, dashboard.state)) as client:
            assert "Rehearsal:" not in client.get("/").text
    finally:
        rehearsal.request_stop()
        thread.join(15)
        assert not thread.is_alive()
