"""operator/ is one package per kind plus what they share: no kind's package imports another kind's,
and the shared package imports no kind at all (what two kinds need moves down into kube/)."""

from __future__ import annotations

import ast
from pathlib import Path

OPERATOR = Path(__file__).resolve().parents[2] / "operator"
KINDS = ("trainingrun", "tuningjob", "modeldeployment")
SHARED = "kube"
# Modules that put the kinds together (startup, the configuration, the command line).
COMPOSITION = ("main", "config", "command")


def _runtime_imports(path: Path) -> set[str]:
    """Modules `path` imports when it runs (imports under `if TYPE_CHECKING:` are for type hints only)."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for statement in block.body
        for node in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _operator_packages(imports: set[str]) -> set[str]:
    """The top-level parts of crucible.operator that these imports reach (a kind, kube, main, ...)."""
    prefix = "crucible.operator."
    return {name[len(prefix) :].split(".")[0] for name in imports if name.startswith(prefix)}


def _modules_of(package: str) -> list[Path]:
    return sorted((OPERATOR / package).rglob("*.py"))


def test_every_kind_has_the_same_shape() -> None:
    for kind in KINDS:
        names = {path.stem for path in (OPERATOR / kind).glob("*.py")}
        assert {"handlers", "reconcile", "plan", "status", "manifests", "config"} <= names, kind
    rollout = {path.stem for path in (OPERATOR / "modeldeployment" / "rollout").glob("*.py")}
    assert {"reconcile", "canary", "analysis", "promotion", "status"} <= rollout


def test_no_kind_imports_another_kind() -> None:
    for kind in KINDS:
        for path in _modules_of(kind):
            reached = _operator_packages(_runtime_imports(path))
            others = reached & (set(KINDS) - {kind})
            assert not others, f"{path.relative_to(OPERATOR)} imports {sorted(others)}: move it into kube/"
            assert "main" not in reached, f"{path.relative_to(OPERATOR)} imports main"


def test_the_shared_package_imports_no_kind() -> None:
    for path in _modules_of(SHARED):
        reached = _operator_packages(_runtime_imports(path))
        assert not reached & {*KINDS, *COMPOSITION}, f"{path.relative_to(OPERATOR)} imports {sorted(reached)}"


def test_the_scan_sees_imports_and_skips_type_hints(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "from crucible.operator.kube import naming\n"
        "from crucible.operator.trainingrun.plan import plan_training\n"
        "if TYPE_CHECKING:\n"
        "    from crucible.operator.config import OperatorConfig\n"
    )
    assert _operator_packages(_runtime_imports(module)) == {"kube", "trainingrun"}
