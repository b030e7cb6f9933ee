"""Inverted dropout with a mask that is fixed for a given layer instance."""
from __future__ import annotations

import numpy as np

from gradharness import layer


def dropout_reference(layer: "Dropout", x: np.ndarray) -> np.ndarray:
    """What Dropout computes: the layer's fixed mask, survivors scaled by 1 / (1 - p)."""
    keep = np.random.default_rng(layer.seed).random(x.shape) >= layer.p
    return np.where(keep, x / (1 - layer.p), 0.0)


@layer(
    input="n d",
    output="n d",
    hyper={"p": [0.1, 0.5]},
    reference=dropout_reference,
    elementwise=True,
    batch_independent=False,  # the mask is drawn for the whole input shape
)
class Dropout:
    """Zeroes each unit with probability ``p`` and scales the rest by ``1 / (1 - p)``."""

    def __init__(self, p: float, rng: np.random.Generator) -> None:
        self.p = float(p)
        # keep a seed, not a generator: every forward of a given shape then draws the same
        # mask, so the layer is a deterministic function that numerical derivatives can probe
        self.seed = int(rng.integers(2**63))
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        keep = np.random.default_rng(self.seed).random(x.shape) >= self.p
        # scaling at train time (inverted dropout) leaves inference a plain identity
        self.mask = keep.astype(x.dtype) / (1 - self.p)
        return x * self.mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.mask
