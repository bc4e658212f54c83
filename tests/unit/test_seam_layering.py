"""The layering of evserve, checked on its source (no import of the modules checked).

Two rules hold the seam between the wire and the framework in place:

1. The connection layer imports nothing of the framework: not at module level, not lazily
   inside a function, not through ``importlib.import_module``/``__import__``, and not even for
   type names under ``if TYPE_CHECKING:`` (a lower layer that needs a higher one's shape
   declares a ``Protocol``). An edge hidden in a function is still an edge.
2. No module reads or writes another module's ``_private`` names (attributes, ``getattr`` and
   friends with a constant name, ``from m import _name``, private modules such as
   ``re._parser``), except the few standard-library ones listed, each with its reason.

Each checker is tested on synthetic sources first, so that a checker that finds nothing cannot
pass for a codebase that is clean.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = ROOT / "evserve"

# -- the layers --------------------------------------------------------------------------------

# The connection layer: the wire, the state machine, the exchange, the loop, the server.
# ``tasks`` belongs here: it runs coroutines on the reactor (it imports only ``reactor``) and
# knows no HTTP; the framework uses it (async handlers, ``res.drain()``), and anything the
# connection layer may ever need from it (a coroutine handler of exchanges) must be importable
# from below, so it is held to the lower layer's rule.
CONNECTION_LAYER = frozenset({
    "evserve.config",
    "evserve.connection",
    "evserve.errors",
    "evserve.exchange",
    "evserve.handlers",
    "evserve.headers",
    "evserve.parser",
    "evserve.reactor",
    "evserve.server",
    "evserve.status",
    "evserve.tasks",
    "evserve.transport",
    "evserve.workers",
    "evserve.writer",
})

# The framework: the Express surface and what only it uses. Modules named here need not exist
# yet (``evserve.testing`` is the test client's).
FRAMEWORK = frozenset({
    "evserve.app",
    "evserve.cookies",
    "evserve.disposition",
    "evserve.express",
    "evserve.freshness",
    "evserve.jsontext",
    "evserve.media_types",
    "evserve.middleware",
    "evserve.negotiation",
    "evserve.pathpattern",
    "evserve.query",
    "evserve.request",
    "evserve.response",
    "evserve.router",
    "evserve.testing",
})

# Above both: the package's public face and the command line import whatever they serve.
ENTRY_POINTS = frozenset({"evserve", "evserve.__main__", "evserve.cli"})


def module_name(path: Path) -> str:
    """The dotted name of the module at ``path`` (a file under ``ROOT``)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    """Every module of the ``evserve`` package in this checkout, by dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def layer_of(name: str) -> str | None:
    """``"connection"``, ``"framework"``, ``"entry"`` or None for the module ``name``."""
    if name in CONNECTION_LAYER:
        return "connection"
    if name in ENTRY_POINTS:
        return "entry"
    if any(name == m or name.startswith(m + ".") for m in FRAMEWORK):
        return "framework"
    return None


# -- rule 1: imports ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportEdge:
    """One import in a module's source.

    ``kind`` is ``"runtime"`` (an import statement that runs), ``"type-only"`` (inside
    ``if TYPE_CHECKING:``) or ``"dynamic"`` (``importlib.import_module``/``__import__``).
    ``target`` is the module imported, or None for a dynamic import of a computed name.
    """

    line: int
    kind: str
    target: str | None
    text: str
    lazy: bool  # inside a function: runs when the function is called, not at import


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names before its ``import``."""
    if node.level == 0:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    return importlib.util.resolve_name("." * node.level + (node.module or ""), package)


