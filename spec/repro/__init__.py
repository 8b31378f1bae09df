"""Standalone reproductions of the peers' known deviations (spec/loaders/*.txt name them).

Each module, at most 30 lines, builds the peer's loader and torch's DataLoader on the same
input; ``results()`` returns ``(peer, torch)`` and ``python -m spec.repro.<peer>.<name>``
prints them side by side. The docstring's ``Consequence:`` line says what a training run sees.
spec/test_repro.py checks that every difference still holds.
"""
