"""Correct reference layers: the examples users copy and the harness's default target.

Every class follows the object protocol (``params``, ``grads``, ``forward``,
``backward``) and carries its `check_layer` options in a ``@layer`` declaration.

linear       Linear, OctaveLinear
activations  ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, LogSoftmax
losses       SoftmaxCrossEntropy, MSELoss
norm         BatchNorm1d, LayerNorm
conv         Conv2d, MaxPool2d, AvgPool2d
embedding    Embedding
dropout      Dropout
recurrent    RNN, LSTM
attention    Attention
network      TwoLayerNet, Sequential, MLP (a declared Sequential: Linear, ReLU, Linear, Tanh)
"""
from .activations import LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .attention import Attention
from .conv import AvgPool2d, Conv2d, MaxPool2d
from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear, OctaveLinear
from .losses import MSELoss, SoftmaxCrossEntropy
from .network import MLP, Sequential, TwoLayerNet
from .norm import BatchNorm1d, LayerNorm
from .recurrent import LSTM, RNN

# in the order the CLI reports them: simple to composite
__all__ = [  # noqa: RUF022
    "Linear", "OctaveLinear",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
    "SoftmaxCrossEntropy", "MSELoss",
    "BatchNorm1d", "LayerNorm",
    "Conv2d", "MaxPool2d", "AvgPool2d",
    "Embedding", "Dropout",
    "RNN", "LSTM", "Attention",
    "TwoLayerNet", "Sequential", "MLP",
]
