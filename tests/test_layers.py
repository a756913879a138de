"""The package's import graph has no circle and no import running up a layer (imports inside functions and
`if TYPE_CHECKING:` ones count)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "medref_cli"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, known: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n for n in names if n in known}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {m: _imports(ast.parse(p.read_text()), known) - {m} for m, p in files.items()}


def test_no_import_circle():
    graph = import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert graph["medref_cli.stages.table1_jobs"] and "medref_cli.stages.table1" not in graph[
        "medref_cli.stages.table1_jobs"]


def test_every_artifact_is_read_by_the_one_loader(tmp_path):
    """Each artifact's loader names its producer for a missing file and refuses another schema version, alike."""
    import json

    import pytest

    from medref_cli import artifacts
    from medref_cli.errors import MedrefError

    loaders = {
        "split.json": artifacts.load_split, "summary.json": artifacts.load_summary,
        "audit.json": artifacts.load_audit, "pseudo_labels.json": artifacts.load_pseudo_labels,
    }
    for name, load in loaders.items():
        with pytest.raises(MedrefError, match=r"not found; run `medref"):
            load(tmp_path / name)
        (tmp_path / name).write_text(json.dumps({"schema_version": 99}))
        with pytest.raises(MedrefError, match=rf"{name}: schema version 99 is not supported \(expected 1\)"):
            load(tmp_path / name)
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(MedrefError, match="run.json: schema version 99 is not supported"):
        artifacts.load_run(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(MedrefError, match="dataset.json: schema version 99 is not supported"):
        artifacts.load_manifest(tmp_path)


# Lowest first: a module may import its own layer and those below, never one above.
LAYERS = (
    ("foundation", ("errors", "image_limits", "zones", "report_zones", "zone_masks", "workspace", "config",
                    "config_reference", "imaging", "importers", "artifacts", "splits", "synthetic", "plots",
                    "overlays", "progress")),
    ("model", ("model",)),
    ("training", ("training", "semi", "pseudo_labels", "bundled_models")),
    ("stages", ("stages",)),
    ("cli", ("cli", "__main__")),
)


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return 0  # the package itself
    for rank, (_, names) in enumerate(LAYERS):
        if parts[1] in names:
            return rank
    raise AssertionError(f"{module}: in no layer of tests/test_layers.py; add it to LAYERS")


def test_no_import_runs_up_a_layer():
    graph = import_graph()
    upward = [f"{m} -> {d}" for m, deps in graph.items() for d in deps if _layer(d) > _layer(m)]
    assert not upward, upward
    assert _layer("medref_cli.training.loop") > _layer("medref_cli.model.network")  # the check sees real edges
