"""The source of a user's layer module (one correct and one buggy declared layer), written by
the CLI and plugin tests into pytester's directory."""

LAYERS = '''
import numpy as np
import gradharness


@gradharness.layer(input="n d_in", output="n d_out", bias=("b",))
class Good:
    def __init__(self, d_in, d_out, rng):
        self.params = {"W": rng.standard_normal((d_in, d_out)), "b": np.zeros(d_out)}
        self.grads = {}

    def forward(self, x):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout):
        self.grads = {"W": self.x.T @ dout, "b": dout.sum(axis=0)}
        return dout @ self.params["W"].T


@gradharness.layer(input="n d_in", output="n d_out", bias=("b",))
class FirstSampleBias(Good):
    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["b"] = dout[0]
        return dx
'''