def _dynamic_target(call: ast.Call) -> tuple[bool, str | None]:
    """Whether ``call`` imports a module by name, and the name when it is a constant."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in ("import_module", "__import__"):
        return False, None
    args = call.args
    if not args or not isinstance(args[0], ast.Constant) or not isinstance(args[0].value, str):
        return True, None
    target = args[0].value
    if target.startswith("."):
        package = None
        if name == "import_module" and len(args) > 1 and isinstance(args[1], ast.Constant):
            package = args[1].value
        for keyword in call.keywords:
            if keyword.arg == "package" and isinstance(keyword.value, ast.Constant):
                package = keyword.value.value
        if not isinstance(package, str):
            return True, None
        target = importlib.util.resolve_name(target, package)
    return True, target


def import_edges(source: str, module: str, *, is_package: bool = False,
                 known: frozenset[str] = frozenset()) -> list[ImportEdge]:
    """Every import in ``source`` (the module ``module``), wherever it is written.

    ``known`` holds the modules that exist, so that ``from evserve import app`` is read as an
    import of ``evserve.app`` (a submodule), not of a name of ``evserve``.
    """
    edges: list[ImportEdge] = []

    def visit(node: ast.AST, type_only: bool, lazy: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True, lazy)
            for child in node.orelse:
                visit(child, type_only, lazy)
            return
        kind = "type-only" if type_only else "runtime"
        if isinstance(node, ast.Import):
            for alias in node.names:
                edges.append(ImportEdge(node.lineno, kind, alias.name, ast.unparse(node), lazy))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(module, is_package, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if sub in known else base
                edges.append(ImportEdge(node.lineno, kind, target, ast.unparse(node), lazy))
        elif isinstance(node, ast.Call):
            is_import, dynamic = _dynamic_target(node)
            if is_import:
                edges.append(ImportEdge(node.lineno, "dynamic", dynamic, ast.unparse(node), lazy))
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child_node in ast.iter_child_nodes(node):
            visit(child_node, type_only, inner)

    visit(ast.parse(source), False, False)
    return edges


def _describe(path: str, edge: ImportEdge) -> str:
    where = "lazily, inside a function" if edge.lazy else "at module level"
    return f"{path}:{edge.line}: {edge.text}  ({edge.kind}, {where})"


def layering_violations(source: str, module: str, path: str, *, is_package: bool = False,
                        known: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """The imports of a connection-layer module that break rule 1, by kind.

    A connection-layer module may import the standard library and other connection-layer
    modules only: anything else of ``evserve`` (the framework, the entry points, a module not
    classified yet) is a violation. A dynamic import of a computed name cannot be checked and
    is a violation too.
    """
    found: dict[str, list[str]] = {"runtime": [], "type-only": [], "dynamic": []}
    for edge in import_edges(source, module, is_package=is_package, known=known):
        target = edge.target
        if target is None:
            found[edge.kind].append(_describe(path, edge) + " -- a computed module name")
            continue
        if (target == "evserve" or target.startswith("evserve.")) and not any(
            target == m or target.startswith(m + ".") for m in CONNECTION_LAYER
        ):
            found[edge.kind].append(_describe(path, edge))
    return found


# A connection-layer module written the ways an edge hides: the checker must see every one.
SYNTHETIC_CONNECTION_MODULE = '''
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from evserve.writer import frame_response
from . import parser

if TYPE_CHECKING:
    from evserve.request import Request

def render(exchange):
    from evserve.response import Response  # lazy
    return Response

def lazy_again():
    import evserve.router as router
    from evserve import app
    from .middleware import cors
    return router, app, cors

def dynamic(name):
    importlib.import_module("evserve.negotiation")
    importlib.import_module(".cookies", "evserve")
    __import__("evserve.query")
    return importlib.import_module(name)
'''


def test_the_import_checker_catches_every_hidden_edge() -> None:
    known = frozenset(package_modules()) | {"evserve.app", "evserve.middleware.cors"}
    found = layering_violations(SYNTHETIC_CONNECTION_MODULE, "evserve.synthetic", "synthetic.py",
                                known=known)
    runtime = "\n".join(found["runtime"])
    for text in ("from evserve.response import Response", "import evserve.router as router",
                 "from evserve import app", "from .middleware import cors"):
        assert text in runtime, f"{text!r} not caught:\n{runtime}"
    assert all("lazily" in line for line in found["runtime"]), found["runtime"]
    assert len(found["runtime"]) == 4
    assert found["type-only"] == [
        "synthetic.py:11: from evserve.request import Request  (type-only, at module level)"]
    dynamic = "\n".join(found["dynamic"])
    for text in ("'evserve.negotiation'", "'.cookies', 'evserve'", "__import__('evserve.query')",
                 "import_module(name)"):
        assert text in dynamic, f"{text!r} not caught:\n{dynamic}"
    assert len(found["dynamic"]) == 4
    # The writer and the parser (a relative import) are the connection layer's own.
    assert not any("writer" in line or "import parser" in line for lines in found.values() for line in lines)


@pytest.mark.parametrize(
    ("source", "module", "is_package", "target"),
    [
        ("from . import send\n", "evserve.middleware", True, "evserve.middleware.send"),
        ("from . import cors\n", "evserve.middleware.send", False, "evserve.middleware.cors"),
        ("from .. import app\n", "evserve.middleware.cors", False, "evserve.app"),
        ("from ..exchange import Exchange\n", "evserve.middleware.cors", False, "evserve.exchange"),
        ("from .writer import frame_response\n", "evserve.exchange", False, "evserve.writer"),
        ("from evserve import app as application\n", "evserve.exchange", False, "evserve.app"),
        ("from evserve import __version__\n", "evserve.exchange", False, "evserve"),
    ],
)
def test_the_import_checker_resolves_what_a_from_import_names(
        source: str, module: str, is_package: bool, target: str) -> None:
    known = frozenset({"evserve", "evserve.app", "evserve.middleware.send", "evserve.middleware.cors"})
    edges = import_edges(source, module, is_package=is_package, known=known)
    assert [edge.target for edge in edges] == [target]


def test_every_module_of_the_package_is_in_a_layer() -> None:
    # A new module must be placed: in the connection layer (and then held to its rule) or
    # above it. Until it is, the connection layer may not import it (see layering_violations).
    unplaced = sorted(name for name in package_modules() if layer_of(name) is None)
    assert not unplaced, f"modules in no layer (add them to CONNECTION_LAYER or FRAMEWORK): {unplaced}"


def test_the_connection_layer_modules_exist() -> None:
    # A rename must not drop a module from the check without anyone noticing.
    missing = sorted(CONNECTION_LAYER - set(package_modules()))
    assert not missing, f"connection-layer modules not found: {missing}"


def _connection_layer_violations() -> dict[str, list[str]]:
    modules = package_modules()
    known = frozenset(modules)
    found: dict[str, list[str]] = {"runtime": [], "type-only": [], "dynamic": []}
    for name in sorted(CONNECTION_LAYER & known):
        path = modules[name]
        per_module = layering_violations(
            path.read_text(encoding="utf-8"), name, str(path.relative_to(ROOT)),
            is_package=path.name == "__init__.py", known=known)
        for kind, lines in per_module.items():
            found[kind].extend(lines)
    return found


def test_the_connection_layer_imports_nothing_above_it_at_run_time() -> None:
    found = _connection_layer_violations()
    lines = found["runtime"] + found["dynamic"]
    assert not lines, "the connection layer imports the framework (or an unplaced module):\n" + \
        "\n".join(lines)


def test_the_connection_layer_names_no_framework_type() -> None:
    # Allowed by "nothing at run time", refused all the same: a type-only import still ties the
    # lower layer to the higher one's names (a rename above breaks the type check below). The
    # seam's types are Protocols of the connection layer (Handler, Transport, SwitchedProtocol).
    found = _connection_layer_violations()
    assert not found["type-only"], "the connection layer names framework types:\n" + \
        "\n".join(found["type-only"])


# -- rule 2: private names -----------------------------------------------------------------------

# Private names of the standard library that evserve uses knowingly, each with its reason and,
# where the name could go away, its fallback. The same list, with the same reasons, is in
# docs/internals.md.
ALLOWED_PRIVATE: dict[str, str] = {
    # A documented function despite its underscore: end the process at once, without cleanup,
    # for the second Ctrl-C (force_exit) and in a forked worker that must not run the parent's
    # atexit handlers.
    "os._exit": "documented: exit now, without cleanup (second Ctrl-C, forked workers)",
    # The regular-expression parser, to read the groups of a user's route pattern; the module
    # moved in 3.11 (sre_parse before), and the code falls back to the old name.
    "re._parser": "parse a route's regular expression (3.11+; falls back to sre_parse)",
}

def is_private(name: str) -> bool:
    """A name with a leading underscore that is not a dunder (``__x__``)."""
    return name.startswith("_") and name != "_" and not (name.startswith("__") and name.endswith("__"))


def _private_module(dotted: str) -> bool:
    return any(is_private(part) for part in dotted.split("."))


def own_names(tree: ast.AST) -> set[str]:
    """The private names a module defines itself: its defs and classes (at any depth), class
    attributes, ``__slots__`` entries, and attributes it assigns on ``self``/``cls``."""
    names: set[str] = set()

    def targets(target: ast.expr, in_class: bool) -> Iterator[str]:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                yield from targets(element, in_class)
        elif isinstance(target, ast.Starred):
            yield from targets(target.value, in_class)
        elif isinstance(target, ast.Name) and in_class:
            yield target.id
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and \
                target.value.id in ("self", "cls"):
            yield target.attr

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.Assign):
                    for target in item.targets:
                        names.update(targets(target, True))
                    if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in item.targets):
                        for element in ast.walk(item.value):
                            if isinstance(element, ast.Constant) and isinstance(element.value, str):
                                names.add(element.value)
                elif isinstance(item, ast.AnnAssign):
                    names.update(targets(item.target, True))
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(targets(target, False))
    return {name for name in names if is_private(name)}


def _module_aliases(tree: ast.AST) -> dict[str, str]:
    """Local names bound to modules by ``import`` (``os`` -> ``os``, ``np`` -> ``numpy``)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
    return aliases


