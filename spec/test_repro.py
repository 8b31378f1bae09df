"""The peers' known deviations still hold: every reproduction in spec/repro/ runs and shows the documented difference.

Each deviation declared in spec/loaders/*.txt ends with ``[repro: spec/repro/<peer>/<name>.py]``;
that module's ``results()`` returns ``(peer, torch)`` (or, for resume, ``(resumed,
uninterrupted)``: torch's DataLoader cannot resume). The reproductions of one peer run in one
fresh Python process (Lightning's DDP launch joins a process group and sets torch's threads,
accelerate keeps process-wide state: none of it may reach this test process), and each test
below asserts the difference its deviation's reason describes. A peer that is not installed
skips its tests with the reason (found by ``importlib.util.find_spec``, so the peer is never
imported here). When a peer fixes a deviation, its test here fails together with the strict
xfail in the conformance run: remove both.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPRO_DIR = ROOT / "spec" / "repro"
LOADERS_DIR = ROOT / "spec" / "loaders"
MAX_LINES = 30


def _permutation(order: list[int], n: int) -> bool:
    return sorted(order) == list(range(n))


# --- what each reproduction must show ------------------------------------------------------

def lost_batch(peer, ref):
    """torch delivers every batch before the failing one (samples 0..11 for sample 13, batches of 4); the peer one batch fewer."""
    (seen, err), (ref_seen, ref_err) = peer, ref
    assert ref_seen == list(range(12)) and "sample 13" in ref_err, f"torch's DataLoader: {ref}"
    assert "sample 13" in err, f"the peer's error does not name sample 13: {err}"
    assert seen == ref_seen[:-4], f"the peer delivered {seen}, expected one batch fewer than torch's {ref_seen}"


def empty_epoch_raises(peer, ref):
    assert ref == [], f"torch's DataLoader gave {ref} for an epoch with no full batch and drop_last=True"
    assert isinstance(peer, str) and peer.startswith("ValueError"), f"the peer gave {peer!r}, expected ValueError"


def _unbatched_fails_with(kind):
    def check(peer, ref):
        assert ref == [[[4], i] for i in range(3)], f"torch's DataLoader with batch_size=None gave {ref}"
        assert isinstance(peer, str) and peer.startswith(kind), f"the peer gave {peer!r}, expected {kind}"
    check.__name__ = f"unbatched_raises_{kind}"
    return check


def sampler_dropped_unbatched(peer, ref):
    assert ref == [4, [0, 4, 8, 12]], f"torch's DataLoader, batch_size=None, sampler [0, 4, 8, 12]: {ref}"
    assert peer == [13, list(range(13))], f"the peer should drop the sampler and serve all 13 samples: {peer}"


def empty_iterable_raises(peer, ref):
    assert ref == [], f"torch's DataLoader over an empty IterableDataset gave {ref}"
    assert isinstance(peer, str) and peer.startswith("ValueError"), f"the peer gave {peer!r}, expected ValueError"


def non_tensor_batches_refused(peer, ref):
    assert ref == [["sample 0", "sample 1"], ["sample 2", "sample 3"]], f"torch's DataLoader with a str collate_fn: {ref}"
    assert isinstance(peer, str) and peer.startswith("TypeError") and "tensors" in peer, f"the peer gave {peer!r}"


def no_len(peer, ref):
    assert ref == [3, 3], f"torch's DataLoader over 10 samples, batches of 4: [len, batches] {ref}"
    assert isinstance(peer[0], str) and peer[0].startswith("TypeError") and peer[1] == 3, f"WebLoader: {peer}"


def generator_ignored(peer, ref):
    assert all(_permutation(o, 10) for o in peer + ref), f"not permutations of 0..9: {peer}, {ref}"
    assert len({tuple(o) for o in ref}) == 3, f"torch's DataLoader: seeds 0, 1, 2 should give 3 orders: {ref}"
    assert len({tuple(o) for o in peer}) == 1, f"the peer should give one order for every seed: {peer}"


def batch_sampler_dropped(peer, ref):
    assert ref == [5, [[5], [5], [5], [5], [3]]], f"torch's DataLoader with BatchSampler(23 samples, 5): {ref}"
    assert peer == [23, [[]] * 23], f"the peer should yield 23 unbatched samples: {peer}"


def plain_batch_sampler_refused(peer, ref):
    assert ref == [[3, 1], [0, 4, 2, 9], [7]], f"torch's DataLoader should yield the batch_sampler's batches: {ref}"
    assert isinstance(peer, str) and peer.startswith("TypeError") and "sampler" in peer, f"the peer gave {peer!r}"


def floats_become_float32(peer, ref):
    assert ref == ["torch.float64", [0.1, 1.1]], f"torch's DataLoader over the floats 0.1, 1.1: {ref}"
    assert peer[0] == "torch.float32" and peer[1] != ref[1], f"the peer should give float32 values: {peer}"
    assert all(abs(a - b) < 1e-6 for a, b in zip(peer[1], ref[1])), f"the same values, rounded to float32: {peer}"


def workers_change_order(peer, ref):
    assert ref[0] == ref[1], f"torch's DataLoader: workers 0 and 2 should give the same first batch: {ref}"
    assert peer[0] != peer[1], f"the peer gave the same first batch with 0 and 2 workers: {peer}"


def other_permutation(peer, ref):
    (order, draw), (ref_order, ref_draw) = peer, ref
    assert _permutation(order, 10) and _permutation(ref_order, 10), f"not permutations of 0..9: {peer}, {ref}"
    assert order != ref_order, f"the peer shuffled as torch's DataLoader does from the same generator: {order}"
    assert draw != ref_draw, "the generator ended where torch's DataLoader leaves it"


def later_epochs_differ(resumed, uninterrupted):
    assert all(_permutation(e, 23) for e in resumed + uninterrupted), "every epoch is still a permutation of 0..22"
    diff = [e for e, (a, b) in enumerate(zip(resumed, uninterrupted), 1) if a != b]
    assert diff == [1, 2], f"epochs after the resume that differ from the uninterrupted run: {diff}, expected [1, 2]"


def resumed_epoch_not_a_permutation(resumed, uninterrupted):
    assert _permutation(uninterrupted, 23), f"the uninterrupted epoch is not a permutation: {uninterrupted}"
    assert resumed[:5] == uninterrupted[:5], "the batch served before the save is the same in both runs"
    assert not _permutation(resumed, 23), f"the resumed epoch should lose and repeat samples: {resumed}"


def failed_batch_skipped(peer, expected):
    assert expected == list(range(20))
    assert peer == [i for i in expected if i // 4 != 2], f"the peer should skip the failed batch 8..11 exactly: {peer}"


def three_tensors_refused(peer, ref):
    assert ref == [[4, 2], [4], [4, 3]], f"torch's DataLoader over TensorDataset(a, b, c): batch shapes {ref}"
    assert isinstance(peer, str) and peer.startswith("TypeError") and "3 tensors" in peer, f"the peer gave {peer!r}"


#: (reproduction, the loader whose deviation it reproduces, the batchfeed.adapters function passed
#: to results(), or None for the reproduction's own default, the check)
CASES = [
    ("accelerate/batch_before_error_lost", "batchfeed.adapters:accelerate_prepared", None, lost_batch),
    ("accelerate/batch_before_error_lost", "batchfeed.adapters:accelerate_shard", "accelerate_shard", lost_batch),
    ("accelerate/batch_before_error_lost", "batchfeed.adapters:accelerate_dispatcher", "accelerate_dispatcher", lost_batch),
    ("accelerate/batch_before_error_lost", "batchfeed.adapters:accelerate_skip_first_batches",
     "accelerate_skip_first_batches", lost_batch),
    ("accelerate/dispatcher_empty_epoch", "batchfeed.adapters:accelerate_dispatcher", None, empty_epoch_raises),
    ("accelerate/dispatcher_unbatched", "batchfeed.adapters:accelerate_dispatcher", None, _unbatched_fails_with("RuntimeError")),
    ("accelerate/prepared_unbatched_sampler_len", "batchfeed.adapters:accelerate_prepared", None, sampler_dropped_unbatched),
    ("accelerate/empty_iterable_dataset", "batchfeed.adapters:accelerate_prepared", None, empty_iterable_raises),
    ("accelerate/empty_iterable_dataset", "batchfeed.adapters:accelerate_dispatcher", "accelerate_dispatcher",
     empty_iterable_raises),
    ("accelerate/empty_iterable_dataset", "batchfeed.adapters:accelerate_skip_first_batches", "accelerate_skip_first_batches",
     empty_iterable_raises),
    ("accelerate/dispatcher_non_tensor_batches", "batchfeed.adapters:accelerate_dispatcher", None, non_tensor_batches_refused),
    ("accelerate/skip_first_batches_unbatched", "batchfeed.adapters:accelerate_skip_first_batches", None,
     _unbatched_fails_with("TypeError")),
    ("lightning/ddp_ignores_generator", "batchfeed.adapters:fabric_ddp_world1", None, generator_ignored),
    ("lightning/ddp_drops_batch_sampler", "batchfeed.adapters:fabric_ddp_world1", None, batch_sampler_dropped),
    ("lightning/ddp_refuses_plain_batch_sampler", "batchfeed.adapters:fabric_ddp_world1", None, plain_batch_sampler_refused),
    ("webdataset/no_len", "batchfeed.adapters:webdataset_webloader", None, no_len),
    ("torchdata/workers_change_order", "torchdata.stateful_dataloader:StatefulDataLoader", None, workers_change_order),
    ("torchdata/other_permutation_than_dataloader", "torchdata.stateful_dataloader:StatefulDataLoader", None,
     other_permutation),
    ("torchdata/shared_generator_resume", "torchdata.stateful_dataloader:StatefulDataLoader", None, later_epochs_differ),
    ("torchdata/own_sampler_not_restored", "torchdata.stateful_dataloader:StatefulDataLoader", None,
     resumed_epoch_not_a_permutation),
    ("torchdata/failed_batch_skipped_on_resume", "torchdata.stateful_dataloader:StatefulDataLoader", None, failed_batch_skipped),
    ("batchfeed/npy_three_tensors", "spec.npy_loader:memmap", None, three_tensors_refused),
    ("monai/unbatched_collates", "monai.data:DataLoader", None, _unbatched_fails_with("RuntimeError")),
    ("torch_geometric/unbatched_collates", "torch_geometric.loader:DataLoader", None, _unbatched_fails_with("RuntimeError")),
    ("torch_geometric/floats_become_float32", "torch_geometric.loader:DataLoader", None, floats_become_float32),
]


def _case_id(case) -> str:
    repro, loader, _, _ = case
    return f"{repro}@{loader.rpartition(':')[2]}"


# --- running the reproductions of one peer in a fresh process --------------------------------

_RUNNER = """
import importlib, json, sys
from batchfeed import adapters
out = {}
for key, module, adapter in json.loads(sys.argv[1]):
    repro = importlib.import_module(module)
    out[key] = repro.results(getattr(adapters, adapter)) if adapter else repro.results()
