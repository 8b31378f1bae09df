"""``batchfeed conform MODULE:CALLABLE``: the conformance part of the specification against a
loader, from an installed batchfeed (no clone needed), with a report.

It runs the installed suite (the package ``batchfeed_spec``) under pytest in a fresh process,
from the suite's own folder and configuration, so nothing in the folder it is started from
changes the run. The exit status is pytest's: 0 only when every test passed, or skipped for a
feature the loader's deviations file declares unsupported, or failed as a declared known
deviation. It needs pytest, hypothesis and Pillow (``pip install "batchfeed[conform]"``); without
one it names it and exits 2.

Test ids are spelled as in a clone, ``spec/conformance/test_<area>.py::test_name[params]``,
everywhere: the suite runs from a scratch folder where ``spec`` is the installed suite, so
pytest's own output, the report and a declarations file use the same id, and an id can be passed
after ``--`` to run just that test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from .argtypes import OneLineParser, loader, output_file

__all__ = ["main", "outcomes", "render"]

OUTCOMES = ("pass", "known deviation", "unsupported", "skipped", "fail")
#: What the installed suite imports beyond batchfeed's own dependencies: module -> distribution.
NEEDS = {"pytest": "pytest", "hypothesis": "hypothesis", "PIL": "pillow"}
INSTALL = 'pip install "batchfeed[conform]"'
SUITE_PATH = "spec/conformance"


def missing_dependencies() -> list[str]:
    """The distributions the suite needs that are not installed (found without importing them)."""
    return [dist for module, dist in NEEDS.items() if importlib.util.find_spec(module) is None]


def shipped_deviations() -> dict[str, Path]:
    """The declaration files that come with batchfeed (spec/loaders/*.txt), by name."""
    import batchfeed_spec

    return {p.stem: p for p in sorted((Path(batchfeed_spec.__file__).parent / "loaders").glob("*.txt"))}


def _deviations(text: str) -> Path:
    """A declaration file: a path, or the name of one that comes with batchfeed (e.g. torchdata-stateful-dataloader)."""
    path = Path(text)
    if path.is_file():
        return path
    shipped = shipped_deviations()
    if text in shipped:
        return shipped[text]
    raise argparse.ArgumentTypeError(f"no such file: {text!r} (the files batchfeed ships: {', '.join(shipped)})")


def build_parser(prog: str = "batchfeed conform") -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog, description=__doc__.split("\n\n")[0].replace("``", ""),
                      epilog="Arguments after -- go to pytest (e.g. -- -x -k shuffl).")
    p.add_argument("loader", type=loader, metavar="MODULE:CALLABLE",
                   help="the loader under test, called with torch DataLoader's keywords")
    p.add_argument("--deviations", type=_deviations, metavar="FILE|NAME",
                   help="what the loader declares: 'unsupported: FEATURE, ...  # reason' and "
                        "'<test id> [raises=Exception]  # reason' lines (README: Check your own loader); or the "
                        "name of a file batchfeed ships, e.g. batchfeed-tensorloader, torchdata-stateful-dataloader")
    p.add_argument("--report", type=output_file, metavar="OUT.md|OUT.json",
                   help="write every behaviour's outcome, with the versions, as Markdown or JSON")
    return p


def outcomes(junit: Path) -> list[dict[str, str]]:
    """Each test of the run: ``{"id", "area", "outcome", "reason"}`` from pytest's JUnit XML."""
    rows = []
    for case in ET.parse(junit).iter("testcase"):
        classname = case.get("classname", "")
        module = classname.rpartition(".")[2]
        row = {"id": f"{test_path(classname)}::{case.get('name')}", "area": module.removeprefix("test_"),
               "outcome": "pass", "reason": ""}
        for child in case:
            message = (child.get("message") or "").strip()
            if child.tag in ("failure", "error"):
                row.update(outcome="fail", reason=message.splitlines()[0] if message else child.tag)
            elif child.tag == "skipped" and child.get("type") == "pytest.xfail":
                row.update(outcome="known deviation", reason=message.removeprefix("known deviation: "))
            elif child.tag == "skipped":
                reason = message.removeprefix("Skipped: ")
                row.update(outcome="unsupported" if reason.startswith("declared unsupported:") else "skipped",
                           reason=reason)
        rows.append(row)
    return rows


def test_path(classname: str) -> str:
    """A JUnit classname (``spec.conformance.test_batching``) as the path a test id starts with."""
    parts = classname.split(".")
    if "conformance" in parts:
        parts = parts[parts.index("conformance"):]
    return "/".join(["spec", *parts]) + ".py"


def versions(loader_spec: str) -> dict[str, str]:
    """torch's, batchfeed's, the loader's package's and the libraries it wraps (an adapter's ``wraps``)."""
    from .loaders import resolve

    top = loader_spec.partition(":")[0].split(".")[0]
    dists = list(metadata.packages_distributions().get(top, []))
    dists += [d for d in getattr(resolve(loader_spec), "wraps", ()) if d not in dists]
    out = {}
    for name in dict.fromkeys(("torch", "batchfeed", *dists)):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed as a distribution"
    return out


def unsupported_features(rows: list[dict[str, str]]) -> list[str]:
    """The declared unsupported features that skipped tests of this run, from the skip reasons."""
    prefix = "declared unsupported: "
    return sorted({r["reason"].removeprefix(prefix).partition(":")[0] for r in rows
                   if r["outcome"] == "unsupported" and r["reason"].startswith(prefix)})


def verdict(code: int, rows: list[dict[str, str]]) -> str:
    """What the run means, in words: conforms (with how many declared deviations and unsupported features) or not."""
    c = Counter(r["outcome"] for r in rows)
    if code != 0 or not rows:
        return (f"does not conform: {c.get('fail', 0)} failed" if c.get("fail") else
                f"no verdict: pytest exited {code}" + (" without running a test" if not rows else ""))
    features = unsupported_features(rows)
    deviations = c.get("known deviation", 0)
    return (f"conforms, with {deviations} declared deviation{'s' * (deviations != 1)} and {len(features)} unsupported "
            f"feature{'s' * (len(features) != 1)}" + (f" ({', '.join(features)}: {c['unsupported']} tests skipped)"
                                                       if features else ""))


def render(loader_spec: str, rows: list[dict[str, str]], vers: dict[str, str], path: Path, code: int = 0) -> str:
    """The report as Markdown, or JSON for a ``.json`` path."""
    if path.suffix == ".json":
        return json.dumps({"loader": loader_spec, "verdict": verdict(code, rows), "exit": code, "versions": vers,
                           "counts": Counter(r["outcome"] for r in rows), "results": rows}, indent=2) + "\n"
    areas = sorted({r["area"] for r in rows})
    lines = [f"# Conformance of `{loader_spec}`", "", f"**{verdict(code, rows)}** (exit {code}).", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()), "",
             "| area | " + " | ".join(OUTCOMES) + " |", "|---|" + "---:|" * len(OUTCOMES)]
    for area in areas:
        c = Counter(r["outcome"] for r in rows if r["area"] == area)
        lines.append(f"| {area} | " + " | ".join(str(c.get(o, 0)) for o in OUTCOMES) + " |")
    lines += ["", "## Every behaviour", "",
              "A test id here is the one pytest prints and a declarations file names.", "",
              "| test | outcome | reason |", "|---|---|---|"]
    lines += [f"| `{r['id']}` | {r['outcome']} | {r['reason'].replace('|', '/')} |" for r in rows]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, extra: Sequence[str]) -> tuple[int, list[dict[str, str]]]:
    """The installed suite against ``args.loader`` in a fresh pytest process: (exit status, outcomes)."""
    import batchfeed_spec

    suite = Path(batchfeed_spec.__file__).parent
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        # The scratch folder's spec/ is the installed suite: ids read spec/conformance/... as in a clone.
        (Path(tmp) / "spec").symlink_to(suite, target_is_directory=True)
        selected = [_as_suite_path(a) for a in extra if _is_test_path(a)]
        rest = [a for a in extra if not _is_test_path(a)]
        cmd = [sys.executable, "-m", "pytest", *(selected or [SUITE_PATH]), "-c", str(suite / "conform.ini"),
               "--rootdir", tmp, "-p", "batchfeed.pytest_plugin", f"--loader={args.loader}",
               "-p", "no:cacheprovider", f"--junitxml={junit}", *rest]
        if args.deviations is not None:
            cmd.append(f"--loader-deviations={args.deviations.resolve()}")
        # From a scratch folder, so nothing the run writes (.hypothesis, .benchmarks) lands where the
        # user is; the user's folder stays importable, as it is for `python -c "import mypackage"`.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
        code = subprocess.run(cmd, check=False, cwd=tmp, env=env).returncode
        return code, (outcomes(junit) if junit.exists() else [])


def _is_test_path(arg: str) -> bool:
    """An argument after ``--`` that names tests of the suite (``spec/conformance/test_x.py::test_y``)."""
    return arg.startswith(("spec/conformance", "conformance/", "conformance:"))


def _as_suite_path(arg: str) -> str:
    return arg if arg.startswith("spec/") else "spec/" + arg


def main(argv: Sequence[str] | None = None, prog: str = "batchfeed conform") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args = build_parser(prog).parse_args(argv)
    if args.loader.partition(":")[0].split(".")[0] == "spec":
        print(f"{prog}: {args.loader}: a loader in a package named 'spec' clashes with the suite's own spec/ "
              "(from a clone, run pytest spec/conformance --loader=... instead)", file=sys.stderr)
        return 2
    missing = missing_dependencies()
    if missing:
        print(f"{prog}: needs {', '.join(missing)}, not installed: {INSTALL}", file=sys.stderr)
        return 2
    code, rows = run(args, extra)
    counts = Counter(r["outcome"] for r in rows)
    print(f"{prog}: {args.loader}: " + ", ".join(f"{counts.get(o, 0)} {o}" for o in OUTCOMES)
          + f" -> exit {code}: {verdict(code, rows)}", file=sys.stderr)
    if args.report is not None and rows:
        args.report.write_text(render(args.loader, rows, versions(args.loader), args.report, code))
        print(f"wrote {args.report}", file=sys.stderr)
    return code


def _main_module(argv: Any = None) -> int:  # pragma: no cover - python -m batchfeed.conform
    return main(argv, prog="python -m batchfeed.conform")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main_module())
