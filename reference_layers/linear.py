"""Fully connected layers: the modern ``x @ W + b`` and the Octave/Coursera ``[1, x] @ Theta``."""
from __future__ import annotations

import numpy as np

from gradharness import layer


@layer(input="n d_in", output="n d_out", dims={"d_in": (1, 6), "d_out": (1, 6)}, bias=("b",))
class Linear:
    """Affine map ``out = x @ W + b``, with ``W`` of shape (d_in, d_out) and ``b`` of shape (d_out,)."""

    def __init__(self, d_in: int, d_out: int, rng: np.random.Generator) -> None:
        # uniform in +-1/sqrt(d_in), torch.nn.Linear's default (and a fifth of a normal draw's cost)
        self.params = {"W": rng.uniform(-1.0, 1.0, (d_in, d_out)) / np.sqrt(d_in), "b": np.zeros(d_out)}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        W, b = self.params["W"], self.params["b"]
        self.cache = (x, W)
        return x @ W + b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, W = self.cache
        self.grads["W"] = x.T @ dout
        # b was broadcast over the batch, so its gradient sums over the batch
        self.grads["b"] = dout.sum(axis=0)
        return dout @ W.T


@layer(input="n d_in", output="n d_out", dims={"d_in": (1, 6), "d_out": (1, 6)}, bias=())
class OctaveLinear:
    """``out = [1, x] @ Theta``: the bias is row 0 of ``Theta`` (d_in + 1, d_out), as in Octave code."""

    def __init__(self, d_in: int, d_out: int, rng: np.random.Generator) -> None:
        self.params = {"Theta": rng.uniform(-1.0, 1.0, (d_in + 1, d_out)) / np.sqrt(d_in + 1)}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        Theta = self.params["Theta"]
        X1 = np.hstack([np.ones((x.shape[0], 1), dtype=x.dtype), x])
        self.cache = (X1, Theta)
        return X1 @ Theta

    def backward(self, dout: np.ndarray) -> np.ndarray:
        X1, Theta = self.cache
        self.grads["Theta"] = X1.T @ dout
        # the ones column is a constant, not part of x: drop Theta's bias row
        return dout @ Theta[1:].T
