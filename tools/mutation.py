"""Mutation score of one batchfeed module against its spec files (mutmut 3), not run in CI.

    python tools/mutation.py MODULE [MODULE ...] [--jobs N] [--keep] [--mutant NAME ...]
    tox -e mutation -- loader            # the same in tox's environment (default: all four modules)

MODULE is one of loader, datasets, training, claims (``src/batchfeed/MODULE.py``, or the files it was
split into: SOURCES).

Each module is mutated alone and tested with the spec files that specify it (TARGETS).
The run happens in a scratch copy of the project, ``out/mutation/<module>/`` (git-ignored):
mutmut 3 writes its mutated tree to ``mutants/`` beside its config, and one config per
module keeps the runs apart. Tests run with ``HYPOTHESIS_PROFILE=meta`` (PROFILE; set
HYPOTHESIS_PROFILE to override), one torch thread, ``slow`` tests deselected (pyproject's addopts).

At the end it prints, and writes to ``out/mutation/<module>/report.md``: total / killed /
survived / equivalent mutants and the score killed / (total - equivalent), every surviving
mutant's diff, and the equivalents of ``tools/mutation-equivalents.toml`` that no longer
match (renamed or killed: that file follows the code, see docs/spec-strength.md).
Exit status 0 when the score meets TARGET_SCORE, 1 otherwise.

mutmut 3 mutates the bodies of functions and methods, not module- or class-level code, and
skips functions with a decorator other than ``@staticmethod``/``@classmethod``
(``@property``, ``@functools.cache``, ...): those are not scored.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = ROOT / "tools" / "mutation-equivalents.toml"
TARGET_SCORE = 0.90
#: conftest.py's profile for runs that only need to see a test fail: derandomized (the score is
#: reproducible), 15 examples, no shrinking (a failing example is not minimised).
PROFILE = "meta"

#: module -> the spec files that specify it, and extra pytest arguments for them.
#: Seconds one test may take under mutation before it counts as hung (spec/conftest.py): the
#: slowest selected test takes about 3 s alone, 10 s with two mutmut workers at load 5.
HANG_SECONDS = 30

TARGETS: dict[str, dict] = {
    # TensorLoader: its own tests, and the loader conformance spec run against it; without
    # the three measurements that take 3-13 s each and assert little of the loader (a
    # training run in a subprocess, the shuffling claim's 30 trainings, the C13 throughput)
    # and one test mutmut itself breaks.
    # spec/test_out_of_core.py: TensorLoader serving a dataset that reads whole batches (NpyDataset).
    # spec/test_prefetch.py: reading ahead (loader/prefetch.py); spec/test_block_shuffle.py: a
    # user's sampler through TensorLoader, resumed.
    "loader": {"tests": ["spec/test_loader.py", "spec/conformance/", "spec/test_out_of_core.py",
                         "spec/test_prefetch.py", "spec/test_block_shuffle.py"],
               "args": ["--loader=batchfeed:TensorLoader",
                        # what TensorLoader declares unsupported (map-style datasets, workers): those tests skip
                        "--loader-deviations=spec/loaders/batchfeed-tensorloader.txt",
                        "--deselect=spec/conformance/test_resume.py::test_training_continued_in_a_new_process_ends_bit_identical",
                        "--deselect=spec/conformance/test_shuffling.py::test_claim_shuffling_prevents_learning_order_patterns",
                        "--deselect=spec/test_loader.py::test_claim_feeds_sequentially_and_efficiently",
                        # mutmut's trampolines add stack frames: a warning's stacklevel cannot be checked
                        "--deselect=spec/test_loader.py::test_pin_memory_warnings_point_at_the_line_that_iterates",
                        # segfaults under mutmut's stats collection (reader threads through the
                        # trampolines), never outside it; the same machine without reading ahead
                        # runs in the conformance suite
                        "--deselect=spec/test_prefetch.py::test_resume_state_machine_while_reading_ahead",
                        # a fresh interpreter on the mutated tree without mutmut's harness fails to start
                        "--deselect=spec/test_prefetch.py::test_the_interpreter_exits_cleanly_while_a_read_runs_in_a_torch_operator",
                        "--deselect=spec/test_prefetch.py::test_the_program_exits_cleanly_right_after_reading_ahead"]},
    "datasets": {"tests": ["spec/test_dataset.py"], "args": []},
    # full_batch_gradient is specified in test_memory.py, beside the memory claims (slow, left out).
    # spec/test_accumulate.py: train(accumulate_epoch=True).
    "training": {"tests": ["spec/test_training.py", "spec/test_updates.py", "spec/test_convergence.py",
                           "spec/test_accumulate.py",
                           *(f"spec/test_memory.py::{t}" for t in (
                               "test_accumulated_gradient_equals_the_full_batch_gradient",
                               "test_naive_averaging_of_microbatch_gradients_is_wrong_with_an_uneven_last_batch",
                               "test_naive_averaging_is_exact_only_when_all_batches_are_equal",
                               "test_accumulated_gradient_step_is_one_full_batch_gd_step",
                               "test_accumulated_gradient_with_sum_reduction_is_the_summed_gradient",
                               "test_accumulated_gradient_refuses_what_it_cannot_weight"))],
             "args": []},
    "claims": {"tests": ["spec/test_claims.py"], "args": []},
}

# mutmut's exit-code classes (mutmut.stats.status_by_exit_code), folded into four.
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def _status(code: int | None) -> str:
    from mutmut.stats import status_by_exit_code

    return status_by_exit_code[code]


#: What each target mutates: a module, or the files a module became when it was split (issue 13:
#: TensorLoader is the loader/ package, make_model and evaluate moved from training.py to model.py).
SOURCES = {"loader": ["src/batchfeed/loader/*.py"], "training": ["src/batchfeed/training.py", "src/batchfeed/model.py"]}


def module_paths(module: str) -> list[str]:
    """The source files mutmut mutates for ``module`` (globs allowed)."""
    return SOURCES.get(module, [f"src/batchfeed/{module}.py"])


def prepare(workdir: Path, module: str, target: dict) -> None:
    """A scratch copy of the project with a [tool.mutmut] config for ``module`` only."""
    for name in ("src", "spec", "mutants"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".hypothesis", ".pytest_cache")
    shutil.copytree(ROOT / "src", workdir / "src", ignore=ignore)
    shutil.copytree(ROOT / "spec", workdir / "spec", ignore=ignore)
    shutil.copy2(ROOT / "conftest.py", workdir / "conftest.py")
    missing = [t for t in target["tests"] if not (ROOT / t.partition("::")[0]).exists()]
    tests = [t for t in target["tests"] if t not in missing]
    if missing:
        print(f"note: {', '.join(missing)} not found; running without", file=sys.stderr)
    if not tests:
        raise FileNotFoundError(f"{module}: none of its spec files exists: {', '.join(target['tests'])}")
    config = {
        "source_paths": ["src"],
        "only_mutate": module_paths(module),
        "also_copy": ["spec/", "conftest.py"],
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", *target["args"]],
        "use_git_change_detection": False,
        # mutmut's timeout is multiplier x the tests' call time + constant. Fixture setup (the
        # 30-seed comparison of test_convergence.py) is not in the call time and the machine
        # is shared, hence the constant; the timeouts are listed in the report to be checked.
        "timeout_multiplier": 5.0,
        "timeout_constant": 30.0,
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    (workdir / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + "\n".join(lines) + "\n")


def load_equivalents(module: str) -> dict[str, dict]:
    if not EQUIVALENTS.exists():
        return {}
    data = tomllib.loads(EQUIVALENTS.read_text())
    return {e["mutant"]: e for e in data.get(module, [])}  # kind: "equivalent" (default), "cuda", "mutmut"


def added_lines(diff: str) -> list[str]:
    return [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]


def report(workdir: Path, module: str, target: dict, elapsed: float | None) -> bool:
    os.chdir(workdir)  # mutmut reads its config and mutants/ from the working directory
    from mutmut.configuration import reset_config
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    reset_config()

    codes: dict[str, int | None] = {}
    where: dict[str, str] = {}  # mutant -> the source file it changes
    for pattern in module_paths(module):
        for source in sorted(ROOT.glob(pattern)):
            rel = str(source.relative_to(ROOT))
            meta_path = workdir / "mutants" / f"{rel}.meta"
            if not meta_path.exists():  # a file with nothing mutmut mutates (only constants, a docstring)
                continue
            for name, code in json.loads(meta_path.read_text())["exit_code_by_key"].items():
                codes[name], where[name] = code, rel
    status = {name: _status(code) for name, code in codes.items()}
    equivalents = load_equivalents(module)
    diffs = {name: get_diff_for_mutant(name, path=where[name])
             for name, st in status.items() if name in where and (st not in KILLED or name in equivalents)}

    stale, equivalent, cuda, outside = [], [], [], []
    for name, entry in equivalents.items():
        if name not in status:
            stale.append(f"{name}: no such mutant any more")
        elif status[name] in KILLED:
            stale.append(f"{name}: listed ({entry.get('kind', 'equivalent')}) but killed")
        elif entry["mutation"].strip() not in added_lines(diffs[name]):
            stale.append(f"{name}: now mutates {added_lines(diffs[name])}, the entry says {entry['mutation']!r}")
        else:
            {"cuda": cuda, "mutmut": outside}.get(entry.get("kind", "equivalent"), equivalent).append(name)
    killed = sorted(n for n, st in status.items() if st in KILLED)
    survived = sorted(n for n, st in status.items() if st not in KILLED and n not in equivalent)
    total = len(status)
    score = len(killed) / (total - len(equivalent)) if total > len(equivalent) else 1.0
    cpu_total = total - len(equivalent) - len(cuda)
    by_status: dict[str, int] = {}
    for st in status.values():
        by_status[st] = by_status.get(st, 0) + 1

    import mutmut

    out = [
        f"# Mutation score: {', '.join(module_paths(module))}",
        "",
        f"- tool: mutmut {mutmut.__version__}; HYPOTHESIS_PROFILE={os.environ.get('HYPOTHESIS_PROFILE', PROFILE)}; "
        f"tests: {' '.join(target['tests'])} {' '.join(target['args'])}".rstrip(),
        f"- {datetime.date.today().isoformat()}, {platform.node()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, "
        + ("report only" if elapsed is None else f"run time {elapsed / 60:.1f} min"),
        f"- mutmut's verdicts: {', '.join(f'{k} {v}' for k, v in sorted(by_status.items()))}",
        f"- total {total}, killed {len(killed)}, survived {len(survived)}, equivalent {len(equivalent)}: "
        f"score {len(killed)}/{total - len(equivalent)} = {score:.1%} (target {TARGET_SCORE:.0%})",
        f"- of the survivors, {len(cuda)} need a CUDA device to be observed (listed as kind = \"cuda\"); "
        f"on what a CPU can observe: {len(killed)}/{cpu_total} = {len(killed) / max(cpu_total, 1):.1%}",
        "",
    ]
    if stale:
        out += ["## Stale entries of tools/mutation-equivalents.toml", ""] + [f"- {s}" for s in stale] + [""]
    timeouts = sorted(n for n, st in status.items() if st == "timeout")
    if timeouts:
        out += ["## Timed out (counted as killed)", ""] + [f"- `{n}`" for n in timeouts] + [""]
    out += ["## Survivors a CPU cannot observe (need CUDA)", ""]
    out += [f"- `{n}`: {equivalents[n]['reason']}" for n in cuda] + [""]
    if outside:
        out += ["## Survivors killed by a test mutmut cannot run", ""]
        out += [f"- `{n}`: {equivalents[n]['reason']}" for n in outside] + [""]
    out += ["## Survivors", ""]
    for name in survived:
        if name in cuda or name in outside:
            continue
        out += [f"### {name} ({status[name]})", "", "```diff", diffs[name], "```", ""]
    out += ["## Equivalent", ""] + [f"- `{n}`: {equivalents[n]['reason']}" for n in equivalent]
    text = "\n".join(out) + "\n"
    (workdir / "report.md").write_text(text)
    print(text)
    return score >= TARGET_SCORE and not stale


def run_module(module: str, args: argparse.Namespace) -> bool:
    target = TARGETS[module]
    workdir = ROOT / "out" / "mutation" / module
    start = datetime.datetime.now()
    if not args.report_only:
        saved = workdir.parent / f".{module}-mutants"
        shutil.rmtree(saved, ignore_errors=True)
        if (args.keep or args.mutant) and (workdir / "mutants").exists():
            (workdir / "mutants").rename(saved)
        prepare(workdir, module, target)
        if saved.exists():
            saved.rename(workdir / "mutants")
            # mutmut does not copy the tests again into an existing tree: refresh them.
            for name in ("spec", "conftest.py", "pyproject.toml"):
                src, dst = workdir / name, workdir / "mutants" / name
                if src.is_dir():
                    shutil.copytree(src, dst, dirs_exist_ok=True)
                else:
                    shutil.copy2(src, dst)
        env = {**os.environ, "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", PROFILE),
               "OMP_NUM_THREADS": "1", "BATCHFEED_TEST_THREADS": "1",
               # a test that runs this long has hung (a deadlocked reader thread): end it, killed
               "BATCHFEED_HANG_SECONDS": os.environ.get("BATCHFEED_HANG_SECONDS", str(HANG_SECONDS))}
        env.pop("PYTHONPATH", None)  # mutmut puts the mutated src/ first on sys.path itself
        mutmut = shutil.which("mutmut") or sys.exit("mutmut not found: pip install mutmut==3.8.1")
        names = [m for m in args.mutant if m.startswith(f"batchfeed.{module}.")]
        rc = subprocess.call([mutmut, "run", "--max-children", str(args.jobs), *names], cwd=workdir, env=env)
        if rc != 0:
            print(f"{module}: mutmut run exited with {rc}", file=sys.stderr)
            return False
    elapsed = None if args.report_only else (datetime.datetime.now() - start).total_seconds()
    return report(workdir, module, target, elapsed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="+", choices=sorted(TARGETS), metavar="MODULE",
                        help=f"one or more of {', '.join(TARGETS)}")
    parser.add_argument("--mutant", action="append", default=[],
                        help="test only this mutant (a name from report.md; repeatable); implies --keep")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested in parallel (default 2)")
    parser.add_argument("--keep", action="store_true",
                        help="reuse out/mutation/MODULE/mutants: mutmut re-tests only mutants of changed functions")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report of the last run")
    args = parser.parse_args()
    results = {}
    for module in args.modules:
        cwd = os.getcwd()
        try:
            results[module] = run_module(module, args)
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            results[module] = False
        os.chdir(cwd)
    if len(results) > 1:
        print("\n".join(f"{m}: {'meets' if ok else 'misses'} the target" for m, ok in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
