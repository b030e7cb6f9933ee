"""Loss layers: they return a 0-d array and take a 0-d ``dout``.

The targets are drawn once in the constructor for a fixed batch size, which is
why both are declared ``batch_independent=False``.
"""
from __future__ import annotations

import numpy as np

from gradharness import layer


@layer(input="n c", output="", dims={"c": (2, 6)}, batch_independent=False)
class SoftmaxCrossEntropy:
    """Mean over the batch of ``-log softmax(x)[label]``, for integer labels drawn from ``rng``."""

    def __init__(self, n: int, c: int, rng: np.random.Generator) -> None:
        self.labels = rng.integers(0, c, size=n)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        shifted = x - x.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(x.shape[0])
        self.cache = (np.exp(logp), rows)
        return np.asarray(-logp[rows, self.labels].mean())

    def backward(self, dout: np.ndarray) -> np.ndarray:
        probs, rows = self.cache
        dx = probs.copy()  # a copy: the cached probabilities must survive a second backward
        dx[rows, self.labels] -= 1
        return dx * (dout / len(rows))


def mse_reference(layer: "MSELoss", x: np.ndarray) -> np.ndarray:
    """What MSELoss computes, written out plainly (the known-value oracle of its spec)."""
    return np.asarray(np.mean((x - layer.target) ** 2))


@layer(input="n d", output="", batch_independent=False, reference=mse_reference)
class MSELoss:
    """Mean over every element of ``(x - target) ** 2``, for a target drawn from ``rng``."""

    def __init__(self, n: int, d: int, rng: np.random.Generator) -> None:
        self.target = rng.standard_normal((n, d))
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        # cast the stored float64 target, or float32 inputs would come back float64
        self.diff = x - self.target.astype(x.dtype, copy=False)
        return np.asarray(np.mean(self.diff**2))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return self.diff * (2 * dout / self.diff.size)
