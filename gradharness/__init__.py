"""gradharness: property-based gradient checks for hand-written layers.

    report = gradharness.check_layer(make, "n d_in", dims={"d_in": (1, 8), "d_out": (1, 8)})
    report.passed, report.failures[0].check, report.failures[0].message
"""
from ._core import GradientCheckError, assert_layer, check_layer
from ._declare import Declaration, declaration_of, declared_in, layer
from ._errors import InvalidArgument
from ._report import CheckStat, Failure, Report
from ._strategies import Example
from ._targets import pytest_checks
from .adapters import LayerProtocolError, adapt, check_function
from .checks import REGISTRY as _REGISTRY

__version__ = "0.1.0"

# tracebacks and reprs name the public path, not the private module
for _cls in (InvalidArgument, GradientCheckError, Report, Failure, CheckStat, Example, Declaration):
    _cls.__module__ = __name__
del _cls


def list_checks() -> dict[str, str]:
    """Every check's name and the one line that says what it catches, in report order."""
    from .checks import CHECK_ORDER

    return {name: _REGISTRY[name].doc for name in CHECK_ORDER}


__all__ = [
    "CheckStat", "Declaration", "Example", "Failure", "GradientCheckError", "InvalidArgument",
    "LayerProtocolError", "Report", "__version__", "adapt", "assert_layer", "check_function", "check_layer",
    "declaration_of", "declared_in", "layer", "list_checks", "pytest_checks",
]
