#!/usr/bin/env python3
"""The conformance matrix: spec/conformance run against every loader, written to docs/conformance.md.

For each loader (torch's DataLoader, torchdata's StatefulDataLoader, batchfeed's TensorLoader and
every adapter of batchfeed.adapters) it runs, in a fresh process each::

    pytest spec/conformance --loader=LOADER --loader-deviations=spec/loaders/FILE -p no:cacheprovider --junitxml=...

with HYPOTHESIS_PROFILE=ci (derandomized: the same examples every run) and OMP_NUM_THREADS=1
(the spec's one torch thread, which Lightning's DDP launch would otherwise raise to cores /
processes). From the JUnit XML it counts, per conformance module (behaviour area) and loader:
pass, deviation (a declared strict xfail that failed as declared), unsupported (skipped for a
declared unsupported feature), other skips (no CUDA device) and fail (anything else, an XPASS
included). Then every deviation: the loaders and tests that declare it, its reproduction's
printed output (``python -m spec.repro.<peer>.<name>``) and its consequence for training.

    python tools/conformance_matrix.py                       # writes docs/conformance.md
    python tools/conformance_matrix.py --out /tmp/c.md --check docs/conformance.md

A block between ``<!-- torch-drift:begin -->`` and ``<!-- torch-drift:end -->`` in the file written
to (another tool's section) is kept verbatim, at the end of the regenerated file; ``--check``
compares it too, like everything else between the stable markers. ``--only LOADER`` reruns one
row for trying (it does not write docs/conformance.md unless ``--out`` says so).

``--check FILE`` compares the parts between ``<!-- stable -->`` markers (matrix counts, failures,
declarations, deviations and their reproductions' output; not dates, machine or timings) with
FILE's and exits 1 with a diff when they differ. Exit status 1 also when a loader has failures
or a run ends without a JUnit report.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = "spec/conformance"

#: (name in the matrix, --loader, deviations file or None); torch's DataLoader declares
#: resume unsupported built in (batchfeed.pytest_plugin.BUILTIN_DECLARATIONS).
LOADERS = [
    ("torch DataLoader", "torch.utils.data:DataLoader", None),
    ("torchdata StatefulDataLoader", "torchdata.stateful_dataloader:StatefulDataLoader",
     "spec/loaders/torchdata-stateful-dataloader.txt"),
    ("batchfeed TensorLoader", "batchfeed:TensorLoader", "spec/loaders/batchfeed-tensorloader.txt"),
    ("accelerate prepare()", "batchfeed.adapters:accelerate_prepared", "spec/loaders/accelerate-prepared.txt"),
    ("accelerate DataLoaderShard", "batchfeed.adapters:accelerate_shard", "spec/loaders/accelerate-shard.txt"),
    ("accelerate DataLoaderDispatcher", "batchfeed.adapters:accelerate_dispatcher",
     "spec/loaders/accelerate-dispatcher.txt"),
    ("accelerate skip_first_batches(…, 0)", "batchfeed.adapters:accelerate_skip_first_batches",
     "spec/loaders/accelerate-skip-first-batches.txt"),
    ("Fabric, 1 CPU device", "batchfeed.adapters:fabric_single_cpu", "spec/loaders/lightning-fabric-single-cpu.txt"),
    ("Fabric, ddp, world size 1 (gloo)", "batchfeed.adapters:fabric_ddp_world1",
     "spec/loaders/lightning-fabric-ddp-world1.txt"),
    ("webdataset WebLoader", "batchfeed.adapters:webdataset_webloader", "spec/loaders/webdataset-webloader.txt"),
    ("webdataset WebLoader + with_length", "batchfeed.adapters:webdataset_webloader_with_length",
     "spec/loaders/webdataset-webloader-with-length.txt"),
    ("streaming StreamingDataLoader", "streaming:StreamingDataLoader", "spec/loaders/streaming-dataloader.txt"),
    # Not yet declared (issue 21, left for the next session): batchfeed.adapters:torchdata_nodes
    # (51 failures) and batchfeed.adapters:accelerate_stateful (44), see docs/conformance.md.
    ("PyG DataLoader", "torch_geometric.loader:DataLoader", "spec/loaders/torch-geometric-dataloader.txt"),
    ("MONAI DataLoader", "monai.data:DataLoader", "spec/loaders/monai-dataloader.txt"),
]
PACKAGES = ["torch", "torchdata", "accelerate", "lightning", "webdataset", "mosaicml-streaming", "torch-geometric",
            "monai", "hypothesis", "pytest"]
OUTCOMES = ["pass", "deviation", "unsupported", "skip", "fail"]
STABLE, END_STABLE = "<!-- stable -->", "<!-- /stable -->"
KEEP_BEGIN, KEEP_END = "<!-- torch-drift:begin -->", "<!-- torch-drift:end -->"


def kept_block(text: str) -> str:
    """The torch-drift block of an existing file, markers included ('' when it has none)."""
    begin, end = text.find(KEEP_BEGIN), text.find(KEEP_END)
    return text[begin:end + len(KEEP_END)] if 0 <= begin < end else ""


def with_kept_block(text: str, block: str) -> str:
    """``text`` with ``block`` placed inside the stable section, just before its end marker."""
    if not block:
        return text
    i = text.rfind(END_STABLE)
    return text[:i] + block + "\n\n" + text[i:]


@dataclass
class Run:
    name: str
    loader: str
    file: str | None
    seconds: float = 0.0
    exit_code: int = 0
    counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # area -> outcome -> n
    failures: list[str] = field(default_factory=list)
    error: str = ""


def outcome(case: ET.Element) -> tuple[str, str]:
    """(outcome, message) of one JUnit testcase."""
    for child in case:
        if child.tag in ("failure", "error"):
            message = child.get("message") or child.tag
            return "fail", message.splitlines()[0] if message.strip() else child.tag
        if child.tag == "skipped":
            message = child.get("message") or ""
            if child.get("type") == "pytest.xfail":
                return "deviation", message
            if message.startswith("declared unsupported: "):
                return "unsupported", message
            return "skip", message
    return "pass", ""


def run_loader(name: str, loader: str, file: str | None) -> Run:
    run = Run(name, loader, file)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", SPEC, f"--loader={loader}", "-p", "no:cacheprovider", "-q",
               f"--junitxml={junit}"] + ([f"--loader-deviations={file}"] if file else [])
        env = {**os.environ, "HYPOTHESIS_PROFILE": "ci", "OMP_NUM_THREADS": "1"}
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        run.seconds, run.exit_code = time.perf_counter() - start, proc.returncode
        if not junit.is_file():
            run.error = f"pytest exited {proc.returncode} without a JUnit report: {(proc.stderr or proc.stdout)[-2000:]}"
            return run
        for case in ET.parse(junit).iter("testcase"):
            area = case.get("classname", "").rpartition(".")[2].removeprefix("test_")
            kind, message = outcome(case)
            run.counts[area][kind] += 1
            if kind == "fail":
                run.failures.append(f"{case.get('classname')}::{case.get('name')}: {message[:200]}")
    return run


# --- the declarations files -----------------------------------------------------------------

@dataclass
class Declared:
    unsupported: dict[str, str]  # feature -> reason
    deviations: list[tuple[str, str, str]]  # (test id, reason, repro path or "")


def read_declarations(file: str | None, loader: str) -> Declared:
    out = Declared({}, [])
    if file is None:  # what the plugin declares for a loader run without a file
        from batchfeed.pytest_plugin import BUILTIN_DECLARATIONS

        out.unsupported.update(BUILTIN_DECLARATIONS.get(loader, {}))
        return out
    for line in (ROOT / file).read_text().splitlines():
        entry, _, reason = line.partition("#")
        entry, reason = entry.strip(), reason.strip()
        if not entry:
            continue
        if entry.startswith("unsupported:"):
            for feature in entry.removeprefix("unsupported:").split(","):
                out.unsupported[feature.strip()] = reason
            continue
        repro = re.search(r"\[repro: (\S+)\]", reason)
        out.deviations.append((entry.split()[0], re.sub(r"\s*\[repro: \S+\]", "", reason),
                               repro.group(1) if repro else ""))
    return out


def repro_output(path: str) -> tuple[str, str, str]:
    """(title, consequence, printed output) of a reproduction, run as ``python -m``."""
    doc = ast.get_docstring(ast.parse((ROOT / path).read_text())) or ""
    title = doc.split("Consequence:")[0].strip().replace("\n", " ")
    consequence = doc.partition("Consequence:")[2].strip().replace("\n", " ")
    module = path.removesuffix(".py").replace("/", ".")
    proc = subprocess.run([sys.executable, "-m", module], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    printed = proc.stdout.rstrip() if proc.returncode == 0 else f"(exit {proc.returncode})\n{proc.stderr[-1500:]}"
    return title, consequence, printed


# --- the document ---------------------------------------------------------------------------

def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def render(runs: list[Run], seconds: float, repros: dict[str, tuple[str, str, str]]) -> str:
    areas = sorted({a for r in runs for a in r.counts})
    out = ["# Conformance matrix", "",
           "Generated by `python tools/conformance_matrix.py`; do not edit by hand. Each loader ran "
           "`pytest spec/conformance --loader=LOADER --loader-deviations=spec/loaders/FILE` "
           "(HYPOTHESIS_PROFILE=ci, OMP_NUM_THREADS=1, one fresh process per loader).", "",
           "## This run", "",
           f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
           f"- machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
           f"python {platform.python_version()}",
           f"- versions: {', '.join(f'{p} {version(p)}' for p in PACKAGES)}",
           f"- the matrix took {seconds:.0f} s in all, the reproductions included; each loader's run: "
           + ", ".join(f"{r.name} {r.seconds:.0f} s" for r in runs), "",
           STABLE, "",
           "## Matrix", "",
           "Each cell: **pass / deviation / unsupported / fail** tests of that conformance module "
           "(`spec/conformance/test_<area>.py`). A deviation is a declared strict xfail that failed as "
           "declared; unsupported, a test skipped for a feature the loader declares unsupported; fail, "
           "anything else that did not pass (an unexpected pass of a declared deviation included). "
           "Other skips (no CUDA device on this machine) are in the last column.", "",
           "| loader | " + " | ".join(areas) + " | total | other skips |",
           "|---|" + "---|" * (len(areas) + 2)]
    for r in runs:
        total = sum((r.counts[a] for a in areas), Counter())
        cells = ["/".join(str(r.counts[a][k]) for k in ("pass", "deviation", "unsupported", "fail")) for a in areas]
        tot = "/".join(str(total[k]) for k in ("pass", "deviation", "unsupported", "fail"))
        out.append(f"| {r.name} (`{r.loader}`) | " + " | ".join(cells) + f" | **{tot}** | {total['skip']} |")
    failed = [r for r in runs if r.failures or r.error]
    out += ["", "## Failures", ""]
    if not failed:
        out.append("None: every loader's run is green with its declarations.")
    for r in failed:
        out.append(f"- **{r.name}**: {r.error or ''}")
        out += [f"  - `{f}`" for f in r.failures]

    declared = {r.name: read_declarations(r.file, r.loader) for r in runs}
    out += ["", "## Declared unsupported", ""]
    for r in runs:
        d = declared[r.name]
        where = f"`{r.file}`" if r.file else "built in"
        by_reason: dict[str, list[str]] = defaultdict(list)
        for feature, reason in d.unsupported.items():
            by_reason[reason].append(f"`{feature}`")
        items = "; ".join(f"{', '.join(features)}: {reason}" for reason, features in by_reason.items()) or "nothing"
        out.append(f"- **{r.name}** ({where}): {items}")

    by_repro: dict[str, list[tuple[str, str, str]]] = defaultdict(list)  # repro -> (loader, test id, reason)
    for r in runs:
        for test, reason, repro in declared[r.name].deviations:
            by_repro[repro].append((r.name, test, reason))
    out += ["", "## Deviations", "",
            "Each deviation once, with the loaders and tests that declare it, what its reproduction "
            "prints (the peer beside torch's DataLoader on the same input; for resume, beside the "
            "uninterrupted run, since torch's DataLoader cannot resume) and what it means for training.", ""]
    for repro in sorted(by_repro):
        title, consequence, printed = repros[repro] if repro else ("(no reproduction named)", "", "")
        out += [f"### {title}", ""]
        if repro:
            out += [f"Reproduction: [`{repro}`](../{repro}), run as `python -m {repro.removesuffix('.py').replace('/', '.')}`:",
                    "", "```text", printed, "```", "", f"**Consequence for training**: {consequence}", ""]
        loaders: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for name, test, reason in by_repro[repro]:
            loaders[name].append((test, reason))
        out.append("Declared by:")
        out.append("")
        for name, tests in loaders.items():
            reasons = sorted({reason for _, reason in tests})
            out.append(f"- {name}, {len(tests)} test{'s' if len(tests) != 1 else ''}: {' / '.join(reasons)}")
            out += [f"  - `{t}`" for t, _ in tests]
        out.append("")
    out += [END_STABLE, ""]
    return "\n".join(out)


def stable(text: str) -> list[str]:
    """The lines between the stable markers: what --check compares."""
    begin, end = text.find(STABLE), text.find(END_STABLE)
    if begin < 0 or end < 0:
        raise SystemExit("conformance_matrix: no stable section (<!-- stable --> ... <!-- /stable -->) in the file to check against")
    return text[begin:end].splitlines()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "conformance.md", help="where to write (default docs/conformance.md)")
    p.add_argument("--check", type=Path, default=None, metavar="FILE",
                   help="fail (exit 1) when the matrix, failures, declarations or deviations differ from FILE's")
    p.add_argument("--only", action="append", default=None, metavar="LOADER",
                   help="run only this --loader value (repeatable); for trying, not for docs/conformance.md")
    a = p.parse_args(argv)
    if a.check is not None and not a.check.is_file():
        p.error(f"--check {a.check}: no such file")
    chosen = [entry for entry in LOADERS if a.only is None or entry[1] in a.only]
    if not chosen:
        p.error(f"--only {a.only}: none of the known loaders ({', '.join(e[1] for e in LOADERS)})")
    start = time.perf_counter()
    runs = []
    for name, loader, file in chosen:
        print(f"conformance_matrix: {name} ({loader}) ...", end=" ", flush=True)
        runs.append(run_loader(name, loader, file))
        r = runs[-1]
        total = sum(r.counts.values(), Counter())
        print(f"{r.seconds:.0f} s, " + ", ".join(f"{total[k]} {k}" for k in OUTCOMES) + (f"; {r.error}" if r.error else ""),
              flush=True)
    named = sorted({repro for _, loader, file in chosen for _, _, repro in read_declarations(file, loader).deviations if repro})
    repros = {repro: repro_output(repro) for repro in named}
    previous = a.out.read_text() if a.out.is_file() else (a.check.read_text() if a.check is not None else "")
    text = with_kept_block(render(runs, time.perf_counter() - start, repros), kept_block(previous))
    want = stable(a.check.read_text()) if a.check is not None else None  # read before --out may overwrite it
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(f"conformance_matrix: wrote {a.out}")
    status = 1 if any(r.failures or r.error for r in runs) else 0
    if want is not None:
        got = stable(text)
        if want != got:
            sys.stdout.writelines(line + "\n" for line in difflib.unified_diff(want, got, str(a.check), str(a.out), lineterm=""))
            print(f"conformance_matrix: {a.out} differs from {a.check} (matrix, declarations or deviations)")
            return 1
        print(f"conformance_matrix: the matrix and deviations match {a.check}")
    return status


if __name__ == "__main__":
    sys.exit(main())
