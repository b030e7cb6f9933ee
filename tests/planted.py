"""Layers with one planted bug each, for the tests that show a check catches what it is named for."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

import gradharness as gh


class Linear:
    """out = x @ W + b, with a switchable planted bug."""

    def __init__(self, d_in: int, d_out: int, rng: np.random.Generator, bug: str | None = None) -> None:
        self.params = {"W": rng.standard_normal((d_in, d_out)) / np.sqrt(d_in), "b": np.zeros(d_out)}
        self.grads: dict[str, np.ndarray] = {}
        self.bug = bug
        if bug == "stale-copy":
            self._W = self.params["W"].copy()
        self._buf: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> Any:
        W, b = self.params["W"], self.params["b"]
        if self.bug == "stale-copy":
            W = self._W
        if self.bug == "stale-inplace":
            # caches per object identity: an in-place update of the same array goes unseen
            if getattr(self, "_id", None) != id(W):
                self._id, self._WT = id(W), W.T.copy()
            W = self._WT.T
        self.x = x
        if self.bug == "bias-unused":
            out = x @ W
        elif self.bug == "forward-transposed":
            out = (x @ W + b).T
        elif self.bug == "forward-float64":
            out = x @ W + b + np.zeros(b.shape)
        elif self.bug == "forward-list":
            out = (x @ W + b).tolist()
        elif self.bug == "forward-nan":
            out = x @ W + b + np.log(np.abs(x).sum() - np.abs(x).sum())
        elif self.bug == "random":
            out = x @ W + b + 1e-3 * np.random.standard_normal((x.shape[0], W.shape[1]))
        elif self.bug == "forward-raises":
            raise ValueError("shapes do not align")
        elif self.bug == "aliased":
            if self._buf is None or self._buf.shape != (x.shape[0], W.shape[1]) or self._buf.dtype != x.dtype:
                self._buf = np.empty((x.shape[0], W.shape[1]), dtype=np.result_type(x, W))
            np.matmul(x, W, out=self._buf)
            self._buf += b
            out = self._buf
        elif self.bug == "batch-centered":
            out = x @ W + b
            out = out - out.mean(axis=0)
        elif self.bug == "mutates-x":
            out = x @ W + b
            x *= 1.0 + 1e-3
        else:
            out = x @ W + b
        return out

    def backward(self, dout: np.ndarray) -> Any:
        x = self.x
        W = self.params["W"]
        if self.bug == "batch-centered":
            dout = dout - dout.mean(axis=0)
        dW = x.T @ dout
        db = dout.sum(axis=0)
        dx = dout @ W.T
        bug = self.bug
        if bug == "dW-1e-6":
            dW = dW * (1 + 1e-6)
        elif bug == "dW-sign":
            dW = -dW
        elif bug == "db-first":
            db = dout[0]
        elif bug == "db-mean":
            db = dout.mean(axis=0)
        elif bug == "db-zero":
            db = np.zeros_like(db)
        elif bug == "dW-mean":
            dW = dW / x.shape[0]
        elif bug == "db-keepdims":
            db = dout.sum(axis=0, keepdims=True)
        elif bug == "dx-no-transpose":
            # right shape only when W is square, and then wrong values
            dx = dout @ W
        elif bug == "dW-float32-only" and dout.dtype == np.float32:
            dW = dW * (1 + 1e-3)
        elif bug == "dx-float32-only" and dout.dtype == np.float32:
            dx = dx * (1 - 1e-3)
        elif bug == "dW-transposed":
            dW = dout.T @ x
        elif bug == "backward-float64":
            dx = dx + np.zeros(dx.shape)
        elif bug == "accumulate":
            if "W" in self.grads:
                dW = self.grads["W"] + dW
        elif bug == "dout-sign":
            dx, dW, db = dx, x.T @ np.sign(dout), np.sign(dout).sum(axis=0)
        elif bug == "mutates-dout":
            dout *= 2.0
            dx, dW, db = dout @ W.T / 2, x.T @ dout / 2, dout.sum(axis=0) / 2
        elif bug == "missing-grad":
            self.grads = {"W": dW}
            return dx
        elif bug == "extra-grad":
            self.grads = {"W": dW, "b": db, "x": dx}
            return dx
        elif bug == "backward-none":
            self.grads = {"W": dW, "b": db}
            return None
        elif bug == "backward-raises":
            raise IndexError("index 3 is out of bounds")
        elif bug == "aliased":
            if getattr(self, "_dxbuf", None) is None or self._dxbuf.shape != dx.shape:
                self._dxbuf = np.empty_like(dx)
            self._dxbuf[...] = dx
            dx = self._dxbuf
        self.grads = {"W": dW, "b": db}
        return dx


def linear(bug: str | None = None) -> Callable[[Any, np.random.Generator], Linear]:
    def make(dims: Any, rng: np.random.Generator) -> Linear:
        return Linear(dims["d_in"], dims["d_out"], rng, bug)

    make.__qualname__ = f"linear[{bug}]"
    return make


LINEAR = {"input": "n d_in", "output": "n d_out", "bias": ("b",)}


class Softmax:
    """Softmax over the last axis; `bug` plants a diagonal-only (element-wise) backward."""

    def __init__(self, bug: str | None = None) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.bug = bug

    def forward(self, x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        self.s = e / e.sum(axis=-1, keepdims=True)
        return self.s

    def backward(self, dout: np.ndarray) -> np.ndarray:
        s = self.s
        if self.bug == "diagonal":
            return dout * s * (1 - s)
        return s * (dout - (dout * s).sum(axis=-1, keepdims=True))


class ReLU:
    """max(x, 0); `ge` uses x >= 0 in backward (still correct: the kink's subgradient)."""

    def __init__(self, bug: str | None = None) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.bug = bug

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return np.maximum(x, 0)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.bug == "ge":
            return dout * (self.x >= 0)
        if self.bug == "inplace":
            dout[self.x <= 0] = 0
            return dout
        if self.bug == "leaky-backward":
            return np.where(self.x > 0, dout, 0.01 * dout)
        if self.bug == "not-elementwise":
            return dout * (self.x > 0) + 0.1 * np.roll(dout, 1, axis=-1)
        return dout * (self.x > 0)


class Dropout:
    """Inverted dropout; `bug="global-rng"` draws a new mask from np.random on every call."""

    def __init__(self, rng: np.random.Generator, bug: str | None = None) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.seed = int(rng.integers(2**31))
        self.bug = bug

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.bug == "global-rng":
            mask = np.random.random(x.shape) > 0.5
        else:
            mask = np.random.default_rng(self.seed).random(x.shape) > 0.5
        self.mask = (mask / 0.5).astype(x.dtype)
        return x * self.mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.mask


class Loss:
    """Mean squared error to a target drawn in the factory; `ignores-dout` returns dL/dx as if dout were 1."""

    def __init__(self, n: int, d: int, rng: np.random.Generator, bug: str | None = None) -> None:
        self.target = rng.standard_normal((n, d))
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.bug = bug

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.diff = x - self.target.astype(x.dtype)
        return np.asarray(np.mean(self.diff**2))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.bug == "ignores-dout":
            return 2 * self.diff / self.diff.size
        return self.diff * (2 * dout / self.diff.size)


@gh.layer(input="n d_in", output="n d_out", bias=("b",))
def declared_db_zero(dims: Any, rng: np.random.Generator) -> Linear:
    """A declared layer with a zeroed bias gradient (for reproduction lines)."""
    return Linear(dims["d_in"], dims["d_out"], rng, "db-zero")


class LinearBroadcastDx(Linear):
    """dx from sums instead of a matrix product: right only when d_out == 1."""

    def backward(self, dout: np.ndarray) -> Any:
        super().backward(dout)
        return dout.sum(axis=1, keepdims=True) * self.params["W"].sum(axis=1)


class LinearScaled(Linear):
    """dW seven times too large (a factor no dim can explain)."""

    def backward(self, dout: np.ndarray) -> Any:
        dx = super().backward(dout)
        self.grads["W"] = 7 * self.grads["W"]
        return dx


class LinearNoisy(Linear):
    """dW with a little deterministic noise: no story explains it."""

    def backward(self, dout: np.ndarray) -> Any:
        dx = super().backward(dout)
        g = self.grads["W"]
        wobble = np.cos(np.arange(g.size) * 12.9898).reshape(g.shape)
        self.grads["W"] = g + 1e-4 * np.abs(g).max() * wobble
        return dx


class LinearWrongAxisBias(Linear):
    def backward(self, dout: np.ndarray) -> Any:
        dx = super().backward(dout)
        self.grads["b"] = dout.sum(axis=1)
        return dx


class LinearTransposedDW(Linear):
    def backward(self, dout: np.ndarray) -> Any:
        dx = super().backward(dout)
        self.grads["W"] = self.grads["W"].T.copy()
        return dx


class MSE(Loss):
    """Mean squared error with a planted factor in backward."""

    FACTORS = {"sum-not-mean": "n", "double": 2.0, "half": 0.5}

    def backward(self, dout: np.ndarray) -> np.ndarray:
        factor = self.FACTORS[self.bug or ""]
        if factor == "n":
            factor = self.diff.shape[0]
        return factor * self.diff * (2 * dout / self.diff.size)


class PreviousCache(Linear):
    """backward uses the input of the forward before the latest one."""

    def forward(self, x: np.ndarray) -> Any:
        self.prev = getattr(self, "cur", x)
        self.cur = x
        return super().forward(x)

    def backward(self, dout: np.ndarray) -> Any:
        self.x = self.prev
        return super().backward(dout)
