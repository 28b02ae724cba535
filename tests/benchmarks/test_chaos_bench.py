"""Chaos on demand: many seeds × hundreds of operations of the randomized run against the real
daemon process and the SoundCloud sandbox (see tests/chaos/chaos_driver.py for the operations
and the invariants). Not collected by default (pyproject's norecursedirs); run it with:
    dbus-run-session -- .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/benchmarks/test_chaos_bench.py
A failing seed prints its operation log and how to rerun it alone (RELEASEOSD_CHAOS_SEED=<n>,
RELEASEOSD_CHAOS_OPS=<m>; RELEASEOSD_CHAOS_SEEDS=<count> changes how many seeds run here).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chaos"))
from chaos_driver import ops_from_env, run_seed, seeds_from_env

FIRST_SEED = 1000
SEEDS = seeds_from_env(list(range(FIRST_SEED, FIRST_SEED + 20)))
OPS = ops_from_env(250)


@pytest.mark.benchmark
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("seed", SEEDS)
def test_chaos_bench_seed(seed: int, tmp_path: Path) -> None:
    run_seed(seed, OPS, tmp_path)
