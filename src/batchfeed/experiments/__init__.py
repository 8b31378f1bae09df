"""The tutorial's experiment, done properly: the same data, the same initial weights,
full-batch vs mini-batch gradient descent, per epoch, per update and per second; the
figures the claims ledger decides C2, C3, C4 and C15 from; repeats over seeds; a
batch-size sweep fitted with McCandlish et al.'s model; the gradient noise scale.

The CLI, the spec and the claims ledger all call these functions; there is no second
copy of the experiment anywhere.
"""

from ..setup import sort_by_label
from .compare import Comparison, LoaderFactory, compare
from .figures import (
    REPORTED_CLAIMS,
    ClaimResult,
    MethodSummary,
    Series,
    Summary,
    claim_figures,
    claim_results,
    roughness,
    strictly_decreasing,
    summarize,
)
from .memory import measure_memory, run_method
from .order import order_pattern_experiment
from .run import CompareRun, run_compare, total_work
from .sweep import (
    NoiseFit,
    NoiseScale,
    Sweep,
    SweepPoint,
    batch_size_sweep,
    fit_noise_model,
    gradient_noise_scale,
    steps_to_target,
)

__all__ = [
    "REPORTED_CLAIMS",
    "Series",
    "Summary",
    "ClaimResult",
    "CompareRun",
    "Comparison",
    "LoaderFactory",
    "MethodSummary",
    "NoiseFit",
    "NoiseScale",
    "Sweep",
    "SweepPoint",
    "batch_size_sweep",
    "claim_figures",
    "claim_results",
    "compare",
    "fit_noise_model",
    "gradient_noise_scale",
    "measure_memory",
    "order_pattern_experiment",
    "roughness",
    "run_compare",
    "run_method",
    "sort_by_label",
    "steps_to_target",
    "strictly_decreasing",
    "summarize",
    "total_work",
]
