"""Activation functions over ``(n, d)`` inputs; the first four are element-wise."""
from __future__ import annotations

import numpy as np

from gradharness import layer


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function that never overflows: ``exp`` only ever sees non-positive numbers."""
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


@layer(input="n d", output="n d", elementwise=True)
class ReLU:
    """``max(x, 0)``."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.mask


@layer(input="n d", output="n d", hyper={"alpha": [0.01, 0.1, 0.2]}, elementwise=True)
class LeakyReLU:
    """``x`` for ``x > 0``, ``alpha * x`` otherwise."""

    def __init__(self, alpha: float = 0.01) -> None:
        self.alpha = float(alpha)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return np.where(self.mask, x, self.alpha * x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        # select from dout itself: np.where(mask, 1, alpha) would build a float64 array
        return np.where(self.mask, dout, self.alpha * dout)


@layer(input="n d", output="n d", elementwise=True)
class Sigmoid:
    """``1 / (1 + exp(-x))``."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.out = sigmoid(x)
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        s = self.out
        return dout * s * (1 - s)


@layer(input="n d", output="n d", elementwise=True)
class Tanh:
    """``tanh(x)``."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.out = np.tanh(x)
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (1 - self.out**2)


@layer(input="n d", output="n d")
class Softmax:
    """Softmax over the last axis."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        # shifting by the row max changes nothing mathematically and keeps exp finite
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        self.out = e / e.sum(axis=-1, keepdims=True)
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        s = self.out
        # Jacobian-vector product of diag(s) - s s^T, without building the (d, d) Jacobian
        return s * (dout - np.sum(dout * s, axis=-1, keepdims=True))


@layer(input="n d", output="n d")
class LogSoftmax:
    """``log(softmax(x))`` over the last axis, computed as ``x - logsumexp(x)``."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        shifted = x - x.max(axis=-1, keepdims=True)
        self.out = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        # d logsumexp / dx = softmax(x) = exp(out)
        return dout - np.exp(self.out) * dout.sum(axis=-1, keepdims=True)
