"""The package's layers import one way, and its public exceptions live in errors.py.

app (cli, demo) -> sources (consume, push, backfill) -> delivery -> sinks -> foundation; alicom sits
beside sinks. Read from the source with ast, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mns_consumer"

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "alicom": ("consume", "push", "backfill", "delivery", "sinks", "cli", "demo"),
    "delivery": ("consume", "push", "backfill", "cli", "demo"),
    "sinks": ("consume", "push", "backfill", "delivery", "cli", "demo"),
    "push": ("consume", "cli", "demo"),
    "backfill": ("consume", "cli", "demo"),
    "consume": ("cli", "demo"),
    "observe": ("consume", "push", "backfill", "delivery", "sinks", "cli", "demo"),
}
"""Top-level part of mns_consumer -> the parts it must never import."""

CLI_IMPORTERS = {"__main__.py", "emulator/__main__.py"}
"""Entry points, the only modules besides cli.py that may import it."""


def _modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """Every mns_consumer module ``path`` imports, as dotted names below mns_consumer."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name.removeprefix("mns_consumer.") for name in names if name.startswith("mns_consumer.")}


def _part(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(part: str) -> None:
    crossings = [
        f"{path.relative_to(PACKAGE)} imports mns_consumer.{name}"
        for path in _modules()
        if _part(path) == part
        for name in sorted(_imported(path))
        if name.split(".")[0] in FORBIDDEN[part]
    ]
    assert crossings == []


def test_only_entry_points_import_the_cli() -> None:
    importers = {
        str(path.relative_to(PACKAGE))
        for path in _modules()
        if path.name != "cli.py" and any(name == "cli" or name.startswith("cli.") for name in _imported(path))
    }
    assert importers <= CLI_IMPORTERS


def _exception_classes(path: Path) -> list[str]:
    """Public classes in ``path`` whose bases name an exception (``...Error``, ``Exception``, ...)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            bases = [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]
            if any(base.endswith(("Error", "Exception", "Unavailable")) for base in bases):
                found.append(node.name)
    return found


def test_public_exceptions_live_in_errors_py() -> None:
    elsewhere = [
        f"{path.relative_to(PACKAGE)}:{name}"
        for path in _modules()
        if path.name != "errors.py" and _part(path) != "emulator"
        for name in _exception_classes(path)
    ]
    assert elsewhere == []


def test_the_checks_see_an_exception_class_and_a_lazy_import(tmp_path: Path) -> None:
    """The checks above would catch what they look for, so their empty lists mean something."""
    module = tmp_path / "probe.py"
    module.write_text(
        "class Gone(RuntimeError):\n    pass\n\ndef f():\n    from mns_consumer.cli import main\n",
        encoding="utf-8",
    )
    assert _exception_classes(module) == ["Gone"]
    assert _imported(module) == {"cli"}
