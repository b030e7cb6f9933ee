"""Normalization layers with a learned scale ``gamma`` and shift ``beta``."""
from __future__ import annotations

import numpy as np

from gradharness import layer


def batchnorm_reference(layer: "BatchNorm1d", x: np.ndarray) -> np.ndarray:
    """What BatchNorm1d computes, written out plainly (the known-value oracle of its spec)."""
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    return layer.params["gamma"] * (x - mean) / np.sqrt(var + layer.eps) + layer.params["beta"]


def layernorm_reference(layer: "LayerNorm", x: np.ndarray) -> np.ndarray:
    """What LayerNorm computes, written out plainly (the known-value oracle of its spec)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return layer.params["gamma"] * (x - mean) / np.sqrt(var + layer.eps) + layer.params["beta"]


@layer(
    input="n d",
    output="n d",
    # n >= 3: a batch of 2 normalizes to (-1, 1) whatever x is, and its dx is then an
    # eps-sized residue of cancelling terms that float32 cannot resolve
    dims={"n": (3, 6), "d": (1, 6)},
    hyper={"eps": [1e-5]},
    bias=("beta",),
    batch_independent=False,  # every row is normalized with statistics of the whole batch
    reference=batchnorm_reference,
)
class BatchNorm1d:
    """Batch normalization in training mode: each feature is normalized over the batch axis."""

    def __init__(self, d: int, eps: float = 1e-5) -> None:
        self.eps = float(eps)
        self.params = {"gamma": np.ones(d), "beta": np.zeros(d)}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        gamma, beta = self.params["gamma"], self.params["beta"]
        xc = x - x.mean(axis=0)
        inv_std = 1 / np.sqrt((xc**2).mean(axis=0) + self.eps)
        xhat = xc * inv_std
        self.cache = (xhat, inv_std, gamma)
        return gamma * xhat + beta

    def backward(self, dout: np.ndarray) -> np.ndarray:
        xhat, inv_std, gamma = self.cache
        self.grads["gamma"] = (dout * xhat).sum(axis=0)
        self.grads["beta"] = dout.sum(axis=0)
        dxhat = dout * gamma
        # the mean and variance depend on every row: these two terms are their share
        return inv_std * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))


@layer(
    input="n d",
    output="n d",
    # d >= 3: over one feature the output is beta whatever x is, over two it is
    # beta -+ gamma, and dx is an eps-sized residue that float32 cannot resolve
    dims={"d": (3, 6)},
    hyper={"eps": [1e-5]},
    bias=("beta",),
    reference=layernorm_reference,
)
class LayerNorm:
    """Layer normalization: each row is normalized over its last axis."""

    def __init__(self, d: int, eps: float = 1e-5) -> None:
        self.eps = float(eps)
        self.params = {"gamma": np.ones(d), "beta": np.zeros(d)}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        gamma, beta = self.params["gamma"], self.params["beta"]
        xc = x - x.mean(axis=-1, keepdims=True)
        inv_std = 1 / np.sqrt((xc**2).mean(axis=-1, keepdims=True) + self.eps)
        xhat = xc * inv_std
        self.cache = (xhat, inv_std, gamma)
        return gamma * xhat + beta

    def backward(self, dout: np.ndarray) -> np.ndarray:
        xhat, inv_std, gamma = self.cache
        d = xhat.shape[-1]
        # gamma and beta are shared by every row: sum over all leading axes
        self.grads["gamma"] = (dout * xhat).reshape(-1, d).sum(axis=0)
        self.grads["beta"] = dout.reshape(-1, d).sum(axis=0)
        dxhat = dout * gamma
        return inv_std * (
            dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)
        )
