#!/usr/bin/env python3
"""Behaviour drift of torch's DataLoader across torch versions, from the tox envs' JUnit files.

Every test env of tox.ini (py310-torch211 ... py313-torch215) runs ``pytest spec/`` with
``--junitxml=.tox/junit/<env>.xml``; its ``spec/conformance`` tests run against torch's own
DataLoader (the default ``--loader``) under HYPOTHESIS_PROFILE=ci, so the same examples in every
env. This tool reads those files, reduces each test to one outcome (passed, failed, skipped,
xfailed; an error counts as failed, a missing id as absent) and writes a table of the tests
whose outcome differs between envs: the conformance tests first (DataLoader's behaviour), then
the rest of the spec. It replaces the block between ``<!-- torch-drift:begin -->`` and
``<!-- torch-drift:end -->`` in docs/conformance.md, or appends it when there is none::

    python tools/torch_drift.py                        # .tox/junit/*.xml -> docs/conformance.md
    python tools/torch_drift.py --junit-dir DIR --out /tmp/drift.md   # the block alone

The env names give the versions (each env asserts it resolved the torch its name promises).
Exit status 1 when a JUnit file cannot be read or there is none.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- torch-drift:begin -->", "<!-- torch-drift:end -->"
CONFORMANCE = "spec/conformance/"
ENV_NAME = re.compile(r"py(\d)(\d+)-torch(\d)(\d+)$")


def test_id(classname: str, name: str) -> str:
    """pytest's id of a JUnit testcase: the longest dotted prefix of classname that is a file."""
    if not classname:  # a module skipped whole: pytest names the module, dotted, as the test
        classname, name = name, ""
    parts = classname.split(".")
    for k in range(len(parts), 0, -1):
        if (ROOT / Path(*parts[:k])).with_suffix(".py").is_file():
            return "::".join(["/".join(parts[:k]) + ".py", *parts[k:], *([name] if name else [])])
    return f"{classname}::{name}"


def outcome(case: ET.Element) -> str:
    """One word for a testcase: failed (failure or error), xfailed, skipped or passed."""
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    skipped = case.find("skipped")
    if skipped is not None:
        return "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
    return "passed"


def read_env(path: Path) -> dict:
    """Outcomes by test id, and the suite's timestamp and duration, of one env's JUnit file."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    outcomes = {test_id(c.get("classname", ""), c.get("name", "")): outcome(c)
                for c in suite.iter("testcase")}
    return {"outcomes": outcomes, "timestamp": suite.get("timestamp", "")[:16].replace("T", " "),
            "time": float(suite.get("time", 0))}


def versions(env: str) -> str:
    """'Python 3.10, torch 2.11' from an env name such as py310-torch211."""
    m = ENV_NAME.search(env)
    return f"Python {m[1]}.{m[2]}, torch {m[3]}.{m[4]}" if m else env


def counts(outcomes: dict[str, str], conformance: bool) -> str:
    """'63 passed, 64 skipped' over the conformance tests (or over the rest of the spec)."""
    picked = [o for t, o in outcomes.items() if t.startswith(CONFORMANCE) == conformance]
    words = ("passed", "failed", "skipped", "xfailed")
    return ", ".join(f"{picked.count(w)} {w}" for w in words if picked.count(w)) or "none"


def differing(envs: dict[str, dict], conformance: bool) -> list[tuple[str, list[str]]]:
    """The tests (conformance or not) whose outcome is not the same in every env."""
    ids = sorted({t for e in envs.values() for t in e["outcomes"]
                  if t.startswith(CONFORMANCE) == conformance})
    rows = []
    for t in ids:
        cells = [e["outcomes"].get(t, "absent") for e in envs.values()]
        if len(set(cells)) > 1:
            rows.append((t, cells))
    return rows


def table(envs: dict[str, dict], rows: list[tuple[str, list[str]]], what: str) -> list[str]:
    """A Markdown table of the differing tests, or the sentence that none differs."""
    names = list(envs)
    if not rows:
        return [f"No {what} test has an outcome that differs between these envs.", ""]
    lines = ["| test | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    lines += [f"| `{t}` | " + " | ".join(cells) + " |" for t, cells in rows]
    return lines + [""]


def block(envs: dict[str, dict]) -> str:
    """The torch-drift block of docs/conformance.md."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [BEGIN, "", "## torch's DataLoader across torch versions", "",
             f"Written by `python tools/torch_drift.py` ({now}) from the JUnit files of one run of "
             "every tox test env (`.tox/junit/<env>.xml`; how the run went: "
             "[docs/tox.md](tox.md)). In each env `pytest spec/` ran the conformance tests against "
             "torch's own DataLoader (the default loader), HYPOTHESIS_PROFILE=ci (the same examples "
             "in every env), each env's torch checked against its name before the run.", "",
             "| env | versions | run started (UTC) | conformance tests | rest of the spec |",
             "|---|---|---|---|---|"]
    lines += [f"| `{n}` | {versions(n)} | {e['timestamp']} | {counts(e['outcomes'], True)} | "
              f"{counts(e['outcomes'], False)} |" for n, e in envs.items()]
    lines += ["", "### Conformance tests (torch's DataLoader) whose outcome differs", ""]
    lines += table(envs, differing(envs, True), "conformance")
    lines += ["### Other spec tests whose outcome differs", ""]
    lines += table(envs, differing(envs, False), "other")
    lines += ["Why each outcome differs (torch, Python, or the machine's load): "
              "[docs/tox.md](tox.md#what-failed-and-why).", ""]
    return "\n".join(lines + [END]) + "\n"


def replace_block(text: str, new: str) -> str:
    """text with its torch-drift block replaced by new, or new appended when it has none."""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + new.rstrip("\n") + rest.split(END, 1)[1]
    return text.rstrip("\n") + "\n\n" + new


def env_order(path: Path) -> tuple:
    """Sort key: Python version, then torch version, from the file's env name."""
    m = ENV_NAME.search(path.stem)
    return tuple(int(g) for g in m.groups()) if m else (99, 99, 99, 99)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--junit-dir", type=Path, default=ROOT / ".tox" / "junit")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "conformance.md",
                        help="the file whose torch-drift block is replaced (appended if absent)")
    parser.add_argument("--out", type=Path, help="write the block alone here instead of --doc")
    args = parser.parse_args(argv)
    files = sorted(args.junit_dir.glob("*.xml"), key=env_order)
    if not files:
        print(f"torch_drift: no JUnit file in {args.junit_dir}", file=sys.stderr)
        return 1
    try:
        envs = {f.stem: read_env(f) for f in files}
    except (ET.ParseError, AttributeError) as exc:
        print(f"torch_drift: cannot read a JUnit file in {args.junit_dir}: {exc}", file=sys.stderr)
        return 1
    new = block(envs)
    if args.out:
        args.out.write_text(new)
    else:
        args.doc.write_text(replace_block(args.doc.read_text(), new))
    print(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
