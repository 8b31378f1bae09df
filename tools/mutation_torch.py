"""Mutation score of torch's own data-loading code against spec/conformance (mutmut 3), not in CI.

    python tools/mutation_torch.py check                 # build the copy; it must pass as DataLoader does
    python tools/mutation_torch.py run [--sample 400] [--seed 20] [--jobs 2]
    python tools/mutation_torch.py report                # rewrite the report of the last run
    python tools/mutation_torch.py run --mutant NAME     # re-test some mutants of the sample (repeatable)
    python tools/mutation_torch.py run --resume          # test what a stopped run left untested
    tox -e mutation-torch                                # check, then run, in tox's environment

The five files of the installed torch that make a DataLoader (FILES: ``dataloader.py``,
``sampler.py``, ``_utils/collate.py``, ``_utils/worker.py``, ``_utils/fetch.py``) are copied into
a scratch folder, ``out/mutation-torch/src/torchcopy_data/`` (git-ignored, never on the
repository's import path), as a package of their own: the copy's DataLoader uses the copy's
samplers, collate, worker loop and fetchers, and torch's internals otherwise (its
``_utils.pin_memory``, ``signal_handling``, ``python_exit_status``; REWRITES lists each change
to the source). The spec runs against it as ``--loader=torchcopy_data.dataloader:DataLoader``,
with the declarations torch's DataLoader has built in (``unsupported: resume``), written to a
file.

``check`` runs spec/conformance against torch's DataLoader and against the copy and requires
the same verdict for every test. ``run`` mutates the five copies with mutmut, draws a seeded
random sample of the mutants (``random.Random(seed).sample`` of the sorted names), tests only
those, and writes ``out/mutation-torch/report.md`` with tools/mutation.py's report (equivalents:
``tools/mutation-torch-equivalents.toml``).

Mutants of functions that run only in DataLoader's worker processes would have no tests for
mutmut (its coverage is recorded in the pytest process): tools/mutation_torch_hits.py adds
the workers' hits.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mutation  # noqa: E402  tools/mutation.py: its report and hang guard

ROOT = mutation.ROOT
WORKDIR = ROOT / "out" / "mutation-torch"
PACKAGE = "torchcopy_data"
LOADER = f"{PACKAGE}.dataloader:DataLoader"
EQUIVALENTS = ROOT / "tools" / "mutation-torch-equivalents.toml"
TARGET_SCORE = 0.85
SAMPLE, SEED = 400, 20
FILES = ["dataloader.py", "sampler.py", "_utils/collate.py", "_utils/worker.py", "_utils/fetch.py"]
TESTS = ["spec/conformance/"]
#: Left out under mutation, as tools/mutation.py leaves them out for TensorLoader: two claims'
#: measurements (10 s and 2 s of the suite's 24 s) that assert little of the loader: the
#: shuffling claim's 30 trainings, and a speed-up ratio of workers that a loaded machine blurs.
DESELECT = ["spec/conformance/test_shuffling.py::test_claim_shuffling_prevents_learning_order_patterns",
            "spec/conformance/test_parallel.py::test_claim_workers_speed_up_training_when_samples_cost_work"]
#: (file, torch's text, the copy's text): each must occur in the installed torch's file, or the
#: copy is refused (a torch whose files changed needs these looked at again).
REWRITES = [
    ("dataloader.py", "from torch.utils.data import _utils\n", f"from {PACKAGE} import _utils\n"),
    ("dataloader.py", "from torch.utils.data.sampler import (", f"from {PACKAGE}.sampler import ("),
    # the copy's worker loop builds the copy's fetchers
    ("_utils/worker.py", "from torch.utils.data import _DatasetKind",
     f"from {PACKAGE}.dataloader import _DatasetKind"),
    # torch.utils.data.get_worker_info() (what datasets, collate and the sharding init call)
    # reads torch's module: the copy's worker sets it too
    ("_utils/worker.py", "            id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset\n        )\n",
     "            id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset\n        )\n"
     "        _torch_worker._worker_info = _worker_info  # pragma: no mutate\n"),
    ("_utils/worker.py", "from torch._utils import ExceptionWrapper\n",
     "from torch._utils import ExceptionWrapper\nfrom torch.utils.data._utils import worker as _torch_worker\n"),
]
#: The copy's _utils package: its three copied modules, torch's _utils for every other name.
UTILS_INIT = '''"""torch.utils.data._utils for the copy: collate, fetch and worker copied, the rest torch's."""
import torch.utils.data._utils as _torch_utils
from torch.utils.data._utils import HAS_NUMPY, IS_WINDOWS, MP_STATUS_CHECK_INTERVAL, pin_memory, signal_handling