def private_accesses(source: str, module: str, path: str, *,
                     allowed: dict[str, str] = ALLOWED_PRIVATE, used: set[str] | None = None) -> list[str]:
    """Where ``source`` reaches for a private name it does not define, as ``path:line: text``.

    ``used`` collects the allow-list entries met (to check the lists stay true).
    """
    tree = ast.parse(source)
    own = own_names(tree)
    aliases = _module_aliases(tree)
    found: list[str] = []

    def qualified(value: ast.expr, attr: str) -> str:
        if isinstance(value, ast.Name) and value.id in aliases:
            return f"{aliases[value.id]}.{attr}"
        return f"{ast.unparse(value)}.{attr}"

    def check(node: ast.AST, value: ast.expr, attr: str, text: str) -> None:
        if not is_private(attr) or attr in own:
            return
        if isinstance(value, ast.Name) and value.id in ("self", "cls"):
            return  # an object's own fields (an inherited private is its base class's business)
        name = qualified(value, attr)
        if name in allowed:
            if used is not None:
                used.add(name)
            return
        found.append(f"{path}:{getattr(node, 'lineno', 0)}: {text}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            check(node, node.value, node.attr, ast.unparse(node))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2:
            name_arg = node.args[1]
            if isinstance(name_arg, ast.Constant) and isinstance(name_arg.value, str):
                check(node, node.args[0], name_arg.value, ast.unparse(node))
        elif isinstance(node, ast.Call):
            is_import, target = _dynamic_target(node)
            if is_import and target is not None and _private_module(target):
                if target in allowed:
                    if used is not None:
                        used.add(target)
                else:
                    found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom):
                base = _resolve_from(module, path.endswith("__init__.py"), node)
                dotted = [f"{base}.{alias.name}" for alias in node.names]
                bad = [d for d, alias in zip(dotted, node.names, strict=True)
                       if is_private(alias.name) or _private_module(base)]
            else:
                bad = [alias.name for alias in node.names if _private_module(alias.name)]
            for name in bad:
                if name in allowed:
                    if used is not None:
                        used.add(name)
                else:
                    found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
                    break
    return sorted(found, key=_by_line)


