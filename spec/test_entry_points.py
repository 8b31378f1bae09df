"""Every command's surface (issue 22): each ``batchfeed`` subcommand and each ``python -m batchfeed...``
entry point prints its help and exits 0, and refuses one bad argument with status 2 and one line.

The entry points are found, not listed: the subcommands from ``batchfeed``'s own parser, the
``python -m`` modules from the source (a module-level ``if __name__ == "__main__":``, or a
``__main__.py``). Each must have a bad argument below, so a new entry point cannot go untested.
``python -m X`` is run in this process with :func:`runpy.run_module`, as ``python -m`` runs it
(the same ``__main__`` block, the same ``sys.argv``), without a fresh interpreter per case.
"""

import ast
import runpy
import sys
import warnings
from pathlib import Path

import pytest

import batchfeed
from batchfeed import cli

SRC = Path(batchfeed.__file__).resolve().parent


def subcommands() -> list[str]:
    """The subcommands ``batchfeed --help`` lists."""
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return sorted(action.choices)


def module_entry_points() -> list[str]:
    """Every ``python -m`` name of batchfeed: modules with a module-level ``__main__`` block, packages with ``__main__.py``."""
    names = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if path.name == "__main__.py":
            names.append(".".join(parts[:-1]))
            continue
        for node in ast.parse(path.read_text()).body:
            test = node.test if isinstance(node, ast.If) else None
            if (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
                    and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)):
                names.append(".".join(parts))
    return names


#: One bad argument per entry point, and the text its one line must name. Required positionals
#: are given (valid) so that the error is about the bad argument, not a missing one.
CONFORM_BAD = (["torch.utils.data:DataLoader", "--deviations", "no-such-declarations"], "--deviations")
CONVERT_BAD = (["in.csv", "X.npy", "y.npy", "--chunk-rows", "0"], "--chunk-rows")
BAD = {
    "batchfeed": (["frobnicate"], "invalid choice: 'frobnicate'"),
    "batchfeed compare": (["--n", "0"], "--n"),
    "batchfeed bench": (["--repeats", "0"], "--repeats"),
    "batchfeed conform": CONFORM_BAD,
    "batchfeed convert": CONVERT_BAD,
    "python -m batchfeed": (["frobnicate"], "invalid choice: 'frobnicate'"),
    "python -m batchfeed.cli": (["frobnicate"], "invalid choice: 'frobnicate'"),
    "python -m batchfeed.blockread": (["--blocks", "4", "0"], "--blocks"),
    "python -m batchfeed.checkpoint": (["--steps", "0"], "--steps"),
    "python -m batchfeed.conform": CONFORM_BAD,
    "python -m batchfeed.convert": CONVERT_BAD,
    "python -m batchfeed.distributed": (["--samples", "x"], "--samples"),
}
#: ``python -m`` names that are no command any more, and the command each names instead.
RETIRED = {"python -m batchfeed.throughput": "batchfeed bench"}
ENTRY_POINTS = ["batchfeed", *(f"batchfeed {c}" for c in subcommands()),
                *(f"python -m {m}" for m in module_entry_points())]
LIVE = [e for e in ENTRY_POINTS if e not in RETIRED]


def run_entry_point(entry: str, args: list[str], capsys) -> tuple[int, str, str]:
    """``entry args`` run as the shell would run it: (exit status, stdout, stderr)."""
    __tracebackhide__ = True
    words = entry.split()
    try:
        if words[0] == "batchfeed":
            status = cli.main([*words[1:], *args])
        else:
            module = words[2]
            saved = sys.argv
            sys.argv = [module, *args]
            try:
                with warnings.catch_warnings():  # runpy notes that the module was imported before (by the spec)
                    warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
                    runpy.run_module(module, run_name="__main__", alter_sys=True)
            finally:
                sys.argv = saved
            status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return status, out, err


def test_every_entry_point_has_a_bad_argument():
    """Each entry point found (subcommand or python -m module) has its bad-argument case, and no case is stale."""
    assert sorted(LIVE) == sorted(BAD), "BAD must list exactly the live entry points"
    assert set(RETIRED) <= set(ENTRY_POINTS), f"a retired name is gone: {sorted(set(RETIRED) - set(ENTRY_POINTS))}"


@pytest.mark.parametrize("entry", LIVE)
def test_help_exits_0_with_the_usage(entry, capsys):
    """`ENTRY --help` prints its usage and options on stdout, nothing on stderr, and exits 0."""
    status, out, err = run_entry_point(entry, ["--help"], capsys)
    assert (status, err) == (0, ""), f"{entry} --help: exit {status}, stderr {err!r}"
    assert out.startswith("usage: ") and "--help" in out, out[:300]


@pytest.mark.parametrize("entry", LIVE)
def test_one_bad_argument_exits_2_with_one_line(entry, capsys, tmp_path, monkeypatch):
    """One bad argument exits 2 with one line on stderr naming it, before any work, and nothing on stdout."""
    monkeypatch.chdir(tmp_path)  # where convert's outputs would go (they are checked before any work)
    args, named = BAD[entry]
    status, out, err = run_entry_point(entry, args, capsys)
    assert status == 2, f"{entry} {' '.join(args)}: exit {status}, stderr {err!r}"
    assert out == "" and err.count("\n") == 1 and ": error: " in err and named in err, err
    assert not list(tmp_path.iterdir()), "nothing is written"


@pytest.mark.parametrize("entry", sorted(RETIRED))
def test_a_retired_entry_point_names_the_command_instead(entry, capsys):
    """A retired ``python -m`` name exits 2 with one line naming the command that replaces it, even with --help."""
    status, out, err = run_entry_point(entry, ["--help"], capsys)
    assert (status, out, err.count("\n")) == (2, "", 1) and f"`{RETIRED[entry]}`" in err, err


def test_bench_refuses_a_check_the_scale_run_cannot_honour(capsys, tmp_path):
    """`bench --out-of-core --scale GIB --check` exits 2 naming --check before writing any data: the scale run has no targets."""
    status, out, err = run_entry_point("batchfeed bench", ["--out-of-core", "--scale", "0.01", "--dir", str(tmp_path),
                                                           "--check"], capsys)
    assert (status, out) == (2, "") and err.count("\n") == 1 and "argument --check" in err and "--scale" in err, err
    assert not list(tmp_path.iterdir())
