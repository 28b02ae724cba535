"""A seeded, randomized chaos run against the real daemon and the SoundCloud sandbox.

The daemon runs as a child process (`start_daemon_process`), so it can be SIGKILLed at any moment
and started again. One `random.Random(seed)` makes every choice: which operation comes next, file
names, audio frequencies and lengths, sidecar contents, write modes, fault bursts, kill moments
and the short race gaps between operations. No choice depends on what the daemon did (only on
what the driver itself decided before), so the same seed replays the same operations, and a
shorter run of a seed (`RELEASEOSD_CHAOS_OPS`) is a prefix of a longer one: bisect on it to
reduce a failure.

Cheap invariants are checked after every operation; everything is checked once the run has
settled (faults off, uploads resumed, every release time passed, no track in a transient state)
and the daemon has been stopped. See `INVARIANTS` for what is checked.

Environment (all optional):
  RELEASEOSD_CHAOS_SEED=17 or "3,17,40"  run exactly these seeds
  RELEASEOSD_CHAOS_SEEDS=50              how many seeds (counting up from the file's first)
  RELEASEOSD_CHAOS_OPS=120               operations per seed
  RELEASEOSD_CHAOS_WEIGHTS="kill=0,drop=20"  change operation weights (changes the sequence)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import daemon_harness
import yaml
from daemon_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    daemon_env,
    file_token_store,
    keyring_file,
    log_in,
    make_audio,
    read_tracks,
    start_daemon_process,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State
from releaseosd.model.store import Store
from releaseosd.model.track import Track

INVARIANTS = {
    "I0": "every request the daemon sent is one SoundCloud's openapi.yaml documents",
    "I1": "at most once on SoundCloud: per machine-tag digest, per decoded audio, per export "
    "slot; every copy claimed by one record; `remove --remote` leaves none",
    "I2": "every copy's stored asset hashes to its machine tag's digest and to an export that "
    "was complete at some point",
    "I3": "SoundCloud's title/genre/tags/description/release/label/sharing equal the last "
    "sidecar (over release.yaml, plus config defaults); re-exports after upload are reported",
    "I4": "nothing public before its release time (request log); nothing sent for a removed track",
    "I5": "no track stuck: each ends released/published/failed/invalid(with cause)/removed or "
    "waits for its sidecar; every export has a record and the record follows its file",
    "I6": "the store parses, opens after the daemon stops; the daemon starts and stops cleanly",
    "I7": "pause holds uploads: no POST /tracks while paused",
    "I8": "playlists: one per name; every released/published track is in its sidecar's",
}

# Seconds of daemon uptime within which a file edit or a command is surely taken in: before
# that, the daemon may still act on what was there before (a release already on its way).
KNOW_SECONDS = 5.0
# A slow writer that stops writing this long may have its half-written file taken as complete
# (stable_seconds is 0.3): such content is excused, and reported as the driver's stall.
STALL_SECONDS = 0.2
SETTLE_SECONDS = 150.0
# Unsettled, and neither the store nor the request log changed for this long: stuck.
STUCK_SECONDS = 20.0
MACHINE_PREFIX = "releaseosd:sha256="
_TAG_RE = re.compile(r'"([^"]*)"|(\S+)')

GENRES = ["House", "Techno", "Ambient", "Drum & Bass", "Dub", "Electronic", "Lo-Fi"]
TAGS = ["house", "techno", "late night", "ambient", "dub", "field recording", "lofi", "140",
        "warehouse", "deep", "tape hiss", "sunrise"]  # fmt: skip
KEYS = ["Am", "F# minor", "C", "8A", "Eb major"]
DESCRIPTIONS = ["Recorded live at the studio.", "Second take, no edits.", "For the night bus.",
                "Mixed on headphones: sorry."]  # fmt: skip
PLAYLISTS = ["Night Works", "Sketches", "Live Cuts"]
WORDS = ["Night", "Drive", "Glass", "Echo", "Low", "Tide", "Neon", "Static", "Amber", "Fog"]

DEFAULT_WEIGHTS: dict[str, float] = {
    "drop": 14,
    "reexport": 6,
    "edit": 10,
    "edit_folder": 3,
    "move_folder": 3,
    "delete": 2,
    "delete_sidecar": 1,
    "add_sidecar": 4,
    "broken_sidecar": 1,
    "duplicate": 2,
    "remove": 2,
    "release": 3,
    "pause": 2,
    "kill": 3,
    "expire_tokens": 2,
    "drop_upload": 2,
    "burst_5xx": 2,
    "burst_429": 1,
    "error_window": 1,
    "processing_fails": 1,
    "lost_token_answer": 0.5,
    "wait": 5,
}

TRANSIENT = (State.BUILDING, State.READY, State.UPLOADING, State.PROCESSING, State.SCHEDULED)


def seeds_from_env(default: list[int]) -> list[int]:
    raw = os.environ.get("RELEASEOSD_CHAOS_SEED", "").strip()
    if raw:
        return [int(x) for x in raw.replace(",", " ").split()]
    count = os.environ.get("RELEASEOSD_CHAOS_SEEDS", "").strip()
    if count:
        return list(range(default[0], default[0] + int(count)))
    return default


def ops_from_env(default: int) -> int:
    return int(os.environ.get("RELEASEOSD_CHAOS_OPS", "").strip() or default)


def weights_from_env() -> dict[str, float]:
    weights = dict(DEFAULT_WEIGHTS)
    for item in os.environ.get("RELEASEOSD_CHAOS_WEIGHTS", "").replace(" ", "").split(","):
        if item:
            name, _, value = item.partition("=")
            if name not in weights:
                raise ValueError(f"RELEASEOSD_CHAOS_WEIGHTS: unknown operation {name!r}")
            weights[name] = float(value)
    return weights


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tags_of(tag_list: str | None) -> tuple[list[str], list[str]]:
    """(plain tags, machine-tag digests) of a SoundCloud tag_list."""
    plain, machine = [], []
    for quoted, bare in _TAG_RE.findall(tag_list or ""):
        tag = (quoted or bare).strip()
        if tag.lower().startswith(MACHINE_PREFIX):
            machine.append(tag[len(MACHINE_PREFIX) :].lower())
        elif tag:
            plain.append(tag)
    return plain, machine


def release_ts(value: Any) -> float | None:
    if value is None:
        return None
    return dt.datetime.fromisoformat(str(value)).timestamp()


def local_iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).astimezone().replace(microsecond=0).isoformat()


def describe_expected(merged: dict[str, Any]) -> str:
    """The description as README's default template renders it (written independently)."""
    lines = ["Created with Release OS"]
    if merged.get("bpm") is not None:
        lines.append(f"BPM: {merged['bpm']}")
    if merged.get("key"):
        lines.append(f"Key: {merged['key']}")
    rendered = "\n".join(lines)
    own = (merged.get("description") or "").strip()
    return f"{own}\n\n{rendered}" if own else rendered


# --- the driver's model of the world ------------------------------------------------------------


@dataclass
class Folder:
    rel: str  # under exports/; "" is the watch root itself
    defaults: dict[str, Any] | None = None  # release.yaml as last written validly
    state: str = "absent"  # ok | broken | absent


@dataclass
class Version:
    """A slot's sidecar files (own over release.yaml) as they stood from `at` on."""

    at: float
    state: str  # ok | broken | absent
    merged: dict[str, Any]


@dataclass
class Audio:
    digest: str
    identity: tuple[int, float]  # (frequency, seconds): the decoded audio
    tag_title: str | None = None


