"""The package files a stage runs, found from its imports: the code inputs of a workflow rule.

A rule lists these files as inputs, so that editing any module a stage runs reruns the stage.
Hand-written lists go stale (a stage starts importing a helper and nobody adds it), so they are
derived here from the source: starting at the stage module, every ``llm2tflite`` module it
imports, at the top or inside a function, transitively; the ``__init__.py`` of every package on
the way (Python runs them too); and the package data files (``llm2tflite/data/...``) a module
names in a string literal. A module that imports by computed name (``importlib.import_module``)
depends on every module of its own package.

Light: the standard library only (``ast``), so the Snakefile can call it while parsing.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "llm2tflite"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
DATA_DIR_NAME = "data"


def _module_file(name: str, package_dir: Path) -> Path | None:
    """The file of module ``name`` (``llm2tflite.x.y``): ``x/y.py`` or ``x/y/__init__.py``."""
    parts = name.split(".")[1:]
    base = package_dir.joinpath(*parts)
    candidates = (
        [base / "__init__.py"] if not parts else [base.with_suffix(".py"), base / "__init__.py"]
    )
    return next((c for c in candidates if c.is_file()), None)


def _module_name(path: Path, package_dir: Path) -> str:
    relative = path.relative_to(package_dir).with_suffix("")
    parts = [PACKAGE, *relative.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imported_names(path: Path, package_dir: Path) -> set[str]:
    """Fully qualified names this module imports (modules, or attributes of modules)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    this = _module_name(path, package_dir)
    # The package a relative import is relative to.
    package = this if _is_package(path) else this.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            # `from pkg import x`: x is a submodule or an attribute; both are tried.
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return {name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")}


def _data_files_named(path: Path, package_dir: Path) -> set[Path]:
    data_dir = package_dir / DATA_DIR_NAME
    if not data_dir.is_dir():
        return set()
    data_files = {p for p in data_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    strings = {
        node.value
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    return {
        f
        for f in data_files
        if f.name in strings
        or str(f.relative_to(package_dir)) in strings
        or str(f.relative_to(data_dir)) in strings
    }


def _imports_by_computed_name(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.Attribute)
        and node.attr == "import_module"
        or isinstance(node, ast.Name)
        and node.id == "import_module"
        for node in ast.walk(tree)
    )


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@functools.cache
def _closure(module: str, package_dir: Path) -> frozenset[Path]:
    files: set[Path] = set()
    pending = [module]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name, package_dir)
        if path is None:
            continue  # an attribute (`from llm2tflite import atomic` tries both), not a module
        files.add(path)
        pending += _parents(name)
        pending += _imported_names(path, package_dir)
        files |= _data_files_named(path, package_dir)
        if _imports_by_computed_name(path):
            own_package = path.parent
            pending += [_module_name(p, package_dir) for p in own_package.glob("*.py")]
    return frozenset(files)


def stage_files(module: str, package_dir: str | Path = PACKAGE_DIR) -> list[Path]:
    """Every package file ``python -m llm2tflite.<module>`` can run or read, sorted.

    ``module`` is the stage's name inside the package (``"train"``, ``"fidelity"``) or a full
    dotted name. Raises ValueError for a module that does not exist.
    """
    package_dir = Path(package_dir).resolve()
    name = module if module.startswith(PACKAGE) else f"{PACKAGE}.{module}"
    if _module_file(name, package_dir) is None:
        raise ValueError(f"no module {name} in {package_dir}")
    return sorted(_closure(name, package_dir))