def _by_line(entry: str) -> tuple[str, int]:
    path, line, _ = entry.split(":", 2)
    return path, int(line)


SYNTHETIC_PRIVATE_MODULE = '''
import os
import re._parser
from evserve.headers import _fold
from json import _private_thing as public_name
class Box:
    __slots__ = ("_slot",)
    _class_attr = 1

    def __init__(self, other):
        self._mine = 1
        self._slot = 2
        other._mine = 3              # own private, on another instance of the class
        self.peer = other

    def _helper(self):
        return self.peer._helper()   # own private

    def leak(self, req, reactor):
        req.headers._index           # another module's private
        reactor._register(1, 2)      # another module's private
        self.peer._secret            # not defined here
        getattr(req, "_hidden")
        setattr(req, "_hidden", 1)
        hasattr(req, "__dict__")     # a dunder: fine
        os._exit(0)                  # allowed, with its reason
        return super()._base_private()
'''


def test_the_private_checker_catches_every_kind_of_reach() -> None:
    used: set[str] = set()
    found = private_accesses(SYNTHETIC_PRIVATE_MODULE, "evserve.synthetic", "synthetic.py",
                             allowed={"os._exit": "reason"}, used=used)
    text = "\n".join(found)
    expected = [
        "import re._parser",
        "from evserve.headers import _fold",
        "from json import _private_thing as public_name",
        "req.headers._index",
        "reactor._register",
        "self.peer._secret",
        "getattr(req, '_hidden')",
        "setattr(req, '_hidden', 1)",
        "super()._base_private",
    ]
    for item in expected:
        assert item in text, f"{item!r} not caught:\n{text}"
    assert len(found) == len(expected), text
    for fine in ("_mine", "_slot", "_class_attr", "_helper", "__dict__", "os._exit"):
        assert fine not in text, f"{fine} flagged:\n{text}"
    assert used == {"os._exit"}


