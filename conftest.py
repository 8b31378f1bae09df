"""Repo-level pytest setup: the batchfeed plugin and the hypothesis profiles.

Pick a profile with HYPOTHESIS_PROFILE=ci|dev|thorough (default dev). CI uses ci.
"""

import os

from hypothesis import Phase, settings

pytest_plugins = ["batchfeed.pytest_plugin", "pytester"]

settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True, max_examples=60)
settings.register_profile("dev", deadline=None, max_examples=40)
settings.register_profile("thorough", deadline=None, max_examples=1000)
# Used by spec/meta when it runs the suite against broken loaders: a few examples and no
# shrinking are enough to see a test fail, and keep the meta run fast.
settings.register_profile(
    "meta", derandomize=True, deadline=None, database=None, max_examples=15,
    phases=[Phase.explicit, Phase.generate],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_configure(config):
    """Spec runs use one intra-op thread unless BATCHFEED_TEST_THREADS says otherwise.

    The spec's models are tiny: on a loaded 2-core machine a Linear(3, 2) backward pass took
    20 ms with torch's default 2 threads and 0.3 ms with one. Benchmark runs
    (--benchmark-only) keep torch's default so throughput is measured as users get it.
    """
    import torch

    if not config.getoption("benchmark_only", default=False):
        torch.set_num_threads(int(os.environ.get("BATCHFEED_TEST_THREADS", "1")))
