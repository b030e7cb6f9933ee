"""The full mutation run over every reference layer (slow: about 3 minutes on 2 cores).

Skipped unless GRADHARNESS_MUTATE_ZOO=1:

    GRADHARNESS_MUTATE_ZOO=1 python -m pytest tests/test_mutate_zoo.py -s

The same run from the command line, with the reports:

    python -m gradharness.mutate reference_layers --json mutation.json --html mutation.html
"""
from __future__ import annotations

import os
import time

import pytest

import gradharness.mutate as gm

pytestmark = pytest.mark.skipif(not os.environ.get("GRADHARNESS_MUTATE_ZOO"),
                                reason="the full reference-zoo mutation run is slow: set GRADHARNESS_MUTATE_ZOO=1")

def test_every_reference_layer_kills_every_non_equivalent_mutant(tmp_path) -> None:
    started = time.perf_counter()
    rep = gm.mutate("reference_layers")
    elapsed = time.perf_counter() - started
    rep.write_json(str(tmp_path / "zoo.json"))
    rep.write_html(str(tmp_path / "zoo.html"))
    print("\n" + rep.format(verbose=True))
    print(f"\nreference zoo: {len(rep.results)} mutants in {elapsed:.0f}s")
    assert not rep.baseline_failed
    assert all(lr.results for lr in rep.layers)
    # every non-equivalent mutant is killed: those that only change forward's values (a dropped
    # eps, a dropout scale) by forward-reference, since their backward is still exact
    survivors = {(r.mutant.layer, r.mutant.operator, r.mutant.mutated.strip()) for r in rep.survivors()}
    assert not survivors, survivors
    assert rep.score == 100.0
    for r in rep.equivalents():
        assert r.evidence["equivalent"] and r.evidence["compared"] > 0
    assert not [r.id for r in rep.results if r.status in ("CompileError", "RuntimeError", "Timeout")]
