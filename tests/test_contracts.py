"""Drift tests: the code, the exported schema, the README and the import layers agree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gqlbatch
from gqlbatch import errors
from gqlbatch.errors import REJECTION_CODES, ErrorCode, ItemError
from gqlbatch.schema import build_schema

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "gqlbatch"
SCHEMA_FILE = ROOT / "schema" / "schema.graphql"
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_exported_schema_matches_the_code() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == build_schema().as_str() + "\n", (
        "schema/schema.graphql is stale: run "
        "`python -m gqlbatch export-schema -o schema/schema.graphql`"
    )


def test_every_error_code_is_in_the_schema_and_the_readme_table() -> None:
    sdl = SCHEMA_FILE.read_text(encoding="utf-8")
    enum = re.search(r"enum ErrorCode \{(.*?)\}", sdl, re.S)
    assert enum is not None
    assert set(enum[1].split()) == {c.value for c in ErrorCode}
    table = set(re.findall(r"^\| `([A-Z_]+)` \|", README, re.M))
    assert table == {c.value for c in ErrorCode}


def test_result_types_declare_only_what_the_engine_results_carry() -> None:
    # graphql-core reads the engine's results as they are (schema.to_batch_result): a field
    # declared on a result type must be an attribute of the engine's value, unless it has a
    # resolver of its own (body).
    import dataclasses

    from gqlbatch import result, schema

    pairs = [
        (schema.Succeeded, result.ItemResult),
        (schema.Skipped, result.ItemResult),
        (schema.ItemErrorType, result.ErrorInfo),
        (schema.ElementResult, result.ElementResult),
        (schema.RollbackType, result.Rollback),
    ]
    for declared, engine in pairs:
        names = {f.python_name for f in declared.__strawberry_definition__.fields}
        carried = {f.name for f in dataclasses.fields(engine)}
        assert names - {"body"} <= carried, (declared.__name__, names - carried)


def test_each_item_error_class_has_its_own_code() -> None:
    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, ItemError) and "code" in vars(c)
    ]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    # A code an item can fail with is documented as one: its README kind says "item".
    kinds = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", README, re.M))
    for code in codes:
        assert "item" in kinds[code.value], f"README: {code} can be an item error"
        assert code not in REJECTION_CODES or "rejection, or item" in kinds[code.value]


def test_public_names_are_sorted_and_exist() -> None:
    assert gqlbatch.__all__ == sorted(gqlbatch.__all__)
    for name in gqlbatch.__all__:
        assert hasattr(gqlbatch, name), name


# Which gqlbatch modules each module may import (STYLE 2.2), and where each third-party
# library may be used. The core (request, placeholders, plan, call, result) stays pure.
LAYERS: dict[str, set[str]] = {
    "types": set(),
    "errors": {"types"},
    "config": {"errors"},
    "config_file": {"config", "errors"},
    "request": {"errors", "targets", "types"},
    "targets": set(),
    "strict_json": {"types"},
    "budget": {"errors"},
    "identity": {"errors"},
    "placeholders": {"errors", "types"},
    "plan": {"errors", "placeholders", "request", "types"},
    "call": {"errors", "placeholders", "plan", "request", "targets", "types"},
    "result": {"call", "errors", "types"},
    "upstream": {"budget", "call", "config", "errors", "strict_json"},
    "bulk": {"call", "config", "errors", "types"},
    "loaders": {"bulk", "call", "config", "errors"},
    "retries": {"call", "config", "errors"},
    "atomic": {"call", "errors", "executor", "placeholders", "plan", "result", "types"},
    "executor": {"budget", "call", "errors", "placeholders", "plan", "request", "result", "types"},
    "engine": {
        "atomic",
        "budget",
        "config",
        "errors",
        "executor",
        "idempotency",
        "limits",
        "loaders",
        "plan",
        "request",
        "result",
        "retries",
        "types",
    },
    "idempotency": {"errors", "result"},
    "limits": {"errors"},
    "rest": {"call", "errors", "result", "types"},
    "multipart": {"call", "errors", "rest", "result", "strict_json", "types"},
    "schema": {
        "extensions",
        "call",
        "config",
        "engine",
        "errors",
        "loaders",
        "placeholders",
        "request",
        "result",
        "types",
    },
    "demo": set(),
    "extensions": {"errors", "query_shape"},
    "query_shape": set(),
    "app": {
        "strict_json",
        "identity",
        "call",
        "config",
        "engine",
        "errors",
        "extensions",
        "idempotency",
        "limits",
        "loaders",
        "multipart",
        "rest",
        "result",
        "schema",
        "types",
        "upstream",
    },
    "listener": {"app", "config", "errors"},
    "cli": {"app", "config", "config_file", "demo", "errors", "listener", "schema"},
    "__main__": {"cli"},
}
THIRD_PARTY: dict[str, set[str]] = {
    "aiohttp": {"upstream", "app", "demo", "multipart", "listener"},
    "h11": {"multipart"},
    "yarl": {"upstream"},
    "multidict": set(),
    "aiodataloader": {"loaders"},
    "strawberry": {"schema", "app", "extensions"},
    "cross_web": {"app"},
    "graphql": {"schema", "extensions", "query_shape"},
}


def _imports(path: Path) -> set[str]:
    """Modules imported at run time; imports under `if TYPE_CHECKING:` are annotations only."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for child in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_every_module_has_a_layer() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS)


def test_import_layers_hold() -> None:
    for module, allowed in LAYERS.items():
        imports = _imports(PACKAGE / f"{module}.py")
        ours = {i.split(".")[1] for i in imports if i.startswith("gqlbatch.")}
        assert ours <= allowed, f"{module} imports {sorted(ours - allowed)}"
        for library, owners in THIRD_PARTY.items():
            uses = any(i == library or i.startswith(library + ".") for i in imports)
            assert not uses or module in owners, f"{module} imports {library}"
