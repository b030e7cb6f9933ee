"""Bug injection: mutate a layer, run its checks on every mutant, report which checks catch which bugs.

    report = gradharness.mutate.mutate(reference_layers.Linear)     # or "reference_layers", a module, a list
    print(report.format())                  # score and a mutants x checks table
    report.write_json("mutation.json")      # Stryker mutation-testing-report-schema v2
    report.write_html("mutation.html")      # self-contained HTML: heat map, diffs, kill messages

    test_linear_mutants = gradharness.mutate.pytest_mutants(Linear)  # one pytest item per mutant

Source mutations rewrite one site of the layer's own code (see `list_mutators()`); layers
without usable source get runtime mutations that wrap the built object.
"""
from .operators import SOURCE_OPERATORS
from .runner import (
    Baseline,
    Budget,
    LayerResult,
    Mutant,
    MutantResult,
    MutationReport,
    Sensitivity,
    list_mutators,
    mutant_layer,
    mutants_of,
    mutate,
    pytest_mutants,
    run_one,
)
from .runtime import RUNTIME_OPERATORS

__all__ = [
    "RUNTIME_OPERATORS", "SOURCE_OPERATORS", "Baseline", "Budget", "LayerResult", "Mutant", "MutantResult",
    "MutationReport", "Sensitivity", "list_mutators", "mutant_layer", "mutants_of", "mutate", "pytest_mutants",
    "run_one",
]
