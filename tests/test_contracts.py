"""Drift tests: the code, the exported schema, the README and the import layers agree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gqlbatch
from gqlbatch.core import errors
from gqlbatch.core.errors import REJECTION_CODES, ErrorCode, ItemError
from gqlbatch.doors.graphql.schema import build_schema

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

    from gqlbatch.core import result
    from gqlbatch.doors.graphql import results as schema

    pairs = [
        (schema.Succeeded, result.ItemResult),
        (schema.Skipped, result.ItemResult),
        (schema.ItemErrorType, result.ErrorInfo),
        (schema.ElementResultType, result.ElementResult),
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


# The layer table and the third-party table of docs/architecture.md: a module imports only
# from its own layer and the layers above it; a library only in the modules named for it.
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _table(header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header row starts with *header*."""
    lines = ARCHITECTURE[ARCHITECTURE.index(f"| {header} |") :].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _names(cell: str) -> list[str]:
    return re.findall(r"`([a-z_0-9.]+)`", cell)


LAYER_OF: dict[str, int] = {
    module: rank for rank, row in enumerate(_table("layer")) for module in _names(row[1])
}
THIRD_PARTY: dict[str, set[str]] = {
    _names(row[0])[0]: set(_names(row[1])) for row in _table("library")
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
            # `from gqlbatch.core import strict_json` imports a module named by the alias
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules() -> set[str]:
    """Every module of the package, dotted below it (`core.plan`), packages left out."""
    return {
        ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py"
    }


def test_every_module_has_a_layer() -> None:
    assert _modules() == set(LAYER_OF), "docs/architecture.md's layer table lists every module"


def test_each_folder_is_one_layer_or_the_core() -> None:
    for module, rank in LAYER_OF.items():
        folder = module.partition(".")[0] if "." in module else None
        if folder not in (None, "core"):
            ranks = {r for m, r in LAYER_OF.items() if m.startswith(folder + ".")}
            assert ranks == {rank}, f"{folder}/ spans layers {sorted(ranks)}"


def test_import_layers_hold() -> None:
    for module, rank in LAYER_OF.items():
        imports = _imports(PACKAGE / (module.replace(".", "/") + ".py"))
        ours = {i.removeprefix("gqlbatch.") for i in imports if i.startswith("gqlbatch.")}
        ours &= set(LAYER_OF)  # modules only: not packages, not the names imported from them
        upward = sorted(m for m in ours if LAYER_OF[m] > rank)
        assert not upward, f"{module} imports {upward}, from a layer below its own"
        for library, owners in THIRD_PARTY.items():
            uses = any(i == library or i.startswith(library + ".") for i in imports)
            assert not uses or module in owners, f"{module} imports {library}"


def test_the_core_loads_no_io_library() -> None:
    # `import gqlbatch.<core module>` must not bring aiohttp or strawberry with it: the package
    # __init__ is lazy, and the core imports neither.
    import subprocess
    import sys

    core = [m for m, rank in LAYER_OF.items() if rank <= 1]
    code = (
        "import sys\n"
        + "".join(f"import gqlbatch.{m}\n" for m in core)
        + "print(sorted(m for m in ('aiohttp', 'strawberry', 'aiodataloader', 'graphql', 'redis') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_graphql_inputs_declare_the_shapes_the_engine_checks() -> None:
    # Both doors hand parse_batch the same plain form; the GraphQL input types must name
    # exactly the keys it knows, or a field would be accepted by one door and refused by the
    # other.
    from gqlbatch.core.request import COMPENSATE_KEYS, ITEM_KEYS, OPTION_KEYS
    from gqlbatch.doors.graphql.inputs import BatchOptionsInput, CompensationInput, SubRequestInput

    def names(cls: type) -> set[str]:
        return {
            f.graphql_name or _camel(f.python_name) for f in cls.__strawberry_definition__.fields
        }

    assert names(SubRequestInput) == set(ITEM_KEYS)
    assert names(CompensationInput) == set(COMPENSATE_KEYS)
    assert names(BatchOptionsInput) == set(OPTION_KEYS)


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.title() for word in rest)


def test_no_library_internals_are_read_or_patched() -> None:
    # The package reads only the public surface of its libraries: no `obj._private` but its
    # own names, and no resolver, type check or input hook swapped on a schema Strawberry
    # built. Both once bought speed (docs/perf-log.md), and broke with upgrades.
    trees = {p.name: ast.parse(p.read_text(encoding="utf-8")) for p in PACKAGE.rglob("*.py")}
    ours = {
        name for tree in trees.values() for node in ast.walk(tree) for name in _defined_names(node)
    }
    patched = {"resolve", "is_type_of", "from_input", "resolve_type"}
    found = []
    for file, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_foreign_private(node.attr, ours):
                found.append(f"{file}:{node.lineno} reads .{node.attr}")
            for target in node.targets if isinstance(node, ast.Assign) else []:
                if isinstance(target, ast.Attribute) and target.attr in patched:
                    found.append(f"{file}:{node.lineno} sets .{target.attr}")
    assert not found, found


def _is_foreign_private(name: str, ours: set[str]) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in ours


def _defined_names(node: ast.AST) -> list[str]:
    """Names the package itself defines: functions, and attributes assigned on self or cls."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.AnnAssign | ast.Assign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", "") for t in targets]
    return []


def test_every_third_party_module_imported_is_declared() -> None:
    # Issue 26: gqlbatch imported graphql-core, yarl, jsonschema and referencing without
    # declaring them; each came with another package, at whatever version it chose. Each
    # module imported, anywhere in the package, belongs to a distribution named in
    # `dependencies` or in an extra (an optional feature's module, imported only when used).
    import sys
    import tomllib
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_distribution(spec) for spec in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_distribution(spec) for spec in extra}
    owners = packages_distributions()
    undeclared = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top == "gqlbatch" or top in sys.stdlib_module_names:
                    continue
                names = {_normal(d) for d in owners.get(top, [top])}
                if not names & declared:
                    undeclared.add(f"{top} ({', '.join(sorted(names))})")
    assert not undeclared, f"imported but not declared in pyproject.toml: {sorted(undeclared)}"


def _distribution(spec: str) -> str:
    return _normal(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0])


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# Issue 26: the modules of Strawberry and graphql-core that their documentation offers, and
# those gqlbatch imports without that (each said, with why, in docs/decisions.md, "Where a
# library has no public API"). A new import of either library fails here until it is one or
# the other.
DOCUMENTED_MODULES = {
    "strawberry",
    "strawberry.aiohttp.views",
    "strawberry.extensions",
    "strawberry.scalars",
    "strawberry.schema.config",
    "strawberry.schema.name_converter",
    "strawberry.types",
    "graphql",
    "graphql.language",
    "graphql.pyutils",
    "graphql.validation",
}
UNDOCUMENTED_MODULES = {
    "strawberry.http",
    "strawberry.http.exceptions",
    "strawberry.schema.schema",
    "graphql.validation.rules",
}
FOREIGN_WRITES = {"overlapping_fields_can_be_merged.MAX_COMPLEXITY_BUDGET"}
"""Module attributes of a library that gqlbatch sets, each in docs/decisions.md."""


def test_strawberry_and_graphql_core_are_used_where_documented_or_said_why() -> None:
    decisions = (ROOT / "docs" / "decisions.md").read_text(encoding="utf-8")
    imported: set[str] = set()
    writes: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] in ("strawberry", "graphql"):
                    imported.add(node.module)
                    # `from graphql.validation.rules import overlapping_fields_can_be_merged`
                    modules |= {alias.asname or alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {
                    a.name for a in node.names if a.name.split(".")[0] in ("strawberry", "graphql")
                }
        for node in ast.walk(tree):
            for target in node.targets if isinstance(node, ast.Assign) else []:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id in modules
                    and target.value.id[0].islower()  # a module, not a class
                ):
                    writes.add(f"{target.value.id}.{target.attr}")
    assert imported <= DOCUMENTED_MODULES | UNDOCUMENTED_MODULES, sorted(
        imported - DOCUMENTED_MODULES - UNDOCUMENTED_MODULES
    )
    assert writes == FOREIGN_WRITES, sorted(writes)
    unsaid = sorted(n for n in UNDOCUMENTED_MODULES | FOREIGN_WRITES if n not in decisions)
    assert not unsaid, f"not explained in docs/decisions.md: {unsaid}"
