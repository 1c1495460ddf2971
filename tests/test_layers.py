"""The package's layers import downwards only: a stage may use the primitives and the stages before it."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "unsamv2"

# What each part of the package may import (besides itself). `download` and `resources` are the network layer.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "io": {"core"},
    "download": {"core", "io"},
    "resources": {"core", "io", "download"},
    "datasets": {"core", "io", "download"},
    "discovery": {"core", "io", "download", "resources", "datasets"},
    "model": {"core", "io", "download", "resources"},
    "train": {"core", "io", "download", "resources", "datasets", "model"},
    "evaluate": {"core", "io", "download", "resources", "datasets", "model"},
    # The report reads the evaluation's summaries through evaluate's readers (one source for the paper's averaging).
    "report": {"core", "io", "datasets", "discovery", "evaluate"},
    "app": {"core", "io", "download", "resources", "model"},
    # The run's variants: overrides of the stages' settings, checked against the paper's rows.
    "experiments": {"core", "datasets", "discovery", "train", "evaluate", "report"},
}


def _imports() -> dict[str, set[str]]:
    """part of the package → the parts it imports (``unsamv2.<part>...``)."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unsamv2."):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("unsamv2.")]
            found[part] |= {name.split(".")[1] for name in names} - {part}
    return found


def test_each_part_imports_only_the_layers_below_it() -> None:
    imports = _imports()
    assert set(imports) >= set(ALLOWED) - {"core", "io"}, sorted(imports)
    wrong = {part: sorted(deps - ALLOWED[part]) for part, deps in imports.items()
             if part in ALLOWED and deps - ALLOWED[part]}
    assert not wrong, wrong


def test_report_reads_discovery_outputs_not_its_helpers() -> None:
    """The report depends on Stage 1's manifest contract only (overlaps come from core.mask_overlap)."""
    modules = set()
    for path in (PACKAGE / "report").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unsamv2.discovery"):
                modules.add(node.module)
    assert modules <= {"unsamv2.discovery.shard"}