def test_the_private_checker_allows_a_listed_private_module() -> None:
    source = "import importlib\nimportlib.import_module('re._parser')\nimportlib.import_module('sre_parse')\n"
    assert private_accesses(source, "evserve.x", "x.py", allowed={"re._parser": "r"}) == []
    assert private_accesses(source, "evserve.x", "x.py", allowed={}) == [
        "x.py:2: importlib.import_module('re._parser')"]


def _package_private_accesses(used: set[str]) -> list[str]:
    found: list[str] = []
    for name, path in package_modules().items():
        found += private_accesses(path.read_text(encoding="utf-8"), name,
                                  str(path.relative_to(ROOT)), used=used)
    return found


def test_no_module_reads_another_modules_private_names() -> None:
    found = _package_private_accesses(set())
    assert not found, "private names reached from outside their module:\n" + "\n".join(found)


def test_every_allowed_private_is_still_used() -> None:
    # The allow-list (and its copy in docs/internals.md) must not outlive the code it excuses.
    used: set[str] = set()
    _package_private_accesses(used)
    stale = sorted(set(ALLOWED_PRIVATE) - used)
    assert not stale, f"allow-list entries no longer used (remove them here and in docs/internals.md): {stale}"


@pytest.mark.parametrize("name", sorted(ALLOWED_PRIVATE))
def test_each_allowed_private_is_in_the_internals_guide(name: str) -> None:
    guide = (ROOT / "docs" / "internals.md").read_text(encoding="utf-8")
    assert f"`{name}`" in guide, f"docs/internals.md does not list `{name}` and why it is used"
