"""The numerical engine: error estimates that bound the truth, kinks, localization, sensitivity."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradharness as gh
from gradharness._numeric import localize, probe_tensor, stencil
from gradharness._tolerance import SAFETY, precision
from tests import planted

F64 = precision(np.float64)


@pytest.mark.parametrize("x0", [-2.0, -0.3, 0.7, 2.5])
def test_stencil_error_estimate_bounds_the_true_error(x0: float) -> None:
    phi = lambda t: float(np.tanh(3 * (x0 + t)) + np.sin(x0 + t) ** 3)  # noqa: E731
    true = 3 / np.cosh(3 * x0) ** 2 + 3 * np.sin(x0) ** 2 * np.cos(x0)
    noise = F64.eps * 4
    s = stencil(phi, phi(0.0), 1e-4, noise)
    assert not s.kink
    assert abs(s.richardson - true) <= SAFETY * s.error
    assert abs(s.richardson - true) < 1e-9


def test_stencil_detects_a_kink_at_zero() -> None:
    phi = lambda t: abs(t) + 0.5 * t  # noqa: E731
    s = stencil(phi, 0.0, 1e-4, F64.eps)
    assert s.kink
    # any subgradient in [-0.5, 1.5] lies between the one-sided differences
    assert s.lo == pytest.approx(-0.5) and s.hi == pytest.approx(1.5)


def test_stencil_no_kink_on_a_polynomial() -> None:
    phi = lambda t: 3 * t**3 - t**2 + 5 * t  # noqa: E731
    assert not stencil(phi, 0.0, 1e-4, F64.eps).kink


def _linear_loss(rng: np.random.Generator) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    x = rng.standard_normal((5, 4))
    W = rng.standard_normal((4, 3))
    dout = rng.standard_normal((5, 3))
    loss = lambda w: float(np.sum((x @ w) * dout))  # noqa: E731
    return loss, W, x.T @ dout, np.abs(x @ W * dout).sum()


@pytest.mark.parametrize("seed", range(5))
def test_probe_catches_relative_error_1e_6_and_passes_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    loss, W, g, S = _linear_loss(rng)
    noise = F64.eps * F64.growth(32) * S
    kw = dict(noise=noise, analytic_prec=F64, terms=32, rng=rng)
    assert not probe_tensor(loss, loss(W), W, g, **kw).failed
    assert probe_tensor(loss, loss(W), W, g * (1 + 1e-6), **kw).failed


def test_probe_accepts_relu_subgradient_at_exact_kinks() -> None:
    x = np.array([0.0, 0.0, 1.0, -1.0, 0.0])
    dout = np.array([0.3, -1.2, 0.5, 2.0, 0.7])
    loss = lambda v: float(np.sum(np.maximum(v, 0) * dout))  # noqa: E731
    rng = np.random.default_rng(0)
    for g in (dout * (x > 0), dout * (x >= 0)):
        verdict = probe_tensor(loss, loss(x), x, g, noise=F64.eps * 10, analytic_prec=F64, terms=10, rng=rng, probes=8)
        assert not verdict.failed
    wrong = dout.copy()  # no mask at all: wrong where x < 0
    verdict = probe_tensor(loss, loss(x), x, wrong, noise=F64.eps * 10, analytic_prec=F64, terms=10, rng=rng, probes=8)
    assert verdict.failed


def test_localize_names_the_wrong_element() -> None:
    rng = np.random.default_rng(1)
    loss, W, g, S = _linear_loss(rng)
    bad = g.copy()
    bad[2, 1] += 0.5
    loc = localize(loss, loss(W), W, bad, noise=F64.eps * F64.growth(32) * S, analytic_prec=F64, terms=32, rng=rng)
    assert loc.full and loc.total == W.size
    assert [tuple(i) for i in loc.indices[loc.bad]] == [(2, 1)]
    np.testing.assert_allclose(loc.numeric.reshape(W.shape), g, rtol=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_sensitivity_target_1e_6_on_linear(seed: int) -> None:
    """DESIGN's target: dW * (1 + 1e-6) is caught on every seed; the correct layer is clean."""
    opts = dict(planted.LINEAR, max_examples=20, seed=seed, dtypes=(np.float64,))
    bad = gh.check_layer(planted.linear("dW-1e-6"), **opts)
    assert bad.failed_checks() == ["grad-params"]
    good = gh.check_layer(planted.linear(None), **opts)
    assert good.passed, good
    assert good.sensitivity["float64"]["W"] < 1e-7


def test_relu_with_ge_convention_passes_on_exact_zeros() -> None:
    report = gh.check_layer(lambda d, rng: planted.ReLU("ge"), "n d", elementwise=True, max_examples=60, seed=0,
                            domain=(-1.0, 1.0))
    assert report.passed, report


def test_relu_wrong_mask_is_caught_despite_kinks() -> None:
    report = gh.check_layer(lambda d, rng: planted.ReLU("leaky-backward"), "n d", elementwise=True, max_examples=30,
                            seed=0)
    assert "grad-input" in report.failed_checks()


def test_no_two_steps_in_a_row_hand_the_layer_the_same_array() -> None:
    # a layer caching what it derives from a param by the array's identity (W.T) would see
    # its stale entry on the next step, every step would look alike, and the probe would pass
    # as a kink with a numeric derivative of 0; params-live is the check for that cache
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((4, 5))
    seen: list[int] = []

    def loss(value: np.ndarray) -> float:
        seen.append(id(value))
        return float(np.sum(np.sin(value)))

    # a wrong gradient takes every probe through the Richardson steps and the kink retries
    verdict = probe_tensor(loss, loss(theta), theta, 2 * np.cos(theta), noise=F64.eps * 20, analytic_prec=F64,
                           terms=1, rng=rng)
    assert verdict.failed and len(seen) > 5
    assert all(a != b for a, b in zip(seen[1:], seen[2:]))
