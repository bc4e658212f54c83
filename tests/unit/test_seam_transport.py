"""The lower layers stay lower: what reactor.py and transport.py import and touch, read from
their source; and the one error tree evserve's errors hang from."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import evserve
import evserve.pathpattern
from evserve.errors import EvserveError, PatternError, ResponseStateError
from evserve.pathpattern import compile_path

PACKAGE = Path(evserve.__file__).resolve().parent


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return True
    return False


def runtime_imports(module: str) -> list[str]:
    """The modules ``evserve/<module>.py`` imports when it runs, wherever the import statement
    sits (functions included); imports only a type checker sees are left out."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            found.append(base)
            found.extend(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if name in ("import_module", "__import__"):
                found.extend(arg.value for arg in node.args if isinstance(arg, ast.Constant))
    return found


@pytest.mark.parametrize("module", ["reactor", "transport"])
def test_the_reactor_and_the_transport_import_no_evserve_module_at_run_time(module: str) -> None:
    imported = runtime_imports(module)
    assert imported  # the walk found the module's imports at all
    assert [name for name in imported if name == "evserve" or name.startswith("evserve.")] == []


def test_reactor_py_never_imports_the_server() -> None:
    tree = ast.parse((PACKAGE / "reactor.py").read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("evserve.server"):
            assert _under_type_checking(node, parents), f"line {node.lineno} imports the server"
        if isinstance(node, ast.Import):
            assert not any(alias.name.startswith("evserve.server") for alias in node.names)


def test_the_transport_touches_no_private_name_but_its_own() -> None:
    tree = ast.parse((PACKAGE / "transport.py").read_text(encoding="utf-8"))
    foreign = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert foreign == []


# -- one error tree ----------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "builtin"), [(PatternError, ValueError), (ResponseStateError, RuntimeError)])
def test_errors_are_evserve_errors_and_their_builtin_kind(error: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(error, EvserveError) and issubclass(error, builtin)


def test_pattern_error_is_one_class_wherever_it_is_imported_from() -> None:
    assert evserve.PatternError is evserve.pathpattern.PatternError is PatternError
    assert "PatternError" in evserve.__all__ and "ResponseStateError" in evserve.__all__
    with pytest.raises(EvserveError, match="unbalanced"):
        compile_path("/a/:id(\\d+")


def test_every_exception_class_users_catch_is_defined_in_errors_py() -> None:
    # Anything else derived from Exception in the package is private (a leading underscore) or
    # named here with the reason it stays where it is.
    elsewhere = {
        ("cli.py", "TargetError"),  # the command line's own: caught and printed by main()
        ("jsontext.py", "JSONTextError"),  # the decoder's, as json.JSONDecodeError; a 400 by then
    }
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and any(
                isinstance(base, ast.Name) and (base.id.endswith(("Error", "Exception")))
                for base in node.bases
            ):
                found.add((str(path.relative_to(PACKAGE)), node.name))
    assert found == elsewhere, "an error users may catch belongs in evserve/errors.py, under EvserveError"
