"""The import order of nmt/ (docs/architecture.md): a module imports only modules of lower
layers. Parsed with `ast` (nothing imported); imports inside functions and under
`if TYPE_CHECKING:` count like top-level ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "nmt"

# Bottom to top, as in docs/architecture.md.
LAYERS = [
    ["version", "constants", "errors", "faults"],
    [
        "nmt",
        "fileio",
        "locking",
        "precision",
        "quiet",
        "interrupts",
        "demo_align",
        "demo_lexicon",
        "progress",
        "serving",
        "serving.options",
    ],
    ["config", "demo_data"],
    ["vocab"],
    ["data"],
    ["layers.lstm_kernel"],
    ["layers.cudnn", "layers.lstm_cell"],
    ["layers.lstm", "layers.attention", "layers.dropout"],
    ["feeding_loop"],
    ["layers", "encoder", "decoder"],
    ["model"],
    ["modeldir"],
    ["checkpoint_files"],
    ["checkpoints", "search_options"],
    ["averaging"],
    ["search_loop"],
    ["search", "shortlist"],
    ["ensemble"],
    ["translator"],
    ["evaluation", "translation_job"],
    [
        "training.setup",
        "training.optim",
        "training.cluster",
        "training.metrics",
        "training.stopping",
        "export",
    ],
    ["training.state", "training.keeping"],
    ["training.restore", "training.step"],
    ["training.run"],
    ["training"],
    ["serving.api", "serving.page"],
    ["serving.batcher"],
    ["serving.versions"],
    ["serving.server"],
    ["serving.httpd"],
    ["serve"],
    ["cli_errors", "cli_options"],
    ["cli"],
    ["__main__"],
]
LAYER = {("nmt" if name == "nmt" else f"nmt.{name}"): i for i, names in enumerate(LAYERS)
         for name in names}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.Module, name: str, is_package: bool) -> list[tuple[str, int]]:
    """(nmt module, line) of every import anywhere in the module; `from nmt import x` and
    `from . import x` name the submodule x when there is one."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "nmt"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "nmt":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in LAYER else base, node.lineno))
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer_and_is_documented():
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    names = {module_name(p) for p in modules()}
    assert sorted(names - set(LAYER)) == [], "give new modules a layer in LAYERS and the doc"
    assert sorted(set(LAYER) - names) == [], "LAYERS names modules that no longer exist"
    missing = [n for n in names if n != "nmt" and f"`{n.removeprefix('nmt.')}`" not in doc]
    assert missing == [], "docs/architecture.md does not list these modules"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_run_down_the_layers(path):
    name = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    wrong = [
        f"{path.relative_to(REPO)}:{line}: {name} (layer {LAYER[name]}) imports {target} "
        f"(layer {LAYER.get(target)})"
        for target, line in imported_modules(tree, name, path.name == "__init__.py")
        if target != name and LAYER.get(target, len(LAYERS)) >= LAYER[name]
    ]
    assert wrong == []


def test_the_check_sees_lazy_relative_and_wrong_way_imports():
    source = (
        "from nmt import translator\n"
        "def f():\n"
        "    from nmt.cli import cli\n"
        "    from . import serve\n"
        "    import nmt.errors\n"
    )
    found = imported_modules(ast.parse(source), "nmt.model", is_package=False)
    assert found == [("nmt.translator", 1), ("nmt.cli", 3), ("nmt.serve", 4), ("nmt.errors", 5)]
    assert [t for t, _ in found if LAYER[t] >= LAYER["nmt.model"]] == [
        "nmt.translator",
        "nmt.cli",
        "nmt.serve",
    ]
