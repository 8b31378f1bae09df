"""batchfeed: how a PyTorch training loop is fed with data, specified and measured."""

from .datasets import PairDataset, make_seed_data
from .experiments import (
    Comparison,
    batch_size_sweep,
    claim_figures,
    compare,
    gradient_noise_scale,
    order_pattern_experiment,
    run_compare,
    sort_by_label,
)
from .loader import TensorLoader
from .samplers import BlockShuffleSampler
from .sources.csv_convert import convert_csv
from .training import (
    DivergenceError,
    History,
    evaluate,
    full_batch_gradient,
    make_model,
    train_full_batch,
    train_minibatch,
)
from .workers import NamedSampleErrors, seed_worker

__version__ = "0.1.0"

__all__ = [
    "BlockShuffleSampler",
    "Comparison",
    "DivergenceError",
    "History",
    "NamedSampleErrors",
    "PairDataset",
    "TensorLoader",
    "batch_size_sweep",
    "claim_figures",
    "compare",
    "convert_csv",
    "gradient_noise_scale",
    "run_compare",
    "seed_worker",
    "evaluate",
    "full_batch_gradient",
    "make_model",
    "make_seed_data",
    "order_pattern_experiment",
    "sort_by_label",
    "train_full_batch",
    "train_minibatch",
]
