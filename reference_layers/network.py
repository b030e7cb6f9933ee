"""Whole networks: the Coursera ex4 two-layer classifier and a `Sequential` container."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np

from gradharness import layer

from .activations import ReLU, Tanh, sigmoid
from .linear import Linear


@layer(
    input="m d",
    output="",
    dims={"m": (1, 6), "d": (1, 6), "hidden": (1, 6), "c": (1, 6)},
    hyper={"lam": [0.1, 1.0, 3.0]},
    batch_independent=False,  # the labels are drawn for a fixed batch of m examples
    bias=(),  # the bias weights are columns of Theta1 and Theta2, not separate params
)
class TwoLayerNet:
    """The Coursera ex4 network: its regularized cost as a loss layer.

    ``Theta1`` (hidden, d + 1) and ``Theta2`` (c, hidden + 1) act on inputs with a
    ones column prepended; both layers are sigmoids. The cost is the multi-label
    logistic loss against one-hot labels, averaged over the m examples, plus
    ``lam / (2 m)`` times the squared weights, bias column excluded.
    """

    def __init__(self, m: int, d: int, hidden: int, c: int, lam: float, rng: np.random.Generator) -> None:
        self.lam = float(lam)
        self.labels = rng.integers(0, c, size=m)
        # ex4's randInitializeWeights: uniform in [-0.12, 0.12] breaks the symmetry
        self.params = {
            "Theta1": rng.uniform(-0.12, 0.12, (hidden, d + 1)),
            "Theta2": rng.uniform(-0.12, 0.12, (c, hidden + 1)),
        }
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, X: np.ndarray) -> np.ndarray:
        Theta1, Theta2 = self.params["Theta1"], self.params["Theta2"]
        m = X.shape[0]
        ones = np.ones((m, 1), dtype=X.dtype)
        a1 = np.hstack([ones, X])
        a2 = np.hstack([ones, sigmoid(a1 @ Theta1.T)])
        z3 = a2 @ Theta2.T
        Y = np.eye(Theta2.shape[0], dtype=z3.dtype)[self.labels]
        # -Y log(h) - (1 - Y) log(1 - h) with h = sigmoid(z3), written as
        # log(1 + exp(-+z3)) so that a saturated h never takes log(0)
        cost = np.sum(Y * np.logaddexp(0, -z3) + (1 - Y) * np.logaddexp(0, z3)) / m
        penalty = np.sum(Theta1[:, 1:] ** 2) + np.sum(Theta2[:, 1:] ** 2)
        self.cache = (a1, a2, sigmoid(z3) - Y, Theta1, Theta2)
        return np.asarray(cost + self.lam / (2 * m) * penalty)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        a1, a2, delta3, Theta1, Theta2 = self.cache
        m = a1.shape[0]
        # back through Theta2, dropping the constant ones column, then through the sigmoid
        delta2 = (delta3 @ Theta2)[:, 1:] * a2[:, 1:] * (1 - a2[:, 1:])
        grads = {"Theta1": delta2.T @ a1 / m, "Theta2": delta3.T @ a2 / m}
        for name, Theta in (("Theta1", Theta1), ("Theta2", Theta2)):
            reg = Theta * (self.lam / m)
            reg[:, 0] = 0  # the bias column is not regularized
            self.grads[name] = (grads[name] + reg) * dout
        return delta2 @ Theta1[:, 1:] / m * dout


def _split(key: str, n_layers: int) -> tuple[int, str]:
    """``"2.W"`` -> ``(2, "W")``; a KeyError for anything that names no child."""
    index, dot, name = key.partition(".")
    if not (dot and index.isdigit() and int(index) < n_layers):
        raise KeyError(key)
    return int(index), name


class _Namespaced(MutableMapping):
    """The ``params`` (or ``grads``) of a list of layers under keys ``"<index>.<name>"``.

    Nothing is copied: reading a key reads the child's dict, and assigning one
    writes into the child's dict, where the child's own forward will find it.
    """

    def __init__(self, layers: list[Any], attr: str) -> None:
        self._layers, self._attr = layers, attr

    def _child(self, key: str) -> tuple[dict, str]:
        index, name = _split(key, len(self._layers))
        return getattr(self._layers[index], self._attr), name

    def __getitem__(self, key: str) -> np.ndarray:
        d, name = self._child(key)
        return d[name]

    def __setitem__(self, key: str, value: np.ndarray) -> None:
        d, name = self._child(key)
        d[name] = value

    def __delitem__(self, key: str) -> None:
        d, name = self._child(key)
        del d[name]

    def __iter__(self) -> Iterator[str]:
        for i, child in enumerate(self._layers):
            for name in getattr(child, self._attr):
                yield f"{i}.{name}"

    def __len__(self) -> int:
        return sum(len(getattr(child, self._attr)) for child in self._layers)

    def copy(self) -> dict[str, np.ndarray]:
        return dict(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self)!r})"


class Sequential:
    """Chains object-protocol layers; ``params``/``grads`` are namespaced ``"0.W"``, ``"1.b"``..."""

    def __init__(self, layers: list[Any]) -> None:
        self.layers = list(layers)

    @property
    def params(self) -> _Namespaced:
        return _Namespaced(self.layers, "params")

    @params.setter
    def params(self, value: Mapping[str, np.ndarray]) -> None:
        self._replace("params", value)

    @property
    def grads(self) -> _Namespaced:
        return _Namespaced(self.layers, "grads")

    @grads.setter
    def grads(self, value: Mapping[str, np.ndarray]) -> None:
        self._replace("grads", value)

    def _replace(self, attr: str, value: Mapping[str, np.ndarray]) -> None:
        """``seq.params = {...}``: give every child a new dict holding its share of the keys."""
        shares: list[dict[str, np.ndarray]] = [{} for _ in self.layers]
        for key, array in value.items():
            index, name = _split(key, len(self.layers))
            shares[index][name] = array
        for child, share in zip(self.layers, shares):
            setattr(child, attr, share)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for child in self.layers:
            x = child.forward(x)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        for child in reversed(self.layers):
            dout = child.backward(dout)
        return dout


@layer(
    input="n d_in",
    output="n d_out",
    dims={"d_in": (1, 6), "hidden": (1, 6), "d_out": (1, 6)},
    # no additive bias: 0.b feeds the ReLU and 2.b the tanh. (0.b can even move nothing at
    # all, when the ReLU is dead for the whole batch.)
    bias=(),
)
def MLP(dims: Mapping[str, int], rng: np.random.Generator) -> Sequential:
    """Linear -> ReLU -> Linear -> Tanh, as a `Sequential` (params "0.W", "0.b", "2.W", "2.b")."""
    return Sequential(
        [Linear(dims["d_in"], dims["hidden"], rng), ReLU(), Linear(dims["hidden"], dims["d_out"], rng), Tanh()]
    )