@dataclass
class Slot:
    """One export name in one folder: the audio file, its sidecar, and what was done to them."""

    n: int
    name: str
    suffix: str
    codec: str
    folder: Folder
    own: dict[str, Any] | None = None  # own sidecar as last written validly
    own_state: str = "absent"
    audios: list[Audio] = field(default_factory=list)  # every complete export written here
    current: Audio | None = None
    versions: list[Version] = field(default_factory=list)
    # What decides when it may be public, in order: ("sidecar", Version), ("user", ts),
    # ("removed", remote).
    events: list[tuple[float, str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    dup_of: int | None = None
    has_audio: bool = False
    dead: bool = False  # the driver's intent: not touched any more (removed or deleted)
    deleted_at: float | None = None
    deleted_path: str | None = None
    removed: tuple[float, bool] | None = None  # the CLI said yes at this time (--remote?)
    user_release: float | None = None  # `releaseosd release` said yes
    writer: SlowWriter | None = None

    @property
    def label(self) -> str:
        return f"{self.name}{self.suffix}"

    def digests(self) -> set[str]:
        return {a.digest for a in self.audios}

    def last_ok(self) -> Version | None:
        return next((v for v in reversed(self.versions) if v.state == "ok"), None)


class SlowWriter(threading.Thread):
    """A DAW writing an export in place, in chunks, over a second or two (no rename)."""

    def __init__(
        self,
        path: Path,
        audio: Audio,
        data: bytes,
        old: bytes | None,
        truncate: bool,
        cuts: list[int],
        gaps: list[float],
    ) -> None:
        super().__init__(name=f"slow-writer-{path.name}", daemon=True)
        self.path, self.audio, self.data, self.old, self.truncate = path, audio, data, old, truncate
        self.cuts, self.gaps = cuts, gaps
        self.excused: list[str] = []
        self.error: BaseException | None = None

    def _content(self, pos: int) -> bytes:
        rest = self.old[pos:] if (self.old is not None and not self.truncate) else b""
        return self.data[:pos] + rest

    def run(self) -> None:
        try:
            in_place = self.old is not None and not self.truncate
            with self.path.open("r+b" if in_place else "wb") as fh:
                pos, last = 0, time.monotonic()
                for k, cut in enumerate(self.cuts):
                    if k:
                        time.sleep(self.gaps[k - 1])  # the writer's own pace, not a wait
                    if time.monotonic() - last > STALL_SECONDS:
                        self.excused.append(sha256(self._content(pos)))
                    fh.write(self.data[pos:cut])
                    fh.flush()
                    pos, last = cut, time.monotonic()
                if in_place and self.old is not None and len(self.old) > len(self.data):
                    if time.monotonic() - last > STALL_SECONDS:
                        self.excused.append(sha256(self._content(pos)))
                    fh.truncate(len(self.data))
        except BaseException as exc:  # reported by whoever joins
            self.error = exc


class RemoteWatch(threading.Thread):
    """Which digest each SoundCloud URN carries, seen every 0.1 s (deleted tracks included)."""

    def __init__(self, sandbox: TestSandbox) -> None:
        super().__init__(name="chaos-remote-watch", daemon=True)
        self.sandbox = sandbox
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.urn_digest: dict[str, str] = {}

    def poll(self) -> list[dict[str, Any]]:
        tracks = self.sandbox.tracks()
        with self.lock:
            for t in tracks:
                machine = tags_of(t.get("tag_list"))[1]
                if machine:
                    self.urn_digest.setdefault(str(t["urn"]), machine[0])
        return tracks

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            self.poll()

    def digest_of(self, urn: str) -> str | None:
        with self.lock:
            return self.urn_digest.get(urn)


class ChaosAbort(Exception):
    """The run cannot go on (the daemon will not start): report what was seen so far."""


# --- the run ------------------------------------------------------------------------------------


class ChaosRun:
    def __init__(
        self,
        seed: int,
        n_ops: int,
        root: Path,
        sandbox: TestSandbox,
        weights: dict[str, float] | None = None,
    ) -> None:
        self.seed, self.n_ops, self.root, self.sandbox = seed, n_ops, root, sandbox
        self.rng = random.Random(seed)
        self.weights = weights or weights_from_env()
        self.exports = root / "exports"
        self.state_dir = root / "state"
        self.scratch = root / "scratch"
        self.scratch.mkdir(parents=True, exist_ok=True)
        log_in(file_token_store(keyring_file(root)), sandbox)  # where daemon_env(root) looks
        self.config = write_config(
            root,
            sandbox.base_url,
            uploads={"max_attempts": 60, "concurrency": 2, "backoff_max_seconds": 1.0},
        )
        self.log_path = root / "daemon.log"
        self.log_path.touch()
        self.folders: list[Folder] = [Folder("")]
        self.slots: list[Slot] = []
        self.complete: set[str] = set()
        self.excused: set[str] = set()
        self.identity: dict[str, tuple[int, float]] = {}
        self.violations: dict[str, str] = {}
        self.notes: list[str] = []
        self.oplog: list[str] = []
        self.kinds: Counter[str] = Counter()
        self.up: list[list[float | None]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_offset = 0
        self.runs_seen = 0
        self.down_for = 0
        self.paused_intent = False
        self.paused_since: float | None = None
        self.pauses: list[tuple[float, float]] = []
        self.error_window = 0
        self.processing_window = 0
        self.freq = 150 + 3 * (seed % 5)
        self.counter = 0
        self.t0 = time.time()
        self.op_index = -1
        self.watch = RemoteWatch(sandbox)
        self.assets: dict[str, str] = {}
        self.requests_done = 0
        self.requests_later: list[Any] = []
        self.last_change = time.time()
        self.relogins = 0
        self.last_login = time.monotonic()

    # --- bookkeeping --------------------------------------------------------------------------

    def log(self, text: str) -> None:
        line = f"{time.time() - self.t0:7.2f} #{self.op_index:03d} {text}"
        self.oplog.append(line)

    def violate(self, inv: str, key: str, text: str) -> None:
        full = f"{inv} [{INVARIANTS[inv].split(':')[0]}] {text}"
        if key not in self.violations:
            self.violations[key] = f"(after op #{self.op_index}) {full}"
            self.log(f"VIOLATION {full}")

    def touched(self) -> None:
        self.last_change = time.time()

    def next_n(self) -> int:
        self.counter += 1
        return self.counter

    def next_freq(self) -> int:
        self.freq += 7
        return self.freq

    # --- the daemon ---------------------------------------------------------------------------

    def _new_log(self) -> str:
        with self.log_path.open("rb") as fh:
            fh.seek(self.log_offset)
            data = fh.read()
        self.log_offset += len(data)
        return data.decode("utf-8", "replace")

    def start_daemon(self) -> None:
        self.proc = start_daemon_process(self.config, self.root, self.log_path)
        want = self.runs_seen + 1

        def running() -> bool:
            self.runs_seen += self._new_log().count("releaseosd running")
            return self.runs_seen >= want or (
                self.proc is not None and self.proc.poll() is not None
            )

        try:
            wait_for(running, timeout=60, what="the daemon to start")
        except AssertionError:
            self.violate("I6", f"start-{len(self.up)}", "the daemon did not start within 60 s")
            raise ChaosAbort("daemon did not start") from None
        if self.proc.poll() is not None:
            self.violate(
                "I6",
                f"start-{len(self.up)}",
                f"the daemon exited with {self.proc.returncode} at start",
            )
            self.proc = None
            raise ChaosAbort("daemon exited at start")
        self.up.append([time.time(), None])
        self.log(f"daemon up (pid {self.proc.pid})")

    def kill_daemon(self, how: str) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(15)
        self.up[-1][1] = time.time()
        self.proc = None
        self.log(f"daemon SIGKILLed ({how})")

    def daemon_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.up[-1][1] = time.time()
            self.violate(
                "I6",
                f"died-{len(self.up)}",
                f"the daemon died by itself with exit code {self.proc.returncode}",
            )
            self.proc = None
            self.start_daemon()

    def known_at(self, since: float) -> float:
        """When the daemon has surely taken in a change made at `since`."""
        for start, end in self.up:
            assert start is not None
            stop = math.inf if end is None else end
            if stop <= since:
                continue
            begin = max(start, since)
            if begin + KNOW_SECONDS <= stop:
                return begin + KNOW_SECONDS
        return math.inf

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [sys.executable, "-m", "releaseosd", "--config", str(self.config), *args],
            env=daemon_env(self.root),
            capture_output=True,
            text=True,
            timeout=90,
        )
        said = (res.stdout.strip() or res.stderr.strip()).replace("\n", " | ")[:220]
        self.log(f"  $ releaseosd {' '.join(args)} -> {res.returncode}: {said}")
        return res

    # --- the store ----------------------------------------------------------------------------

    def records(self) -> list[Track]:
        try:
            return read_tracks(self.state_dir)
        except FileNotFoundError:
            return []
        except Exception as exc:
            self.violate("I6", f"parse-{type(exc).__name__}", f"the store does not parse: {exc}")
            return []

    def record_at(self, path: Path) -> Track | None:
        found = [t for t in self.records() if t.audio_path == str(path)]
        live = [t for t in found if t.state != State.REMOVED]
        return (live or found or [None])[0]

    def any_in(self, *states: State) -> bool:
        return any(t.state in states for t in self.records())

    # --- files --------------------------------------------------------------------------------

    def slot_path(self, slot: Slot) -> Path:
        return self.exports / slot.folder.rel / slot.label

    def sidecar_path(self, slot: Slot) -> Path:
        return self.exports / slot.folder.rel / f"{slot.name}.yaml"

    def render(self, freq: int, seconds: float, slot: Slot, tag_title: str | None) -> bytes:
        out = self.scratch / f"a{freq}{slot.suffix}"
        options = ("-metadata", f"title={tag_title}") if tag_title else ()
        make_audio(out, seconds=seconds, freq=freq, codec=slot.codec, options=options)
        daemon_harness._audio_cache.clear()  # hundreds of exports per seed: keep memory flat
        data = out.read_bytes()
        out.unlink()
        return data

    def write_file(self, path: Path, data: bytes, atomic: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if atomic:
            tmp = path.parent / f".{path.name}.chaos-part"
            tmp.write_bytes(data)
            os.replace(tmp, path)
        else:
            path.write_bytes(data)

    def place_audio(
        self, slot: Slot, data: bytes, identity: tuple[int, float], tag_title: str | None
    ) -> str:
        """Write an export by a mode drawn from the seed; returns the mode."""
        mode = self.rng.choices(["atomic", "slow", "direct"], [55, 25, 20])[0]
        truncate = self.rng.random() < 0.5
        pieces = self.rng.randint(8, 20)
        total = self.rng.uniform(1.0, 2.0)
        gaps = [min(0.14, total / pieces * self.rng.uniform(0.7, 1.3)) for _ in range(pieces)]
        cuts = [*sorted(self.rng.sample(range(1, len(data)), pieces - 1)), len(data)]
        digest = sha256(data)
        self.complete.add(digest)
        self.identity[digest] = identity
        audio = Audio(digest, identity, tag_title)
        slot.audios.append(audio)
        path = self.slot_path(slot)
        if str(path) not in slot.paths:
            slot.paths.append(str(path))
        slot.has_audio = True
        self.touched()
        if mode == "slow":
            old = path.read_bytes() if path.exists() else None
            slot.current = None
            writer = SlowWriter(path, audio, data, old, truncate or old is None, cuts, gaps)
            slot.writer = writer
            path.parent.mkdir(parents=True, exist_ok=True)
            writer.start()
            return f"slow-{'truncate' if truncate or old is None else 'in-place'}"
        self.write_file(path, data, atomic=mode == "atomic")
        slot.current = audio
        return mode

    def join_writer(self, slot: Slot) -> None:
        writer = slot.writer
        if writer is None:
            return
        writer.join(30)
        assert not writer.is_alive(), f"slow writer of {slot.label} hangs"
        if writer.error is not None:
            raise writer.error
        slot.current = writer.audio
        if writer.excused:
            self.excused.update(writer.excused)
            self.notes.append(f"slow writer of {slot.label} stalled {len(writer.excused)}x")
        slot.writer = None
        self.touched()

    def join_folder(self, folder: Folder) -> None:
        for slot in self.slots:
            if slot.folder.rel == folder.rel or slot.folder.rel.startswith(folder.rel + "/"):
                self.join_writer(slot)

    def sidecar_text(self, fields: dict[str, Any]) -> str:
        return yaml.safe_dump(fields, sort_keys=False, allow_unicode=True)

    def new_version(self, slot: Slot, at: float) -> None:
        folder = slot.folder
        if slot.own_state == "broken" or folder.state == "broken":
            version = Version(at, "broken", {})
        elif slot.own_state == "absent" and folder.state == "absent":
            version = Version(at, "absent", {})
        else:
            merged = dict(folder.defaults or {}) if folder.state == "ok" else {}
            if slot.own_state == "ok":
                merged.update(slot.own or {})
            version = Version(at, "ok", merged)
        slot.versions.append(version)
        slot.events.append((at, "sidecar", version))

    def write_sidecar(self, slot: Slot, fields: dict[str, Any] | None, broken: str | None) -> str:
        """Own sidecar: `fields` (valid), `broken` text, or both None to delete it."""
        path = self.sidecar_path(slot)
        atomic = self.rng.random() < 0.3
        at = time.time()
        self.touched()
        if fields is None and broken is None:
            path.unlink(missing_ok=True)
            slot.own_state = "absent"
            self.new_version(slot, at)
            return "deleted"
        text = broken if broken is not None else self.sidecar_text(fields or {})
        self.write_file(path, text.encode(), atomic)
        if broken is None:
            slot.own, slot.own_state = dict(fields or {}), "ok"
        else:
            slot.own_state = "broken"
        self.new_version(slot, at)
        return "atomic" if atomic else "in place"

    def write_folder_defaults(
        self, folder: Folder, fields: dict[str, Any] | None, broken: str | None
    ) -> None:
        path = self.exports / folder.rel / "release.yaml"
        at = time.time()
        self.touched()
        if fields is None and broken is None:
            path.unlink(missing_ok=True)
            folder.state = "absent"
        else:
            text = broken if broken is not None else self.sidecar_text(fields or {})
            self.write_file(path, text.encode(), atomic=self.rng.random() < 0.3)
            if broken is None:
                folder.defaults, folder.state = dict(fields or {}), "ok"
            else:
                folder.state = "broken"
        for slot in self.slots:
            if slot.folder is folder and not (slot.deleted_at is not None):
                self.new_version(slot, at)

    # --- random contents ------------------------------------------------------------------------

    def release_value(self) -> str | None:
        r = self.rng.random()
        if r < 0.55:
            return local_iso(time.time() + self.rng.uniform(3, 12))
        if r < 0.75:
            return local_iso(time.time() - self.rng.uniform(5, 120))
        return None

    def new_fields(self, n: int, title: bool | None = None) -> dict[str, Any]:
        rng = self.rng
        fields: dict[str, Any] = {}
        if title if title is not None else rng.random() < 0.85:
            fields["title"] = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {n}"
        if rng.random() < 0.7:
            fields["genre"] = rng.choice(GENRES)
        if rng.random() < 0.6:
            fields["tags"] = rng.sample(TAGS, rng.randint(1, 3))
        if rng.random() < 0.4:
            fields["description"] = f"{rng.choice(DESCRIPTIONS)} #{n}"
        if rng.random() < 0.3:
            fields["bpm"] = rng.randint(80, 170)
        if rng.random() < 0.3:
            fields["key"] = rng.choice(KEYS)
        r = rng.random()
        if r < 0.65:
            fields["sharing"] = "public"
        elif r < 0.85:
            fields["sharing"] = "private"
        r = rng.random()
        if r < 0.35:
            fields["release_at"] = local_iso(time.time() + rng.uniform(3, 12))
        elif r < 0.45:
            fields["release_at"] = local_iso(time.time() - rng.uniform(5, 120))
        if rng.random() < 0.2:
            fields["playlist"] = rng.choice(PLAYLISTS)
        return fields

    def folder_fields(self) -> dict[str, Any]:
        rng = self.rng
        fields: dict[str, Any] = {}
        if rng.random() < 0.7:
            fields["genre"] = rng.choice(GENRES)
        if rng.random() < 0.8:
            fields["release"] = f"{rng.choice(WORDS)} EP"
        if rng.random() < 0.4:
            fields["label"] = f"{rng.choice(WORDS)} Records"
        if rng.random() < 0.2:
            fields["tags"] = rng.sample(TAGS, rng.randint(1, 2))
        if rng.random() < 0.3:
            fields["sharing"] = rng.choice(["public", "private"])
        if rng.random() < 0.2:
            fields["release_at"] = local_iso(time.time() + rng.uniform(3, 12))
        return fields

    def broken_text(self, base: dict[str, Any]) -> str:
        if self.rng.random() < 0.5:
            return self.sidecar_text({**base, "bpm": "fast"})
        return self.sidecar_text(base) + "title: [unclosed\n"

    # --- choosing -----------------------------------------------------------------------------

    def alive(self, pred: Callable[[Slot], bool] = lambda s: True) -> list[Slot]:
        return [s for s in self.slots if not s.dead and s.has_audio and pred(s)]

    def eligible(self) -> dict[str, bool]:
        alive = self.alive()
        up = self.proc is not None
        return {
            "drop": True,
            "reexport": bool(alive),
            "edit": bool(alive),
            "edit_folder": bool(alive),
            "move_folder": len(self.folders) > 1,
            "delete": bool(alive),
            "delete_sidecar": bool(self.alive(lambda s: s.own_state != "absent")),
            "add_sidecar": bool(self.alive(lambda s: s.own_state == "absent")),
            "broken_sidecar": bool(alive),
            "duplicate": bool(self.alive(lambda s: s.dup_of is None)),
            "remove": bool(alive),
            "release": bool(alive),
            "pause": True,
            "kill": up,
            "expire_tokens": True,
            "drop_upload": True,
            "burst_5xx": True,
            "burst_429": True,
            "error_window": self.error_window == 0,
            "processing_fails": self.processing_window == 0,
            "lost_token_answer": True,
            "wait": True,
        }

    def choose(self) -> str:
        ok = self.eligible()
        names = [n for n, w in self.weights.items() if w > 0 and ok.get(n)]
        return self.rng.choices(names, [self.weights[n] for n in names])[0]

    def pick(self, slots: list[Slot]) -> Slot:
        return slots[self.rng.randrange(len(slots))]

    # --- operations -----------------------------------------------------------------------------

    def new_folder(self) -> Folder:
        rng = self.rng
        parents = [f for f in self.folders if f.rel]
        nested = parents and rng.random() < 0.3
        name = f"{rng.choice(WORDS)} Session {self.next_n()}"
        rel = f"{rng.choice(parents).rel}/{name}" if nested else name
        folder = Folder(rel)
        with_defaults = rng.random() < 0.5
        fields = self.folder_fields() if with_defaults else None
        (self.exports / rel).mkdir(parents=True, exist_ok=True)
        self.folders.append(folder)
        if fields is not None:
            self.write_folder_defaults(folder, fields, None)
        self.log(f"  new folder '{rel}'{' with release.yaml ' + str(fields) if fields else ''}")
        return folder

    def op_drop(self) -> None:
        rng = self.rng
        folder = self.new_folder() if rng.random() < 0.25 and len(self.folders) < 8 else None
        folder = folder or rng.choice(self.folders)
        n = self.next_n()
        flac = rng.random() < 0.15
        name = f"{rng.choice(WORDS)} {n:03d}"
        slot = Slot(n, name, ".flac" if flac else ".wav", "flac" if flac else "pcm_s16le", folder)
        seconds = rng.choice([1.0, 1.5, 2.0, 2.5])
        fields = self.new_fields(n)
        order = rng.choices(["sidecar first", "audio first", "no sidecar"], [60, 30, 10])[0]
        gap = rng.uniform(0, 0.5)
        freq = self.next_freq()
        self.slots.append(slot)
        data = self.render(freq, seconds, slot, None)
        if order == "sidecar first":
            self.write_sidecar(slot, fields, None)
            time.sleep(gap)  # race gap drawn from the seed
        else:
            self.new_version(slot, time.time())  # what its folder's release.yaml says
        mode = self.place_audio(slot, data, (freq, seconds), None)
        if order == "audio first":
            time.sleep(gap)
            self.write_sidecar(slot, fields, None)
        self.log(
            f"drop {slot.folder.rel}/{slot.label} freq={freq} {seconds}s {mode} {order} "
            f"sidecar={fields if order != 'no sidecar' else None}"
        )

    def op_reexport(self) -> None:
        slot = self.pick(self.alive())
        seconds = self.rng.choice([1.0, 1.5, 2.0, 2.5])
        freq = self.next_freq()
        self.join_writer(slot)
        data = self.render(freq, seconds, slot, None)
        mode = self.place_audio(slot, data, (freq, seconds), None)
        self.log(f"reexport {slot.label} freq={freq} {seconds}s {mode}")

    def changed_fields(self, slot: Slot) -> dict[str, Any]:
        rng = self.rng
        base = dict(slot.own or {})
        names = rng.sample(
            ["title", "genre", "tags", "description", "release_at", "sharing", "playlist", "bpm"],
            rng.randint(1, 3),
        )
        for name in names:
            if name == "title":
                base["title"] = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {slot.n}v{self.next_n()}"
            elif name == "genre":
                value = rng.choice([*GENRES, None])
                base["genre"] = value
            elif name == "tags":
                base["tags"] = rng.sample(TAGS, rng.randint(1, 3)) if rng.random() < 0.8 else None
            elif name == "description":
                base["description"] = (
                    f"{rng.choice(DESCRIPTIONS)} (edit {self.next_n()})"
                    if rng.random() < 0.7
                    else None
                )
            elif name == "release_at":
                base["release_at"] = self.release_value()
            elif name == "sharing":
                base["sharing"] = rng.choice(["public", "private"])
            elif name == "playlist":
                base["playlist"] = rng.choice([*PLAYLISTS, None])
            elif name == "bpm":
                base["bpm"] = rng.randint(80, 170) if rng.random() < 0.7 else None
        if slot.dup_of is not None and not base.get("title"):
            base["title"] = f"Copy {slot.n}"
        return {k: v for k, v in base.items() if v is not None}

    def op_edit(self) -> None:
        slot = self.pick(self.alive())
        fields = self.changed_fields(slot)
        how = self.write_sidecar(slot, fields, None)
        self.log(f"edit {slot.label} ({how}) -> {fields}")

    def op_add_sidecar(self) -> None:
        slot = self.pick(self.alive(lambda s: s.own_state == "absent"))
        fields = self.new_fields(slot.n, title=True if slot.dup_of is not None else None)
        how = self.write_sidecar(slot, fields, None)
        self.log(f"add sidecar {slot.label} ({how}) -> {fields}")

    def op_broken_sidecar(self) -> None:
        slot = self.pick(self.alive())
        text = self.broken_text(slot.own or {"title": f"Broken {slot.n}"})
        how = self.write_sidecar(slot, None, text)
        self.log(f"broken sidecar {slot.label} ({how}): {text!r}")

    def op_delete_sidecar(self) -> None:
        slot = self.pick(self.alive(lambda s: s.own_state != "absent"))
        self.write_sidecar(slot, None, None)
        self.log(f"delete sidecar of {slot.label}")

    def op_edit_folder(self) -> None:
        rng = self.rng
        folder = self.pick(self.alive()).folder
        r = rng.random()
        if r < 0.1 and folder.state != "absent":
            self.write_folder_defaults(folder, None, None)
            self.log(f"delete release.yaml of '{folder.rel}'")
        elif r < 0.15:
            text = self.broken_text(folder.defaults or {})
            self.write_folder_defaults(folder, None, text)
            self.log(f"broken release.yaml in '{folder.rel}': {text!r}")
        else:
            fields = dict(folder.defaults or {})
            fields.update(self.folder_fields())
            if rng.random() < 0.3:
                fields.pop("release_at", None)
            self.write_folder_defaults(folder, fields, None)
            self.log(f"edit release.yaml in '{folder.rel}' -> {fields}")

    def op_move_folder(self) -> None:
        rng = self.rng
        folder = rng.choice([f for f in self.folders if f.rel])
        into = [
            f
            for f in self.folders
            if f.rel and f.rel != folder.rel and not f.rel.startswith(folder.rel + "/")
        ]
        parent = rng.choice(into).rel if into and rng.random() < 0.3 else ""
        base = folder.rel.rsplit("/", 1)[-1].split(" m")[0]
        new_rel = f"{parent}/{base} m{self.next_n()}".lstrip("/")
        self.join_folder(folder)
        old_rel = folder.rel
        os.rename(self.exports / old_rel, self.exports / new_rel)
        self.touched()
        for f in self.folders:
            if f.rel == old_rel or f.rel.startswith(old_rel + "/"):
                f.rel = new_rel + f.rel[len(old_rel) :]
        for slot in self.slots:
            if slot.has_audio and str(self.slot_path(slot)) not in slot.paths:
                slot.paths.append(str(self.slot_path(slot)))
        self.log(f"move folder '{old_rel}' -> '{new_rel}'")

    def op_delete(self) -> None:
        slot = self.pick(self.alive())
        with_sidecar = self.rng.random() < 0.5
        self.join_writer(slot)
        path = self.slot_path(slot)
        slot.deleted_at = time.time()
        slot.deleted_path = str(path)
        path.unlink()
        slot.has_audio = False
        slot.dead = True
        if with_sidecar:
            self.sidecar_path(slot).unlink(missing_ok=True)
        self.touched()
        self.log(f"delete {slot.label}{' and its sidecar' if with_sidecar else ''}")

    def op_duplicate(self) -> None:
        rng = self.rng
        source = self.pick(self.alive(lambda s: s.dup_of is None))
        retagged = rng.random() < 0.3
        folder = rng.choice(self.folders)
        n = self.next_n()
        fields = self.new_fields(n, title=True)
        self.join_writer(source)
        audio = source.current
        assert audio is not None
        src_path = self.slot_path(source)

        def established() -> bool:
            record = self.record_at(src_path)
            return record is not None and record.sha256 == audio.digest

        try:  # let the original be known first, as a backup copy made later would be
            wait_for(established, timeout=10, what="the original to be ingested")
        except AssertionError:
            self.log(f"  (original {source.label} not ingested within 10 s; copying anyway)")
        slot = Slot(n, f"Copy of {source.name} {n}", source.suffix, source.codec, folder)
        slot.dup_of = source.n
        self.slots.append(slot)
        self.write_sidecar(slot, fields, None)
        if retagged:
            freq, seconds = audio.identity
            data = self.render(freq, seconds, slot, f"Copy {n}")
            tag_title: str | None = f"Copy {n}"
        else:
            data = src_path.read_bytes()
            tag_title = audio.tag_title
        mode = self.place_audio(slot, data, audio.identity, tag_title)
        self.log(
            f"duplicate {source.label} -> {folder.rel}/{slot.label} "
            f"({'retagged' if retagged else 'exact'}, {mode}) sidecar={fields}"
        )

    def op_remove(self) -> None:
        slot = self.pick(self.alive())
        remote = self.rng.random() < 0.5
        slot.dead = True
        path = self.slot_path(slot)
        self.log(f"remove {slot.label}{' --remote' if remote else ''}")
        deadline = time.monotonic() + 12
        while True:
            started = time.time()
            res = self.cli("remove", "--yes", *(["--remote"] if remote else []), str(path))
            if res.returncode == 0:
                slot.removed = (started, remote)
                slot.events.append((started, "removed", remote))
                self.touched()
                if remote:
                    self.check_removed_remote(slot, "right after the command")
                return
            said = res.stdout + res.stderr
            if "needs SoundCloud access" in said or time.monotonic() > deadline:
                self.log(f"  {slot.label} stays: remove did not go through")
                return
            # Try again once it is no longer uploading or building (or is ingested at all).
            with contextlib.suppress(AssertionError):
                wait_for(
                    lambda: (
                        (r := self.record_at(path)) is not None
                        and r.state not in (State.UPLOADING, State.BUILDING)
                    ),
                    timeout=4,
                    what="a removable state",
                )

    def op_release(self) -> None:
        slot = self.pick(self.alive())
        now = self.rng.random() < 0.4
        offset = self.rng.uniform(-3, 10)
        path = self.slot_path(slot)
        for attempt in range(2):
            started = time.time()
            when = float(int(started + offset))
            args = ["--now"] if now else ["--at", local_iso(when)]
            res = self.cli("release", str(path), *args)
            if res.returncode == 0:
                slot.user_release = started if now else when
                slot.events.append((started, "user", slot.user_release))
                self.touched()
                return
            if attempt == 0 and "no track matches" in res.stdout + res.stderr:
                try:
                    wait_for(lambda: self.record_at(path) is not None, timeout=5, what="ingest")
                except AssertionError:
                    return
                continue
            return

    def op_pause(self) -> None:
        self.paused_intent = not self.paused_intent
        self.set_paused(self.paused_intent)

    def set_paused(self, paused: bool) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            started = time.time()
            res = self.cli("pause" if paused else "resume")
            if res.returncode == 0:
                if paused and self.paused_since is None:
                    self.paused_since = time.time()
                elif not paused and self.paused_since is not None:
                    self.pauses.append((self.paused_since, started))
                    self.paused_since = None
                return
        self.log(f"  {'pause' if paused else 'resume'} did not go through")

    def op_kill(self) -> None:
        rng = self.rng
        how = rng.choices(["now", "during upload", "during build", "after drop"], [3, 4, 2, 3])[0]
        bound = rng.uniform(0.5, 3.0)
        delay = rng.uniform(0, 0.6)
        down = 0 if rng.random() < 0.65 else rng.randint(1, 4)
        if how == "after drop":
            self.op_drop()
            time.sleep(delay)  # race gap drawn from the seed
        elif how != "now":
            state = State.UPLOADING if how == "during upload" else State.BUILDING
            try:
                wait_for(lambda: self.any_in(state), timeout=bound, every=0.02, what=how)
            except AssertionError:
                how += " (none seen)"
        self.kill_daemon(how)
        self.down_for = down
        if down == 0:
            self.start_daemon()
        else:
            self.log(f"  daemon stays down for {down} operation(s)")

    def op_expire_tokens(self) -> None:
        count = self.sandbox.expire_access_tokens()
        self.log(f"expire access tokens ({count})")

    def op_drop_upload(self) -> None:
        after = self.rng.randint(2_000, 150_000)
        times = self.rng.randint(1, 2)
        self.sandbox.faults.drop_upload(after, times=times)
        self.log(f"drop the next {times} upload(s) after {after} bytes")

    def op_burst_5xx(self) -> None:
        rng = self.rng
        status = rng.choice([500, 502, 503])
        html = rng.random() < 0.5
        match = rng.choice([None, "POST /tracks", "PUT", "GET", "DELETE"])
        times = rng.randint(1, 6)
        self.sandbox.faults.push(status, html=html, match=match, times=times)
        self.log(f"burst {times}x {status}{' html' if html else ''} on {match or 'any'}")

    def op_burst_429(self) -> None:
        times = self.rng.randint(1, 3)
        self.sandbox.faults.push(429, retry_after=1, times=times)
        self.log(f"burst {times}x 429 Retry-After: 1")

    def op_error_window(self) -> None:
        rate = round(self.rng.uniform(0.15, 0.4), 2)
        self.error_window = self.rng.randint(3, 8)
        self.sandbox.faults.update(error_rate=rate, seed=self.rng.randrange(1 << 30))
        self.log(f"error_rate {rate} for {self.error_window} operations")

    def op_processing_fails(self) -> None:
        self.processing_window = self.rng.randint(2, 5)
        self.sandbox.faults.update(processing_outcome="failed")
        self.log(f"processing fails for {self.processing_window} operations")

    def op_lost_token_answer(self) -> None:
        self.sandbox.faults.update(drop_token_answers=1)
        self.sandbox.expire_access_tokens()
        self.log("the next token answer is lost (and access tokens expire now)")

    def op_wait(self) -> None:
        quiet = self.rng.random() < 0.5
        bound = self.rng.uniform(0.3, 2.5)
        if quiet:
            busy = (State.BUILDING, State.READY, State.UPLOADING, State.PROCESSING)
            try:
                wait_for(lambda: not self.any_in(*busy), timeout=bound, what="quiet")
                self.log(f"wait until quiet (at most {bound:.1f} s): quiet")
            except AssertionError:
                self.log(f"wait until quiet (at most {bound:.1f} s): still busy")
        else:
            time.sleep(bound)  # let time pass: a random moment in what the daemon does
            self.log(f"wait {bound:.1f} s")

    # --- windows that close by themselves -------------------------------------------------------

    def tick_windows(self) -> None:
        if self.error_window:
            self.error_window -= 1
            if self.error_window == 0:
                self.sandbox.faults.update(error_rate=0.0)
                self.log("error_rate back to 0")
        if self.processing_window:
            self.processing_window -= 1
            if self.processing_window == 0:
                self.sandbox.faults.update(processing_outcome="finished")
                self.log("processing finishes again")
        if self.proc is None and self.down_for:
            self.down_for -= 1
            if self.down_for == 0:
                self.start_daemon()

    # --- the run --------------------------------------------------------------------------------

    def run(self) -> None:
        self.watch.start()
        try:
            self.start_daemon()
            for i in range(self.n_ops):
                self.op_index = i
                self.tick_windows()
                name = self.choose()
                self.kinds[name] += 1
                getattr(self, f"op_{name}")()
                time.sleep(self.rng.uniform(0, 0.25))  # race gap drawn from the seed
                self.daemon_alive()
                self.check_step()
            self.op_index = self.n_ops
            self.settle()
            self.final_checks()
        except ChaosAbort as exc:
            self.log(f"ABORTED: {exc}")
        finally:
            self.watch.stopped.set()
            for slot in self.slots:
                if slot.writer is not None:
                    slot.writer.join(30)
            if self.proc is not None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)

    def settle(self) -> None:
        self.log("settle: faults off, every writer done, daemon up, uploads resumed")
        for slot in self.slots:
            self.join_writer(slot)
        self.sandbox.faults.clear()
        self.error_window = self.processing_window = 0
        if self.proc is None:
            self.start_daemon()
        if self.paused_since is not None or self.paused_intent:
            self.paused_intent = False
            self.set_paused(False)
        last_release = max(
            (r for s in self.slots if (r := self.final_release(s)) is not None), default=0.0
        )
        quiet_from = self.known_at(self.last_change)
        reasons: list[str] = []
        progress: list[Any] = [None, time.monotonic()]

        def settled() -> bool:
            now = time.time()
            records = self.records()
            if any(t.state == State.NEEDS_LOGIN for t in records) and self.relogins < 3:
                self.relogins += 1
                log_in(file_token_store(keyring_file(self.root)), self.sandbox)
                self.log("settle: tracks wait for a login: logged in again (as the user would)")
            reasons[:] = [r for t in records if (r := self.unsettled(t))]
            if now < last_release + 1 or now < quiet_from:
                return False
            if not reasons:
                return True
            # Nothing moves any more (the store unchanged, no request sent): stuck for good.
            seen = (sorted((t.id, t.updated_at) for t in records), len(self.sandbox.requests))
            if seen != progress[0]:
                progress[:] = [seen, time.monotonic()]
            return time.monotonic() - progress[1] > STUCK_SECONDS

        with contextlib.suppress(AssertionError):
            wait_for(settled, timeout=SETTLE_SECONDS, every=0.2, what="the run to settle")
        self.log(f"settled{'' if not reasons else ' as far as it goes'}")
        for reason in reasons:
            self.violate("I5", f"stuck:{reason}", f"does not settle: {reason}")
        self.watch.poll()
        self.check_step()
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait(10)
            self.violate("I6", "sigterm", "the daemon did not stop within 20 s of SIGTERM")
        took = time.monotonic() - started
        self.up[-1][1] = time.time()
        self.proc = None
        self.log(f"daemon stopped by SIGTERM: exit {code} after {took:.1f} s")
        if code != 0:
            self.violate("I6", "sigterm-code", f"SIGTERM: exit code {code}")
        elif took > 10:
            self.violate("I6", "sigterm-time", f"SIGTERM: stopped only after {took:.1f} s")

    def final_release(self, slot: Slot) -> float | None:
        if slot.user_release is not None:
            return slot.user_release
        last = slot.last_ok()
        return release_ts(last.merged.get("release_at")) if last else None

    def unsettled(self, t: Track) -> str | None:
        """Why this record is still on its way (None: it is where it stays)."""
        label = f"'{t.title}' ({Path(t.audio_path).name}, {t.id})"
        if t.state in TRANSIENT:
            return f"{label} is {t.state} ({t.last_error or 'no error'})"
        if t.state == State.PENDING:
            slot = self.slot_at(t.audio_path)
            error = t.last_error or ""
            # Waiting for the user: a sidecar to be written, or a file that is gone to come
            # back (or `remove`). A record that did not follow its moved file is reported by
            # the record-follows-its-file check.
            sidecar = slot is not None and slot.versions and slot.versions[-1].state == "absent"
            gone = not Path(t.audio_path).exists() and "is gone" in error
            if not (sidecar and "waiting for its sidecar" in error) and not gone:
                return f"{label} is pending ({t.last_error})"
        if t.state in (State.SCHEDULED, State.PUBLISHED, State.RELEASED) and t.sync is not None:
            return f"{label} still owes SoundCloud an update ({t.sync.error or 'due'})"
        if t.state == State.NEEDS_LOGIN:
            return f"{label} waits for a login ({t.last_error}) after logging in again"
        return None

    # --- where things are ---------------------------------------------------------------------

    def slot_at(self, audio_path: str) -> Slot | None:
        for slot in self.slots:
            if slot.has_audio and str(self.slot_path(slot)) == audio_path:
                return slot
        for slot in self.slots:
            # A deleted export's record may point at any place the file was (a folder moved
            # just before the delete is not always seen).
            if slot.deleted_at is not None and audio_path in slot.paths:
                return slot
        return None

    def identity_of(self, digest16: str) -> tuple[int, float] | None:
        return next((i for d, i in self.identity.items() if d.startswith(digest16)), None)

    def slots_with(self, digest16: str) -> list[Slot]:
        """The slots that ever held this audio: these bytes, or the same decoded audio (a copy
        saved with other tags is the same track, README says)."""
        identity = self.identity_of(digest16)
        return [
            s
            for s in self.slots
            if any(a.digest.startswith(digest16) or a.identity == identity for a in s.audios)
        ]

    def exclusive_digests(self, slot: Slot, at: float | None = None) -> set[str]:
        """The slot's digests that no other export shares: one still there (at `at`, when
        given: a request is judged by who could own it when it was sent)."""
        others = set()
        for s in self.slots:
            if s is slot:
                continue
            if s.removed is None or (at is not None and s.removed[0] > at):
                others |= s.digests()
        return slot.digests() - others

    # --- checks after every step ----------------------------------------------------------------

    def remote(self) -> list[dict[str, Any]]:
        copies = []
        for t in self.watch.poll():
            plain, machine = tags_of(t.get("tag_list"))
            copies.append({**t, "_tags": plain, "_machine": machine})
        return copies

    def log_in_again(self, records: list[Track]) -> None:
        """What the user does when told that tracks wait for a login (a refresh token lost with
        a dropped answer cannot come back): `releaseosd auth login`."""
        waiting = [t for t in records if t.state == State.NEEDS_LOGIN]
        if waiting and time.monotonic() - self.last_login > 5:
            self.last_login = time.monotonic()
            log_in(file_token_store(keyring_file(self.root)), self.sandbox)
            self.log(
                f"  {len(waiting)} track(s) wait for a login: logged in again, as the user would"
            )

    def check_step(self) -> None:
        copies = self.remote()
        records = self.records()  # the store parses (I6)
        self.log_in_again(records)
        by_digest: dict[str, list[str]] = {}
        by_identity: dict[tuple[int, float], list[str]] = {}
        full_of: dict[str, str] = {}
        for c in copies:
            urn = str(c["urn"])
            if len(c["_machine"]) != 1:
                self.violate("I2", f"tag:{urn}", f"{urn} carries machine tags {c['_machine']}")
                continue
            digest16 = c["_machine"][0]
            by_digest.setdefault(digest16, []).append(urn)
            full = self.asset_digest(urn)
            if full is None:
                continue
            full_of[urn] = full
            if not full.startswith(digest16):
                self.violate(
                    "I2",
                    f"asset:{urn}",
                    f"{urn} ('{c['title']}'): its asset hashes to {full[:16]}, its tag says "
                    f"{digest16}",
                )
            if full in self.complete:
                by_identity.setdefault(self.identity[full], []).append(urn)
            elif full in self.excused:
                self.notes.append(f"{urn}: half-written content, but the driver's writer stalled")
            else:
                self.violate(
                    "I2",
                    f"partial:{urn}",
                    f"{urn} ('{c['title']}'): asset {full[:16]} is no export that was ever "
                    f"complete (a half-written file went up)",
                )
        for digest16, urns in by_digest.items():
            if len(urns) > 1:
                names = [s.label for s in self.slots_with(digest16)]
                self.violate(
                    "I1", f"twice:{digest16}", f"audio {digest16} ({names}) is up as {urns}"
                )
        for identity, urns in by_identity.items():
            if len(urns) > 1:
                self.violate(
                    "I1",
                    f"same-audio:{identity}",
                    f"the same decoded audio (freq {identity[0]} Hz, {identity[1]} s) is up as "
                    f"{urns} under different digests",
                )
        # One export (one file, however often re-exported, moved or renamed) is one track: the
        # copies the records of one slot claim (by URN) number one at most.
        per_slot: dict[int, list[str]] = {}
        for t in records:
            urn = t.soundcloud.urn
            if urn is None or urn not in full_of:
                continue
            slot = self.slot_at(t.audio_path) or next(
                (s for s in self.slots if t.audio_path in s.paths), None
            )
            if slot is not None:
                per_slot.setdefault(slot.n, []).append(urn)
        for slot in self.slots:
            urns = sorted(set(per_slot.get(slot.n, [])))
            if len(urns) > 1:
                self.violate(
                    "I1",
                    f"slot-twice:{slot.n}:{urns}",
                    f"{slot.label} is up {len(urns)} times: {urns}",
                )
        self.check_requests(final=False)

    def asset_digest(self, urn: str) -> str | None:
        if urn not in self.assets:
            try:
                path = self.sandbox.upload_of(urn).path
                self.assets[urn] = sha256(path.read_bytes())
            except Exception:
                return None  # deleted meanwhile
        return self.assets[urn]

    def check_removed_remote(self, slot: Slot, when: str) -> None:
        gone = {d[:16] for d in self.exclusive_digests(slot)}
        left = [f"{c['urn']} ('{c['title']}')" for c in self.remote() if set(c["_machine"]) & gone]
        if left:
            self.violate(
                "I1",
                f"remote-left:{slot.n}:{when}",
                f"{slot.label} was removed with --remote, yet {left} is on SoundCloud ({when})",
            )

    # --- release times from the request log ---------------------------------------------------

    def entries(self, slot: Slot) -> list[tuple[float, str, Any, float]]:
        """What decides about the slot, in order: (at, kind, value, surely), kind "sidecar"
        (a valid Version), "user" (a `release` time) or "removed"; `surely`: when the daemon
        has surely taken it in (never, for a sidecar replaced before that: it may not have
        been seen at all). Broken and missing sidecars change nothing."""
        out: list[tuple[float, str, Any, float]] = []
        for i, (at, kind, value) in enumerate(slot.events):
            if kind == "sidecar" and value.state != "ok":
                continue
            known = self.known_at(at)
            if kind == "sidecar":
                following = [a for a, k, _ in slot.events[i + 1 :] if k == "sidecar"]
                if following and following[0] < known:
                    known = math.inf
            out.append((at, kind, value, known))
        return out

    def possible(
        self, slot: Slot, when: float, sidecars_only: bool = False
    ) -> list[tuple[float, str, Any]]:
        """The entries the daemon may be acting on at `when`: written by then, and replaced by
        nothing it has surely taken in by then (a `release` time wins over any sidecar)."""
        entries = self.entries(slot)
        # Once a `release` time or the removal is surely in, no sidecar decides any more when
        # the track goes public.
        overridden = not sidecars_only and any(
            k != "sidecar" and s < math.inf and s <= when for _, k, _, s in entries
        )
        out = []
        for i, (at, kind, value, _) in enumerate(entries):
            if at > when:
                break
            if kind == "sidecar" and overridden:
                continue
            if sidecars_only and kind != "sidecar":
                continue
            replacing = [
                e
                for e in entries[i + 1 :]
                if e[3] < math.inf
                and e[3] <= when
                and (e[1] != "sidecar" if kind != "sidecar" else not sidecars_only or e[1] == kind)
            ]
            if not replacing:
                out.append((at, kind, value))
        return out

    def allowed_public(self, slot: Slot, at: float) -> bool:
        for _, kind, value in self.possible(slot, at):
            if kind == "user" and value <= at:
                return True
            if kind == "sidecar" and value.merged.get("sharing") == "public":
                release = release_ts(value.merged.get("release_at"))
                if release is None or release <= at:
                    return True
        return False

    def describe_entries(self, slot: Slot) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for at, kind, value, surely in self.entries(slot):
            since = round(at - self.t0, 2)
            sure = round(surely - self.t0, 2) if surely != math.inf else "never"
            if kind == "sidecar":
                release = release_ts(value.merged.get("release_at"))
                shown = local_iso(release) if release else None
                out.append((since, shown, value.merged.get("sharing") or "private", sure))
            elif kind == "user":
                out.append((since, f"release {local_iso(value)}", "public", sure))
            else:
                out.append((since, "removed", "never", sure))
        return out

    def check_requests(self, final: bool) -> None:
        requests = self.sandbox.requests
        todo = [*self.requests_later, *requests[self.requests_done :]]
        self.requests_done = len(requests)
        self.requests_later = []
        for rec in todo:
            public, digest16 = self.made_public(rec)
            if not public:
                continue
            if digest16 is None:
                if final:
                    self.notes.append(f"request #{rec.seq} {rec.method} {rec.path}: URN never seen")
                else:
                    self.requests_later.append(rec)
                continue
            slots = self.slots_with(digest16)
            if not slots:
                self.violate("I4", f"foreign:{rec.seq}", f"#{rec.seq} {rec.path}: unknown audio")
                continue
            if not any(self.allowed_public(s, rec.at) for s in slots):
                slot = slots[0]
                settings = self.describe_entries(slot)
                self.violate(
                    "I4",
                    f"early:{rec.seq}",
                    f"#{rec.seq} {rec.method} {rec.path} made {slot.label} public at "
                    f"t+{rec.at - self.t0:.2f} ({local_iso(rec.at)}), which its settings did "
                    f"not allow then: {settings} (t+: since the start; (from, release, sharing, "
                    f"surely taken in from))",
                )
        if final:
            self.check_after_removal(requests)

    def made_public(self, rec: Any) -> tuple[bool, str | None]:
        """Whether a recorded request made (or tried to make) a track public, and its digest."""
        if rec.status not in (0, 200, 201):
            return False, None
        if rec.method == "POST" and rec.template == "/tracks":
            if not rec.form:
                return False, None
            sharing = (rec.form_values("track[sharing]") or ["public"])[-1]
            machine = tags_of(" ".join(rec.form_values("track[tag_list]")))[1]
            return sharing == "public", (machine[0] if machine else None)
        if rec.method == "PUT" and rec.template == "/tracks/{track_urn}":
            body = rec.json_body if isinstance(rec.json_body, dict) else {}
            track = body.get("track") if isinstance(body.get("track"), dict) else {}
            if track.get("sharing") != "public":
                return False, None
            return True, self.watch.digest_of(self.urn_in(rec.path))
        return False, None

    @staticmethod
    def urn_in(path: str) -> str:
        from urllib.parse import unquote

        return unquote(path.rsplit("/", 1)[-1])

    def check_after_removal(self, requests: list[Any]) -> None:
        """Nothing is sent for a removed track once the removal is surely taken in."""
        for slot in self.slots:
            if slot.removed is None:
                continue
            quiet = self.known_at(slot.removed[0])
            for rec in requests:
                if rec.at < quiet or rec.status not in (0, 200, 201):
                    continue
                mine = {d[:16] for d in self.exclusive_digests(slot, rec.at)}
                if rec.method == "PUT" and rec.template == "/tracks/{track_urn}":
                    digest16 = self.watch.digest_of(self.urn_in(rec.path))
                    if digest16 in mine:
                        self.violate(
                            "I4",
                            f"after-remove:{rec.seq}",
                            f"#{rec.seq} PUT {rec.path} {rec.json_body} changed {slot.label} "
                            f"{rec.at - slot.removed[0]:.1f} s after it was removed",
                        )
                if rec.method == "POST" and rec.template == "/tracks" and rec.form:
                    machine = tags_of(" ".join(rec.form_values("track[tag_list]")))[1]
                    if machine and machine[0] in mine:
                        self.violate(
                            "I1",
                            f"after-remove-post:{rec.seq}",
                            f"#{rec.seq} POST /tracks uploaded {slot.label} again "
                            f"{rec.at - slot.removed[0]:.1f} s after it was removed",
                        )

    # --- checks once everything settled ---------------------------------------------------------

    def final_checks(self) -> None:
        self.log("final checks")
        self.check_spec()
        try:
            store = Store.open(self.state_dir)
            store.all()
            store.close()
        except Exception as exc:
            self.violate("I6", "open", f"Store.open after the daemon stopped: {exc!r}")
        records = self.records()
        copies = self.remote()
        self.check_step()
        self.check_requests(final=True)
        self.check_claims(records, copies)
        self.check_fields(records, copies)
        self.check_states(records)
        self.check_paused()
        self.check_playlists(records)
        for slot in self.slots:
            if slot.removed is not None and slot.removed[1]:
                self.check_removed_remote(slot, "after the run settled")

    def check_spec(self) -> None:
        """As tests/conftest.py's `sandbox` fixture does at teardown, except that a request the
        sandbox answered before reading its body (an injected fault, or a 401 for an access
        token expired early) has no fields on record to check."""
        from spec_check import SPEC_PATH, check_request, load_spec

        if not SPEC_PATH.exists():
            self.notes.append(f"{SPEC_PATH} missing: requests not checked against the spec")
            return
        spec = load_spec()
        for rec in self.sandbox.requests:
            unparsed = (
                rec.content_type == "multipart/form-data" and not rec.form and not rec.files
            ) or (rec.content_type == "application/json" and rec.json_body is None)
            if unparsed and (rec.status >= 400 or rec.status == 0):
                continue
            for problem in check_request(rec, spec):
                self.violate("I0", f"spec:{rec.seq}", f"{rec.method} {rec.path}: {problem}")

    def check_claims(self, records: list[Track], copies: list[dict[str, Any]]) -> None:
        claims: dict[str, list[Track]] = {}
        for t in records:
            if t.soundcloud.urn:
                claims.setdefault(t.soundcloud.urn, []).append(t)
        present = {str(c["urn"]) for c in copies}
        for c in copies:
            urn = str(c["urn"])
            owners = claims.get(urn, [])
            # A removed record keeps the URN it had; another record of the same audio may take
            # the copy over (a backup copy, once the original was removed without --remote).
            live = [o for o in owners if o.state != State.REMOVED]
            if len(live) > 1:
                self.violate(
                    "I1",
                    f"claims:{urn}",
                    f"{urn} is claimed by {[(o.id, o.state.value, o.audio_path) for o in live]}",
                )
            if not owners:
                digest16 = (c["_machine"] or [""])[0]
                by_removed = [
                    t
                    for t in records
                    if t.state == State.REMOVED
                    and any(d.startswith(digest16) for d in t.posted_sha256 if digest16)
                ]
                if not by_removed:
                    names = [s.label for s in self.slots_with(digest16)]
                    self.violate(
                        "I1",
                        f"orphan:{urn}",
                        f"{urn} ('{c['title']}', audio of {names}) is on SoundCloud but no "
                        f"record knows it",
                    )
        for t in records:
            remote_state = t.state in (State.RELEASED, State.PUBLISHED, State.SCHEDULED)
            if remote_state and t.soundcloud.urn not in present:
                self.violate(
                    "I1",
                    f"missing:{t.id}",
                    f"'{t.title}' ({t.id}) is {t.state} as {t.soundcloud.urn}, which is not "
                    f"on SoundCloud",
                )

    def candidates(self, slot: Slot) -> list[Version]:
        """The sidecar versions SoundCloud may end up showing for this slot: for a deleted
        export, those the daemon may have been acting on when the audio went (a sidecar
        edited after that reaches no track)."""
        when = slot.deleted_at if slot.deleted_at is not None else math.inf
        return [value for _, _, value in self.possible(slot, when, sidecars_only=True)]

    def expected(self, slot: Slot, version: Version, tag_title: str | None) -> dict[str, Any]:
        m = version.merged
        sharing = "public" if slot.user_release is not None else (m.get("sharing") or "private")
        return {
            "title": m.get("title") or tag_title or slot.name,
            "genre": m.get("genre") or "",
            "tags": list(dict.fromkeys(m.get("tags") or [])),
            "description": describe_expected(m),
            "release": m.get("release") or "",
            "label_name": m.get("label") or "",
            "sharing": sharing,
        }

    def check_fields(self, records: list[Track], copies: list[dict[str, Any]]) -> None:
        by_urn = {t.soundcloud.urn: t for t in records if t.soundcloud.urn}
        by_urn.update(
            {t.soundcloud.urn: t for t in records if t.soundcloud.urn and t.state != State.REMOVED}
        )
        for c in copies:
            t = by_urn.get(str(c["urn"]))
            if t is None or t.state == State.REMOVED:
                continue
            slot = self.slot_at(t.audio_path)
            if slot is None:
                continue  # reported by check_states
            digest16 = (c["_machine"] or [""])[0]
            identity = self.identity_of(digest16)
            held = [
                a for a in slot.audios if a.digest.startswith(digest16) or a.identity == identity
            ]
            if not held:
                self.violate(
                    "I3",
                    f"wrong-file:{t.id}",
                    f"'{t.title}' ({t.id}) is up as audio {digest16} but its record points at "
                    f"{slot.label}, which never held that audio",
                )
                continue
            if t.state not in (State.RELEASED, State.PUBLISHED):
                continue
            audio = held[0]
            shown = {
                "title": c.get("title") or "",
                "genre": c.get("genre") or "",
                "tags": c["_tags"],
                "description": c.get("description") or "",
                "release": c.get("release") or "",
                "label_name": c.get("label_name") or "",
                "sharing": c.get("sharing"),
            }
            candidates = self.candidates(slot)
            wanted = [self.expected(slot, v, audio.tag_title) for v in candidates]
            if getattr(t, "hold_private", False) and slot.user_release is None:
                # README/status: a release time taken out of the sidecar holds the track
                # private until it is told when (never public early). Only after a sidecar
                # that had one.
                # (the record may have come from another copy of this audio, with its history)
                sources = self.slots_with(digest16) or [slot]
                if not any(
                    v.merged.get("release_at")
                    for s in sources
                    for v in s.versions
                    if v.state == "ok"
                ):
                    self.violate(
                        "I3",
                        f"held:{t.id}",
                        f"{slot.label} is held private, but no sidecar of it ever had release_at",
                    )
                for w, v in zip(wanted, candidates, strict=True):
                    if not v.merged.get("release_at"):
                        w["sharing"] = "private"
            if not any(shown == w for w in wanted):
                diffs = [{k: (shown[k], w[k]) for k in w if shown[k] != w[k]} for w in wanted] or [
                    "no valid sidecar version"
                ]
                self.violate(
                    "I3",
                    f"fields:{t.id}",
                    f"{slot.label} ('{t.title}', {t.state}, {c['urn']}): SoundCloud shows "
                    f"something else than its last sidecar: (shown, wanted) {diffs}",
                )
            self.check_state_matches(slot, t, shown, wanted)
            current = slot.current
            if (
                slot.deleted_at is None
                and current is not None
                and not current.digest.startswith(digest16)
                and current.identity != identity  # the same audio under other tags is no change
                and (t.local_change or {}).get("sha256") != current.digest
            ):
                self.violate(
                    "I3",
                    f"local-change:{t.id}",
                    f"{slot.label} was re-exported after its upload ({current.digest[:16]} on "
                    f"disk, {digest16} on SoundCloud) but status does not report it "
                    f"(local_change={t.local_change})",
                )

    def check_state_matches(
        self, slot: Slot, t: Track, shown: dict[str, Any], wanted: list[dict[str, Any]]
    ) -> None:
        if t.state == State.RELEASED and shown["sharing"] != "public":
            self.violate("I3", f"rel-private:{t.id}", f"{slot.label} is released but private")
        if t.state == State.PUBLISHED:
            if shown["sharing"] != "private":
                self.violate("I3", f"pub-public:{t.id}", f"{slot.label} published but public")
            if all(w["sharing"] == "public" for w in wanted):
                self.violate(
                    "I3",
                    f"never-public:{t.id}",
                    f"{slot.label} should be public (its release time has passed) but stays "
                    f"private (published)",
                )

    def check_states(self, records: list[Track]) -> None:
        ids = {t.id for t in records}
        # One export, one live record (a backup copy is an export of its own).
        per_slot: dict[int, list[Track]] = {}
        for t in records:
            owner = self.slot_at(t.audio_path) or next(
                (s for s in self.slots if t.audio_path in s.paths), None
            )
            if owner is not None and t.state != State.REMOVED:
                per_slot.setdefault(owner.n, []).append(t)
        for n, live in per_slot.items():
            if len(live) > 1:
                label = next(s.label for s in self.slots if s.n == n)
                self.violate(
                    "I5",
                    f"split:{n}",
                    f"{label} has {len(live)} live records: "
                    + "; ".join(
                        f"{t.id} {t.state.value} at {t.audio_path.split('/exports/')[-1]} "
                        f"({t.soundcloud.urn or 'not uploaded'}, {t.last_error})"
                        for t in live
                    ),
                )
        # The same audio under two names is one track, the other invalid (README), also when
        # the original's file holds a re-export that was never uploaded (its local change).
        by_audio: dict[tuple[int, float], list[tuple[Slot, Track]]] = {}
        for t in records:
            slot = self.slot_at(t.audio_path)
            if (
                slot is None
                or not slot.has_audio
                or slot.removed is not None
                or slot.current is None
                or t.state in (State.REMOVED, State.INVALID)
            ):
                continue
            by_audio.setdefault(slot.current.identity, []).append((slot, t))
        for identity, tracks in by_audio.items():
            if len({slot.n for slot, _ in tracks}) > 1:
                self.violate(
                    "I1",
                    f"two-tracks:{identity}",
                    f"the same audio (freq {identity[0]} Hz, {identity[1]} s) is in "
                    + " and ".join(f"{s.label} ({t.id}, {t.state.value})" for s, t in tracks)
                    + ": two tracks, neither shown as the other's copy",
                )
        for t in records:
            slot = self.slot_at(t.audio_path)
            label = f"'{t.title}' ({Path(t.audio_path).name}, {t.id}, {t.state})"
            if slot is None:
                old = [s for s in self.slots if t.audio_path in s.paths]
                if old and t.state != State.REMOVED:
                    self.violate(
                        "I5",
                        f"stale-path:{t.id}",
                        f"{label} still points at {t.audio_path}; the export is at "
                        f"{self.slot_path(old[0]) if old[0].has_audio else 'nowhere'} now",
                    )
                elif not old:
                    self.violate(
                        "I5", f"foreign:{t.id}", f"{label}: a record for a file never written"
                    )
                continue
            if t.state == State.REMOVED:
                continue
            if slot.removed is not None:
                self.violate(
                    "I5",
                    f"revived:{t.id}",
                    f"{label}: {slot.label} was removed, yet a live record handles it again",
                )
                continue
            reason = self.unsettled(t)
            if reason is not None:
                self.violate("I5", f"end:{t.id}", f"ended unsettled: {reason}")
            elif t.state == State.FAILED:
                self.notes.append(f"{label} failed: {t.last_error}")
                if not t.last_error:
                    self.violate("I5", f"failed-silent:{t.id}", f"{label} failed without reason")
            elif t.state == State.INVALID:
                self.check_invalid(slot, t, label, ids)
        for slot in self.slots:
            if not slot.has_audio or slot.removed is not None:
                continue
            path = str(self.slot_path(slot))
            if not any(t.audio_path == path for t in records):
                where = [t.id for t in records if t.audio_path in slot.paths]
                self.violate(
                    "I5",
                    f"no-record:{slot.n}",
                    f"{path} has no record"
                    + (f" (records at its old paths: {where})" if where else ""),
                )

    def check_invalid(self, slot: Slot, t: Track, label: str, ids: set[str]) -> None:
        error = t.last_error or ""
        if t.duplicate_of:
            if t.duplicate_of not in ids:
                self.violate("I5", f"dup-gone:{t.id}", f"{label}: a copy of a record that is gone")
            return
        if not Path(t.audio_path).exists() and (t.audio_path in error or "gone" in error):
            return  # an export gone while it was built: the error names it
        last = slot.versions[-1] if slot.versions else None
        if last is not None and last.state == "broken":
            if not any(n in error for n in (f"{slot.name}.yaml", "release.yaml")):
                self.violate("I5", f"invalid-unnamed:{t.id}", f"{label}: {error!r} names no file")
            return
        self.violate(
            "I5",
            f"invalid-why:{t.id}",
            f"{label} is invalid though its export is complete and its sidecar valid: {error!r}",
        )

    def check_paused(self) -> None:
        for since, until in self.pauses:
            held_from = self.known_at(since)
            for rec in self.sandbox.requests:
                if (
                    rec.method == "POST"
                    and rec.template == "/tracks"
                    and held_from <= rec.at < until
                ):
                    self.violate(
                        "I7",
                        f"paused:{rec.seq}",
                        f"#{rec.seq} POST /tracks at t+{rec.at - self.t0:.2f} while paused "
                        f"(t+{since - self.t0:.2f} .. t+{until - self.t0:.2f})",
                    )

    def check_playlists(self, records: list[Track]) -> None:
        playlists = self.sandbox.playlists()
        titles = Counter(p["title"] for p in playlists)
        for title, count in titles.items():
            if count > 1:
                self.violate("I8", f"pl-twice:{title}", f"playlist '{title}' exists {count} times")
        members: dict[str, set[str]] = {}
        for p in playlists:
            members.setdefault(p["title"], set()).update(str(x["urn"]) for x in p["tracks"])
        for t in records:
            if t.state not in (State.RELEASED, State.PUBLISHED) or not t.soundcloud.urn:
                continue
            slot = self.slot_at(t.audio_path)
            if slot is None or slot.deleted_at is not None:
                continue
            last = slot.last_ok()
            wanted = last.merged.get("playlist") if last else None
            if wanted and t.soundcloud.urn not in members.get(wanted, set()):
                self.violate(
                    "I8",
                    f"pl-missing:{t.id}",
                    f"{slot.label} ({t.soundcloud.urn}) is not in its playlist '{wanted}'",
                )

    # --- the report -------------------------------------------------------------------------------

    def summary(self) -> str:
        records = self.records()
        states = Counter(t.state.value for t in records)
        kills = sum(1 for line in self.oplog if "SIGKILLed" in line)
        return (
            f"seed {self.seed}: {self.n_ops} ops in {time.time() - self.t0:.0f} s, "
            f"{len(self.slots)} exports, {len(self.sandbox.tracks())} on SoundCloud, "
            f"{kills} kills, {len(self.sandbox.requests)} requests; states {dict(states)}; "
            f"ops {dict(self.kinds)}"
        )

    def daemon_log_excerpt(self) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        keep: list[str] = []
        names = {
            s.name
            for s in self.slots
            if any(s.label in v or s.name in v for v in self.violations.values())
        }
        for i, line in enumerate(lines):
            if (
                "Traceback" in line
                or " ERROR " in line
                or any(name in line for name in names)
                or "releaseosd running" in line
            ):
                keep.append(f"{i + 1}: {line}")
        return "\n".join(keep[-150:])

    def report(self) -> str:
        out = [
            self.summary(),
            f"rerun: RELEASEOSD_CHAOS_SEED={self.seed} RELEASEOSD_CHAOS_OPS={self.n_ops} "
            f"dbus-run-session -- .venv/bin/python -m pytest -q -p no:cacheprovider "
            f"tests/chaos -s",
            f"files: {self.root} (daemon.log, ops.log, state/, sandbox/)",
        ]
        if self.violations:
            out.append(f"\n{len(self.violations)} VIOLATION(S):")
            out.extend(f"  {v}" for v in self.violations.values())
        if self.notes:
            out.append("\nnotes:")
            out.extend(f"  {n}" for n in dict.fromkeys(self.notes))
        out.append("\noperation log:")
        out.extend(self.oplog)
        if self.violations:
            out.append("\ndaemon log (errors, and lines naming the exports involved):")
            out.append(self.daemon_log_excerpt())
        return "\n".join(out)


def run_seed(seed: int, n_ops: int, root: Path) -> ChaosRun:
    """One seed, start to finish, with a sandbox of its own (over loopback, state in `root`);
    raises AssertionError with the whole story on a violation."""
    sandbox = TestSandbox(
        data_dir=root / "sandbox",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        processing_seconds=0.2,
    )
    sandbox.start()
    try:
        run = ChaosRun(seed, n_ops, root, sandbox)
        try:
            run.run()
        except BaseException:
            run.log(
                "DRIVER ERROR (a bug of the chaos driver or its environment: see the traceback)"
            )
            (root / "chaos-report.txt").write_text(run.report(), encoding="utf-8")
            print(run.report())
            raise
    finally:
        sandbox.stop()
    text = run.report()
    (root / "chaos-report.txt").write_text(text, encoding="utf-8")
    (root / "ops.log").write_text("\n".join(run.oplog) + "\n", encoding="utf-8")
    print(run.summary())
    if run.violations:
        raise AssertionError(f"chaos seed {seed} broke invariants\n{text}")
    return run


def describe_invariants() -> Iterable[str]:
    return (f"{k}: {v}" for k, v in INVARIANTS.items())
