"""Chaos in CI: a few seeds of the randomized run (tests/chaos/chaos_driver.py) against the real
daemon process and the SoundCloud sandbox, every invariant asserted.

Rerun one seed, with its operation log printed:
    RELEASEOSD_CHAOS_SEED=2 dbus-run-session -- .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/chaos -s
Shorter runs of a seed (RELEASEOSD_CHAOS_OPS=30) replay a prefix of its operations. Many seeds,
many operations: tests/benchmarks/test_chaos_bench.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos_driver import ops_from_env, run_seed, seeds_from_env

SEEDS = seeds_from_env([1, 2, 3])
OPS = ops_from_env(30)


@pytest.mark.parametrize("seed", SEEDS)
def test_chaos_seed(seed: int, tmp_path: Path) -> None:
    # The run has its own sandbox (and checks every request against SoundCloud's spec, as the
    # `sandbox` fixture does): it logs in where daemon_env(tmp_path) sends the daemon.
    run_seed(seed, OPS, tmp_path)
