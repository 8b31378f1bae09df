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


# --- imports (issue 22): no circle among batchfeed's modules, no private name across modules -----

def module_name(path: Path) -> str:
    """``src/batchfeed/loader/core.py`` -> ``batchfeed.loader.core``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {module_name(p): p for p in MODULES}
PACKAGES = {module_name(p) for p in MODULES if p.name == "__init__.py"}


def imports_of(source: str, name: str, package: bool) -> list[tuple[int, str, str | None]]:
    """Each import of batchfeed in ``source`` (module ``name``), anywhere in it (functions too), as
    ``(line, module, imported name or None)``, relative imports resolved."""
    here = name.split(".") if package else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "batchfeed"]
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module.split(".")[0] == "batchfeed":
                found += [(node.lineno, module, a.name) for a in node.names]
    return found


def dependencies(imports: list[tuple[int, str, str | None]], modules: set[str]) -> set[str]:
    """The modules these imports load: ``from p import m`` of a submodule ``m`` is ``p.m``."""
    return {f"{m}.{n}" if n and f"{m}.{n}" in modules else m for _, m, n in imports}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: each set of two or more modules that import each other, directly or around (sorted)."""
    reach = {m: set() for m in graph}
    for m in graph:  # every module m reaches, by a depth-first walk
        todo = list(graph[m])
        while todo:
            d = todo.pop()
            if d in graph and d not in reach[m]:
                reach[m].add(d)
                todo += graph[d]
    groups = {tuple(sorted({m} | {d for d in reach[m] if m in reach[d]})) for m in graph if m in reach[m]}
    return sorted(list(g) for g in groups)


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def private_crossings(importer: str, imports: list[tuple[int, str, str | None]], modules: set[str]) -> list[str]:
    """The imports of ``importer`` that reach another module's private name: ``_name`` defined in a
    module, or a private module ``p._m`` imported from outside its package ``p``."""
    bad = []
    for line, module, name in imports:
        parts = module.split(".") + ([name] if name else [])
        for i, part in enumerate(parts[1:], start=1):
            if not _private(part):
                continue
            owner = ".".join(parts[:i])
            inside = importer == owner or importer.startswith(owner + ".")
            if not (inside if ".".join(parts[:i + 1]) in modules else importer == owner):
                bad.append(f"{importer}:{line} {module} {name or ''}".rstrip())
    return bad


def test_the_import_checks_find_a_circle_and_a_private_name():
    """A circle through three modules is one circle; `from .b import _x` and `from ..p._m import y` cross, `from ._m import y` inside p does not."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    mods = {"batchfeed", "batchfeed.a", "batchfeed.b", "batchfeed.p", "batchfeed.p._m", "batchfeed.p.q"}
    src = "from .b import _x, y\nfrom .p._m import z\ndef f():\n    from .p import _m\n"
    found = imports_of(src, "batchfeed.a", package=False)
    assert found == [(1, "batchfeed.b", "_x"), (1, "batchfeed.b", "y"), (2, "batchfeed.p._m", "z"), (4, "batchfeed.p", "_m")]
    assert dependencies(found, mods) == {"batchfeed.b", "batchfeed.p._m"}
    assert private_crossings("batchfeed.a", found, mods) == [
        "batchfeed.a:1 batchfeed.b _x", "batchfeed.a:2 batchfeed.p._m z", "batchfeed.a:4 batchfeed.p _m"]
    inside = imports_of("from ._m import z\nfrom .. import _checks\n", "batchfeed.p.q", package=False)
    assert private_crossings("batchfeed.p.q", inside, mods | {"batchfeed._checks"}) == []


def _imports(name: str) -> list[tuple[int, str, str | None]]:
    return imports_of(NAMES[name].read_text(), name, name in PACKAGES)


def test_no_module_imports_another_modules_private_name():
    """No batchfeed module imports a `_name` of another module, or a private module from outside its package."""
    found = [c for name in NAMES for c in private_crossings(name, _imports(name), set(NAMES))]
    assert found == [], "private names imported across modules: make them public, or keep them home"


def test_no_import_circle_among_batchfeed_modules():
    """No batchfeed module imports, directly or around, a module that imports it (lazy imports in functions included)."""
    graph = {name: dependencies(_imports(name), set(NAMES)) - {name} for name in NAMES}
    assert circles(graph) == []


#: ``x._name`` on something other than ``self``/``cls`` that stays, each with its reason.
OTHERS_PRIVATE_ALLOWED = {
    # the standard library's only hook that runs before threading joins its threads (loader/prefetch.py says why)
    "batchfeed.loader.prefetch:93 threading._register_atexit",
}


def others_private(source: str, name: str) -> list[str]:
    """Each ``x._name`` in ``source`` where ``x`` is not ``self`` or ``cls``: another object's private attribute."""
    return [f"{name}:{n.lineno} {ast.unparse(n)}" for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Attribute) and _private(n.attr)
            and not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"))]


def test_others_private_finds_an_attribute_of_another_object():
    """`loader._n` and `self.loader._n` are another object's; `self._n` and `cls._n` are not."""
    src = "def f(self, loader):\n    return self._n, cls._n, loader._n, self.loader._n, x.__len__\n"
    assert others_private(src, "m") == ["m:2 loader._n", "m:2 self.loader._n"]


def test_no_module_reads_another_objects_private_attributes():
    """No module reads or writes a `_name` of an object other than self/cls (the iterator reads the loader's public surface)."""
    found = {c for name in NAMES for c in others_private(NAMES[name].read_text(), name)}
    assert found - OTHERS_PRIVATE_ALLOWED == set()
    assert OTHERS_PRIVATE_ALLOWED - found == set(), "gone or moved: update OTHERS_PRIVATE_ALLOWED"
