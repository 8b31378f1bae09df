"""The shape the code keeps (issue 13): no module of batchfeed over 400 lines, no function over
50 lines of code (docstrings, blank lines and comments not counted). Larger units had grown
to run the whole flow from data to printout; these limits keep each to one job."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "batchfeed"
MODULES = sorted(SRC.rglob("*.py"))
MAX_MODULE_LINES, MAX_FUNCTION_CODE_LINES = 400, 50


def code_lines(source: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body that hold code: its docstring, blank lines and comments left out."""
    body = node.body
    first = body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    start = first.end_lineno + 1 if has_doc else first.lineno
    return sum(1 for line in source[start - 1:node.end_lineno] if line.strip() and not line.strip().startswith("#"))


def test_the_limits_are_measured_as_documented():
    """A docstring, comments and blank lines do not count; code lines do."""
    text = 'def f():\n    """Doc.\n\n    More."""\n    # note\n\n    a = 1\n    return a\n'
    node = ast.parse(text).body[0]
    assert code_lines(text.splitlines(), node) == 2


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_module_and_functions_stay_small(path):
    """Each module has at most 400 lines and each of its functions at most 50 lines of code."""
    source = path.read_text().splitlines()
    assert len(source) <= MAX_MODULE_LINES, f"{path.name}: {len(source)} lines (limit {MAX_MODULE_LINES}); split it by job"
    long = [(n.name, n.lineno, code_lines(source, n)) for n in ast.walk(ast.parse("\n".join(source)))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and code_lines(source, n) > MAX_FUNCTION_CODE_LINES]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_CODE_LINES} lines of code: {long}"