from . import collate, fetch, worker


def __getattr__(name):  # python_exit_status is read live: torch's atexit hook sets it
    return getattr(_torch_utils, name)
'''


def torch_data_dir() -> Path:
    import torch.utils.data

    return Path(torch.utils.data.__file__).parent


def build_copy(dest: Path) -> None:
    """The five files as package ``torchcopy_data`` under ``dest`` (REWRITES applied)."""
    src = torch_data_dir()
    pkg = dest / PACKAGE
    shutil.rmtree(pkg, ignore_errors=True)
    (pkg / "_utils").mkdir(parents=True)
    texts = {name: (src / name).read_text() for name in FILES}
    for name, old, new in REWRITES:
        if old not in texts[name]:
            raise SystemExit(f"torch {torch_version()}: {name} has no {old!r}; update REWRITES")
        texts[name] = texts[name].replace(old, new)
    for name, text in texts.items():
        (pkg / name).write_text(text)
    (pkg / "__init__.py").write_text(f'"""A copy of torch {torch_version()}\'s data-loading code, for mutation."""\n')
    (pkg / "_utils" / "__init__.py").write_text(UTILS_INIT)


def torch_version() -> str:
    import torch

    return torch.__version__


def declarations_file(dest: Path) -> Path:
    """The declarations torch's DataLoader has built in (plugin_loader.BUILTIN_DECLARATIONS), as a file."""
    from batchfeed.loaders import DEFAULT_LOADER
    from batchfeed.plugin_loader import BUILTIN_DECLARATIONS

    path = dest / "torchcopy-dataloader.txt"
    lines = [f"unsupported: {feature}  # as {DEFAULT_LOADER}: {reason}"
             for feature, reason in BUILTIN_DECLARATIONS[DEFAULT_LOADER].items()]
    path.write_text("# what torch's DataLoader declares built in, for its copy\n" + "\n".join(lines) + "\n")
    return path


def env_for_tests() -> dict[str, str]:
    return {**os.environ, "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", mutation.PROFILE),
            "OMP_NUM_THREADS": "1", "BATCHFEED_TEST_THREADS": "1",
            "BATCHFEED_HANG_SECONDS": os.environ.get("BATCHFEED_HANG_SECONDS", str(mutation.HANG_SECONDS))}


def verdicts(loader_args: list[str], pythonpath: Path | None, junit: Path) -> dict[str, str]:
    """Each conformance test's outcome (passed, failed, skipped: reason, xfailed) for one loader."""
    env = env_for_tests()
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    subprocess.call([sys.executable, "-m", "pytest", *TESTS, "-q", "-p", "no:cacheprovider",
                     f"--junitxml={junit}", *loader_args], cwd=ROOT, env=env)
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kids = {k.tag: k for k in case}
        if "skipped" in kids:
            msg = kids["skipped"].get("message", "")
            out[name] = "xfailed" if kids["skipped"].get("type") == "pytest.xfail" else "skipped: " + ":".join(msg.split(":")[:2])
        else:
            out[name] = "failed" if ("failure" in kids or "error" in kids) else "passed"
    return out


def check() -> bool:
    """The unmutated copy gets the verdict torch's DataLoader gets, test by test."""
    build_copy(WORKDIR / "src")
    decl = declarations_file(WORKDIR)
    torch_run = verdicts([], None, WORKDIR / "junit-torch.xml")
    copy_run = verdicts([f"--loader={LOADER}", f"--loader-deviations={decl}"], WORKDIR / "src", WORKDIR / "junit-copy.xml")
    differ = sorted(t for t in torch_run.keys() | copy_run.keys() if torch_run.get(t) != copy_run.get(t))
    for t in differ:
        print(f"differs: {t}: torch {torch_run.get(t)}, copy {copy_run.get(t)}")
    counts = {v: list(torch_run.values()).count(v) for v in set(torch_run.values())}
    print(f"check: {len(torch_run)} tests, {counts}; {len(differ)} differ between DataLoader and its copy")
    return not differ and bool(torch_run)


def prepare() -> None:
    """out/mutation-torch/: the copy as src/, the spec, a [tool.mutmut] config mutating the copy only."""
    for name in ("src", "spec", "mutants"):
        shutil.rmtree(WORKDIR / name, ignore_errors=True)
    WORKDIR.mkdir(parents=True, exist_ok=True)
    build_copy(WORKDIR / "src")
    decl = declarations_file(WORKDIR)
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", ".pytest_cache")
    shutil.copytree(ROOT / "spec", WORKDIR / "spec", ignore=ignore)
    shutil.copy2(ROOT / "conftest.py", WORKDIR / "conftest.py")
    shutil.copy2(ROOT / "tools" / "mutation_torch_hits.py", WORKDIR / "torchcopy_hits.py")
    config = {
        "source_paths": ["src"],
        "only_mutate": [f"src/{PACKAGE}/{name}" for name in FILES],
        "also_copy": ["spec/", "conftest.py", "torchcopy_hits.py", decl.name],
        "pytest_add_cli_args_test_selection": TESTS,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "torchcopy_hits",
                                f"--loader={LOADER}", f"--loader-deviations={decl.name}",
                                *(f"--deselect={t}" for t in DESELECT)],
        "use_git_change_detection": False,
        "timeout_multiplier": 5.0,
        "timeout_constant": 30.0,
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    (WORKDIR / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + "\n".join(lines) + "\n")


def all_mutants() -> dict[str, str]:
    """Every mutant of the copy (mutmut's name -> the file it changes), from mutmut's .meta files."""
    out = {}
    for name in FILES:
        meta = WORKDIR / "mutants" / "src" / PACKAGE / f"{name}.meta"
        if meta.exists():
            out.update({m: f"src/{PACKAGE}/{name}" for m in json.loads(meta.read_text())["exit_code_by_key"]})
    return out


def sample_of(names: list[str], size: int, seed: int) -> list[str]:
    """The seeded sample: ``random.Random(seed).sample`` of the sorted names (all when size is 0)."""
    names = sorted(names)
    return names if not size or size >= len(names) else sorted(random.Random(seed).sample(names, size))


def mutmut_run(names: list[str], jobs: int) -> int:
    mutmut = shutil.which("mutmut") or sys.exit("mutmut not found: pip install mutmut==3.8.1")
    env = env_for_tests()
    env.pop("PYTHONPATH", None)  # mutmut puts the mutated src/ first on sys.path itself
    return subprocess.call([mutmut, "run", "--max-children", str(jobs), *names], cwd=WORKDIR, env=env)


def run(args: argparse.Namespace) -> bool:
    start = datetime.datetime.now()
    if not (args.mutant or args.resume):
        prepare()
        # generates every mutant and mutmut's per-test coverage; tests the first mutant of fetch.py's functions
        if mutmut_run([f"{PACKAGE}._utils.fetch.*__mutmut_1"], args.jobs) != 0:
            return False
    names = sample_of(list(all_mutants()), args.sample, args.seed)
    (WORKDIR / "sample.json").write_text(json.dumps({"seed": args.seed, "size": args.sample, "total": len(all_mutants()),
                                                     "names": names}, indent=1))
    todo = args.mutant or names
    if args.resume:  # the sample's mutants a stopped run left untested
        codes = {}
        for name in FILES:
            meta = WORKDIR / "mutants" / "src" / PACKAGE / f"{name}.meta"
            codes.update(json.loads(meta.read_text())["exit_code_by_key"])
        todo = [n for n in names if codes.get(n) is None]
    if args.mutant or args.resume:  # mutmut does not copy the tests again into an existing tree: refresh them
        shutil.copytree(ROOT / "spec", WORKDIR / "mutants" / "spec", dirs_exist_ok=True)
    print(f"{len(all_mutants())} mutants; sample of {len(names)} (seed {args.seed}); testing {len(todo)}")
    if mutmut_run(todo, args.jobs) != 0:
        return False
    return report((datetime.datetime.now() - start).total_seconds())


def load_equivalents() -> dict[str, dict]:
    import tomllib

    if not EQUIVALENTS.exists():
        return {}
    return {e["mutant"]: e for e in tomllib.loads(EQUIVALENTS.read_text()).get("torch", [])}


def location(name: str, path: str, diff: str) -> str:
    """``file:line`` of the first line a mutant changes, in the unmutated copy."""
    import ast

    func = name.rpartition("__mutmut_")[0].rpartition(".")[2]  # xǁClassǁmethod or x_function
    mangled = func.removeprefix("xǁ").split("ǁ") if func.startswith("xǁ") else [func.removeprefix("x_")]
    tree = ast.parse((WORKDIR / path).read_text())
    nodes = tree.body
    node = None
    for part in [p for p in mangled if p]:
        node = next((n for n in nodes if getattr(n, "name", None) == part), None)
        if node is None:
            return path
        nodes = node.body
    m = re.search(r"^@@ -(\d+)", diff, re.M)
    if node is None or m is None:
        return path
    offset, removed = int(m.group(1)), ""
    for line in diff.split(m.group(0), 1)[1].splitlines()[1:]:
        if line.startswith("-"):
            removed = line[1:].strip()
            break
        offset += 1
    guess = node.lineno - 1 + offset
    # mutmut's function text may leave out comment blocks: find the removed line itself, nearest the guess
    source = (WORKDIR / path).read_text().splitlines()
    hits = [i + 1 for i in range(node.lineno - 1, node.end_lineno) if removed and source[i].strip() == removed]
    return f"{path.removeprefix('src/')}:{min(hits, key=lambda h: abs(h - guess)) if hits else guess}"


def report(elapsed: float | None) -> bool:
    """out/mutation-torch/report.md: the sample's counts, score, survivors' diffs, equivalents."""
    os.chdir(WORKDIR)  # mutmut reads its config and mutants/ from the working directory
    from mutmut.configuration import reset_config
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    reset_config()
    sample = json.loads((WORKDIR / "sample.json").read_text())
    where, codes = all_mutants(), {}
    for name in FILES:
        meta = WORKDIR / "mutants" / "src" / PACKAGE / f"{name}.meta"
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    unchecked = [n for n in sample["names"] if codes.get(n) is None]  # not tested yet (a run under way, stopped)
    status = {n: mutation._status(codes[n]) for n in sample["names"] if codes.get(n) is not None}
    listed = {n: e for n, e in load_equivalents().items() if n in status}
    diffs = {n: get_diff_for_mutant(n, path=where[n]) for n, st in status.items() if st not in mutation.KILLED}
    stale = [f"{n}: listed as {e.get('kind', 'equivalent')} but {status[n]}" for n, e in listed.items()
             if status[n] in mutation.KILLED and e.get("kind") != "hole"]
    stale += [f"{n}: now mutates {mutation.added_lines(diffs[n])}" for n, e in listed.items()
              if n in diffs and e["mutation"].strip() not in (mutation.added_lines(diffs[n]) or [""])]
    kind = {n: listed[n].get("kind", "equivalent") if n in listed else "not classified" for n in diffs}
    equivalent = sorted(n for n in diffs if kind[n] == "equivalent")
    outside = sorted(n for n in diffs if kind[n] == "outside")
    killed = sorted(n for n, st in status.items() if st in mutation.KILLED)
    survived = sorted(n for n in diffs if n not in equivalent)
    score = len(killed) / max(len(status) - len(equivalent), 1)
    reach = len(killed) / max(len(status) - len(equivalent) - len(outside), 1)
    by_status: dict[str, int] = {}
    for st in status.values():
        by_status[st] = by_status.get(st, 0) + 1
    by_kind = {k: sum(1 for n in survived if kind[n] == k) for k in sorted({kind[n] for n in survived})}
    holes_killed = sorted(n for n, e in listed.items() if e.get("kind") == "hole" and status[n] in mutation.KILLED)
    import mutmut

    out = [f"# Mutation score: torch {torch_version()}'s data-loading code against spec/conformance", "",
           f"- files: {', '.join(FILES)} of torch/utils/data, copied as {PACKAGE} (tools/mutation_torch.py); "
           f"loader {LOADER}",
           f"- mutmut {mutmut.__version__}; HYPOTHESIS_PROFILE={os.environ.get('HYPOTHESIS_PROFILE', mutation.PROFILE)}; "
           f"sample: {len(status) + len(unchecked)} of {sample['total']} mutants, seed {sample['seed']}",
           f"- {datetime.date.today().isoformat()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
           + ("report only" if elapsed is None else f"run time {elapsed / 60:.1f} min"),
           f"- mutmut's verdicts: {', '.join(f'{k} {v}' for k, v in sorted(by_status.items()))}",
           f"- tested {len(status)}, killed {len(killed)}, survived {len(survived)}, equivalent {len(equivalent)}: "
           f"**score {len(killed)}/{len(status) - len(equivalent)} = {score:.1%}** (target {TARGET_SCORE:.0%})"
           + (f"; {len(unchecked)} of the sample not tested yet" if unchecked else ""),
           f"- the survivors by kind: {', '.join(f'{k} {v}' for k, v in by_kind.items())}; without the "
           f"{len(outside)} outside what a loader under --loader runs: {len(killed)}/"
           f"{len(status) - len(equivalent) - len(outside)} = {reach:.1%}",
           f"- holes listed in tools/mutation-torch-equivalents.toml and now killed: {len(holes_killed)}", ""]
    if stale:
        out += ["## Stale entries of tools/mutation-torch-equivalents.toml", ""] + [f"- {x}" for x in stale] + [""]
    out += ["## Survivors", ""]
    for n in survived:
        why = f"{kind[n]}: {listed[n]['reason']}" if n in listed else kind[n]
        out += [f"### {n} ({status[n]}) {location(n, where[n], diffs[n])}", "", f"- {why}", "",
                "```diff", diffs[n], "```", ""]
    out += ["## Equivalent", ""] + [f"- `{n}` {location(n, where[n], diffs[n])}: {listed[n]['reason']}" for n in equivalent]
    out += ["", "## Holes now killed", ""] + [f"- `{n}`: {listed[n]['reason']}" for n in holes_killed]
    text = "\n".join(out) + "\n"
    (WORKDIR / "report.md").write_text(text)
    print(text)
    return score >= TARGET_SCORE and not stale and not unchecked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["check", "run", "report"])
    parser.add_argument("--sample", type=int, default=SAMPLE, help=f"mutants drawn (default {SAMPLE}; 0: all)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"the sample's seed (default {SEED})")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested in parallel (default 2)")
    parser.add_argument("--mutant", action="append", default=[], help="re-test only this mutant (repeatable)")
    parser.add_argument("--resume", action="store_true", help="test the sample's mutants a stopped run left untested")
    args = parser.parse_args()
    if args.command == "check":
        return 0 if check() else 1
    if args.command == "run":
        return 0 if run(args) else 1
    return 0 if report(None) else 1


if __name__ == "__main__":
    sys.exit(main())
