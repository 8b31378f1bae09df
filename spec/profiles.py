"""The spec's hypothesis profiles, registered once whichever way the suite runs (from the
repository's conftest, or as the installed package ``batchfeed conform`` runs).

Pick one with HYPOTHESIS_PROFILE=ci|dev|thorough (default dev); CI uses ci.
"""

import os

from hypothesis import Phase, settings

PROFILES = {
    "ci": dict(derandomize=True, deadline=None, database=None, print_blob=True, max_examples=60),
    "dev": dict(deadline=None, max_examples=40),
    "thorough": dict(deadline=None, max_examples=1000),
    # spec/meta runs the suite against broken loaders: a few examples and no shrinking are
    # enough to see a test fail, and keep the meta run fast.
    "meta": dict(derandomize=True, deadline=None, database=None, max_examples=15,
                 phases=[Phase.explicit, Phase.generate]),
}


def register() -> None:
    """Register the profiles (once) and load HYPOTHESIS_PROFILE's."""
    for name, kwargs in PROFILES.items():
        settings.register_profile(name, **kwargs)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
