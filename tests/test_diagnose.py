"""A planted bug per diagnosis: each is named by its stable code; noise gets no confident story."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import gradharness as gh
import reference_layers as rl
from gradharness.diagnose import CODES
from tests import planted
from tests.test_reference_layers import (AttentionDiagonalSoftmax, ConvEdgePaddedForward, ConvStrideIgnoredInDx,
                                         EmbeddingFancyIndexUpdate, PoolAssignsInsteadOfAccumulating,
                                         RNNTruncatedBPTT, _make)

SEED = {"max_examples": 25, "seed": 2}


def _lin(cls: type = planted.Linear, bug: str | None = None, **extra: Any) -> gh.Report:
    def make(d: Any, rng: np.random.Generator) -> Any:
        return cls(d["d_in"], d["d_out"], rng, bug)

    return gh.check_layer(make, **planted.LINEAR, **SEED, **extra)


def _mse(bug: str) -> gh.Report:
    return gh.check_layer(lambda d, rng: planted.MSE(d["n"], d["d"], rng, bug), "n d", output="",
                          batch_independent=False, **SEED)


def _mlp_with_bad_relu() -> gh.Report:
    @gh.layer(input="n d_in", output="n d_out", dims={"hidden": (1, 6)}, bias=())
    def net(d: Any, rng: np.random.Generator) -> Any:
        return rl.Sequential([rl.Linear(d["d_in"], d["hidden"], rng), planted.ReLU("leaky-backward"),
                              rl.Linear(d["hidden"], d["d_out"], rng)])

    return gh.check_layer(net, **SEED)


def _softmax_diag() -> gh.Report:
    return gh.check_layer(lambda d, rng: planted.Softmax("diagonal"), "n d", output="n d", **SEED)


def _square_dims(**opts: Any) -> dict[str, Any]:
    return {"dims": {"n": (3, 3), "d_in": (3, 3), "d_out": (3, 3)}, **opts}


# (diagnosis code, check that carries it, how to get the report)
TABLE: list[tuple[str, str, Callable[[], gh.Report]]] = [
    ("sign-flip", "grad-params", lambda: _lin(bug="dW-sign")),
    ("scaled-by-inverse-batch", "grad-params", lambda: _lin(bug="dW-mean")),
    ("scaled-by-batch", "grad-input", lambda: _mse("sum-not-mean")),
    ("scaled-by-2", "grad-input", lambda: _mse("double")),
    ("scaled-by-half", "grad-input", lambda: _mse("half")),
    ("scaled", "grad-params", lambda: _lin(planted.LinearScaled)),
    ("transposed", "grad-params", lambda: _lin(planted.LinearTransposedDW, **_square_dims())),
    ("zero-analytic", "grad-params", lambda: _lin(bug="db-zero")),
    ("zero-numeric", "grad-params", lambda: _lin(bug="bias-unused")),
    ("first-sample-only", "grad-params", lambda: _lin(bug="db-first")),
    ("wrong-axis", "grad-params", lambda: _lin(planted.LinearWrongAxisBias, **_square_dims())),
    ("keepdims", "backward-shape", lambda: _lin(bug="db-keepdims")),
    ("transposed-shape", "backward-shape", lambda: _lin(bug="dW-transposed")),
    ("diagonal-only", "grad-input", _softmax_diag),
    ("square-only", "grad-input", lambda: _lin(planted.LinearBroadcastDx)),
    ("border", "grad-input", lambda: gh.check_layer(_make(ConvEdgePaddedForward, rl.Conv2d), **SEED)),
    ("strided", "grad-input", lambda: gh.check_layer(_make(ConvStrideIgnoredInDx, rl.Conv2d), **SEED)),
    ("overlapping-windows", "grad-input",
     lambda: gh.check_layer(_make(PoolAssignsInsteadOfAccumulating, rl.MaxPool2d), **SEED)),
    ("repeated-index", "grad-params", lambda: gh.check_layer(_make(EmbeddingFancyIndexUpdate, rl.Embedding), **SEED)),
    ("truncated-bptt", "grad-input", lambda: gh.check_layer(_make(RNNTruncatedBPTT, rl.RNN), **SEED)),
    ("mutated-dout", "no-mutation", lambda: _lin(bug="mutates-dout")),
    ("mutated-input", "no-mutation", lambda: _lin(bug="mutates-x")),
    ("accumulates", "backward-repeatable", lambda: _lin(bug="accumulate")),
    ("stale-state", "backward-repeatable", lambda: _lin(planted.PreviousCache)),
    ("blame", "grad-input", _mlp_with_bad_relu),
    ("unexplained", "grad-params", lambda: _lin(planted.LinearNoisy)),
]


@pytest.mark.parametrize(("code", "check", "run"), TABLE, ids=[t[0] for t in TABLE])
def test_planted_bug_is_diagnosed(code: str, check: str, run: Callable[[], gh.Report]) -> None:
    report = run()
    failure = next((f for f in report.failures if f.check == check), None)
    assert failure is not None, str(report)
    assert failure.diagnosis == code, failure.message
    assert failure.message.splitlines()[1] == f"  Diagnosis: {failure.diagnosis_text}"
    assert code in CODES


def test_blame_names_the_layer_and_its_own_diagnosis() -> None:
    failure = next(f for f in _mlp_with_bad_relu().failures if f.check == "grad-input")
    assert failure.diagnosis_params["index"] == 1 and failure.diagnosis_params["layer"] == "ReLU"
    assert "layer 1 (ReLU)" in failure.diagnosis_text


def test_attention_missing_softmax_jacobian_is_not_blamed_on_noise() -> None:
    report = gh.check_layer(_make(AttentionDiagonalSoftmax, rl.Attention), **SEED)
    failure = next(f for f in report.failures if f.check == "grad-input")
    assert failure.diagnosis is not None and failure.diagnosis != "sign-flip"


def test_noise_gets_no_confident_structural_story() -> None:
    failure = next(f for f in _lin(planted.LinearNoisy).failures if f.check == "grad-params")
    assert failure.diagnosis == "unexplained"
    assert "relative" in failure.diagnosis_text and "a wrong gradient, not numerical noise" in failure.diagnosis_text


def test_diagnosis_is_in_the_json_report() -> None:
    report = _lin(bug="dW-sign")
    d = report.to_dict()["failures"][0]
    assert d["diagnosis"] == "sign-flip" and d["diagnosis_params"]["factor"] == pytest.approx(-1.0)
