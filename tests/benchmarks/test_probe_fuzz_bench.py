"""probe() fuzzing, the long run, on demand: `pytest tests/benchmarks/test_probe_fuzz_bench.py
-p no:cacheprovider -s`. RELEASEOSD_FUZZ_EXAMPLES sets the examples per seed (default 3000),
RELEASEOSD_FUZZ_RANDOM=1 tries new inputs each run instead of the same derandomized ones.

The same seeds and mutations as tests/media/test_probe_fuzz.py, on seeds of a few seconds (so cuts
land in the audio too) and many more examples; prints what the mutated files came out as and the
slowest probe.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))
from test_probe_fuzz import (
    SECONDS_PER_FILE,
    SEEDS,
    Op,
    Seed,
    check_total,
    make_seeds,
    mutate,
    ops_strategy,
)

from releaseosd.media.ffmpeg import find_ffmpeg

pytestmark = pytest.mark.benchmark
EXAMPLES = int(os.environ.get("RELEASEOSD_FUZZ_EXAMPLES", "3000"))
RANDOM = os.environ.get("RELEASEOSD_FUZZ_RANDOM") == "1"


@pytest.fixture(scope="module")
def long_seeds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Seed]]:
    find_ffmpeg.cache_clear()
    yield make_seeds(find_ffmpeg(), tmp_path_factory.mktemp("fuzz-seeds"), seconds=3.0)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_mutated_headers_long_run(name: str, long_seeds: dict[str, Seed], tmp_path: Path) -> None:
    seed = long_seeds[name]
    path = tmp_path / f"Mutated {name}{seed.suffix}"
    outcomes: collections.Counter[str] = collections.Counter()
    slowest = [0.0]

    @settings(
        max_examples=EXAMPLES,
        deadline=SECONDS_PER_FILE * 1000,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(ops=ops_strategy(seed))
    def run(ops: list[Op]) -> None:
        start = time.perf_counter()
        result = check_total(path, mutate(seed, ops))
        slowest[0] = max(slowest[0], time.perf_counter() - start)
        outcomes[type(result).__name__] += 1

    run()
    print(f"\n{name}: {dict(outcomes)}, slowest probe {slowest[0] * 1000:.0f} ms")
