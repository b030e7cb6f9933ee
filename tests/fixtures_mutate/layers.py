"""Small layers whose mutants show each outcome of the mutation runner.

Each is declared at module level (source mutation re-runs a class definition in a copy
of its module's namespace) and kept tiny so the tests stay fast.
"""
from __future__ import annotations

import numpy as np

import gradharness as gh


@gh.layer(input="n d_in", output="n d_out", dims={"n": (1, 4), "d_in": (1, 4), "d_out": (1, 4)}, bias=("b",))
class Dense:
    """out = x @ W + b."""

    def __init__(self, d_in: int, d_out: int, rng: np.random.Generator) -> None:
        self.params = {"W": rng.standard_normal((d_in, d_out)), "b": np.zeros(d_out)}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.cache = (x, self.params["W"])
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, W = self.cache
        self.grads["W"] = x.T @ dout
        self.grads["b"] = dout.sum(axis=0)
        return dout @ W.T


@gh.layer(input="n d", output="n d", dims={"n": (1, 4), "d": (2, 4)})
class ShiftedSoftmax:
    """Softmax over the last axis; the max shift changes nothing but the round-off (an equivalent mutant)."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        self.out = e / e.sum(axis=-1, keepdims=True)
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        s = self.out
        return s * (dout - (dout * s).sum(axis=-1, keepdims=True))


@gh.layer(input="n d", output="n d", elementwise=True, checks=("forward-shape", "backward-shape"))
class ShapesOnlyDouble:
    """out = 2 x, declared with only the shape checks: a configuration blind to every value bug."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        return 2 * x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return 2 * dout


@gh.layer(input="n d", output="n d", elementwise=True)
class Spin:
    """out = 1.5 x, with a countdown loop in backward that sub-to-add turns into a hang."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * 1.5

    def backward(self, dout: np.ndarray) -> np.ndarray:
        k = 3
        while k > 0:
            k -= 1
        return dout * 1.5


@gh.layer(input="n d", output="n d", elementwise=True)
class InitCrash:
    """A constructor whose only reduction, mutated, raises for every input: an incompetent mutant."""

    def __init__(self, d: int) -> None:
        self.scale = float(np.ones(d).sum(axis=0)) / d
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * self.scale

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.scale


@gh.layer(input="n d", output="n d", dims={"n": (3, 5), "d": (2, 4)}, bias=("beta",), batch_independent=False)
class Norm:
    """Batch normalization: a cache of same-shaped arrays (swap-cached) and a dropped-mean term."""

    def __init__(self, d: int) -> None:
        self.params = {"gamma": np.ones(d), "beta": np.zeros(d)}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        xc = x - x.mean(axis=0)
        inv_std = 1 / np.sqrt((xc**2).mean(axis=0) + 1e-5)
        xhat = xc * inv_std
        self.cache = (xhat, inv_std, self.params["gamma"])
        return self.params["gamma"] * xhat + self.params["beta"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        xhat, inv_std, gamma = self.cache
        self.grads["gamma"] = (dout * xhat).sum(axis=0)
        self.grads["beta"] = dout.sum(axis=0)
        dxhat = dout * gamma
        return inv_std * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))


#: a layer class with no source file behind it, as a compiled op or a generated class would be
_COMPILED = """
class CompiledScale:
    def __init__(self, d, rng):
        self.params = {"s": rng.standard_normal(d), "b": rng.standard_normal(d)}
        self.grads = {}

    def forward(self, x):
        self.x = x
        return x * self.params["s"] + self.params["b"]

    def backward(self, dout):
        self.grads["s"] = (dout * self.x).sum(axis=0)
        self.grads["b"] = dout.sum(axis=0)
        return dout * self.params["s"]
"""
_ns: dict = {}
exec(compile(_COMPILED, "<compiled>", "exec"), _ns)  # noqa: S102 - a class without a source file
_ns["CompiledScale"].__module__ = __name__
CompiledScale = gh.layer(input="n d", output="n d", dims={"n": (1, 4), "d": (1, 4)}, bias=("b",))(_ns["CompiledScale"])


@gh.layer(input="n d", output="n d", elementwise=True)
class Broken:
    """A wrong backward: the original fails its own checks, so its mutants cannot be judged."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * 3.0

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * 2.0


def plain_dense(dims, rng):
    """An undeclared factory: its own code has nothing to mutate (runtime mutations)."""
    return Dense(dims["d_in"], dims["d_out"], rng)