print("\\n@@results " + json.dumps(out))
"""


@cache
def peer_results(peer: str) -> dict:
    """Every case of ``peer`` (a folder of spec/repro), run in one fresh process: {case id: (peer, torch)}."""
    calls = [[_case_id(c), "spec.repro." + c[0].replace("/", "."), c[2]] for c in CASES if c[0].split("/")[0] == peer]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(calls)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the {peer} reproductions failed to run:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("@@results "))
    return json.loads(line.removeprefix("@@results "))


#: A spec/repro folder -> the batchfeed extra that brings its peer (the folder's name where they agree).
EXTRAS = {"torch_geometric": "geometric", "torchdata": "resume", "batchfeed": "test"}


def _require_peer(peer: str) -> None:
    if importlib.util.find_spec(peer) is None:
        pytest.skip(f"{peer} is not installed (pip install 'batchfeed[{EXTRAS.get(peer, peer)}]'): "
                    "its reproductions cannot run")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_reproduction_shows_the_deviation(case):
    """The reproduction's results show the difference its deviation's reason describes."""
    repro, _, _, check = case
    peer = repro.split("/")[0]
    _require_peer(peer)
    peer_side, torch_side = peer_results(peer)[_case_id(case)]
    check(peer_side, torch_side)


# --- the reproductions and the declarations agree -------------------------------------------

def _repro_files() -> list[Path]:
    return sorted(p for p in REPRO_DIR.glob("*/*.py") if p.name != "__init__.py")


def declared_repros() -> dict[tuple[str, str], list[str]]:
    """{(reproduction, loader): [the deviation lines naming it]} from every spec/loaders/*.txt."""
    out: dict[tuple[str, str], list[str]] = {}
    for path in sorted(LOADERS_DIR.glob("*.txt")):
        text = path.read_text()
        loader = re.search(r"--loader=(\S+)", text)
        assert loader, f"{path.name}: its header does not say which --loader= it declares for"
        for line in text.splitlines():
            entry, _, reason = line.partition("#")
            if not entry.strip() or entry.startswith("unsupported:"):
                continue
            named = re.search(r"\[repro: spec/repro/(\S+)\.py\]\s*$", reason)
            assert named, f"{path.name}: a deviation without '[repro: spec/repro/<peer>/<name>.py]': {line}"
            out.setdefault((named.group(1), loader.group(1)), []).append(entry.split()[0])
    return out


def test_every_declared_deviation_has_a_checked_reproduction():
    """Each [repro: ...] in spec/loaders/ names an existing file and a case above for that loader, and each case is declared."""
    declared = declared_repros()
    cases = {(c[0], c[1]) for c in CASES}
    missing_files = sorted(r for r, _ in declared if not (REPRO_DIR / f"{r}.py").is_file())
    assert not missing_files, f"deviations name reproductions that do not exist: {missing_files}"
    assert sorted(set(declared) - cases) == [], f"declared but never checked here: {sorted(set(declared) - cases)}"
    assert sorted(cases - set(declared)) == [], f"checked here but declared by no loader: {sorted(cases - set(declared))}"
    files = {str(p.relative_to(REPRO_DIR).with_suffix("")) for p in _repro_files()}
    assert files == {r for r, _ in declared}, f"reproductions no deviation names: {sorted(files - {r for r, _ in declared})}"


@pytest.mark.parametrize("path", _repro_files(), ids=lambda p: str(p.relative_to(REPRO_DIR)))
def test_reproduction_is_short_and_says_its_consequence(path):
    """At most 30 lines; a docstring with a 'Consequence:' line; results() and a __main__ block that prints."""
    text = path.read_text()
    lines = text.splitlines()
    assert len(lines) <= MAX_LINES, f"{path.name}: {len(lines)} lines, at most {MAX_LINES}"
    tree = ast.parse(text)
    doc = ast.get_docstring(tree) or ""
    assert re.search(r"^Consequence: \S", doc, re.M), f"{path.name}: no 'Consequence: ...' line in its docstring"
    assert any(isinstance(n, ast.FunctionDef) and n.name == "results" for n in tree.body), f"{path.name}: no results()"
    assert 'if __name__ == "__main__":' in text and "print(" in text, f"{path.name}: does not print when run"
