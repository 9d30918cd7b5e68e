"""The import graph keeps its direction: the engine is the runtime, and the exporter, the
training code and torch sit above it. A test that fails on the first import that points the
wrong way, statically (every import statement under engine/, function-local ones included)
and at run time (what importing the runtime's entry modules actually loads)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_ENGINE = ("mestream.export", "mestream.models", "torch")
"""What engine/ must never import: the engine is what a runtime-only install runs."""
HEAVY = ("torch", "onnx", "matplotlib", "tensorrt")
"""Packages of the train / gpu extras: `make demo` (a runtime-only install) never loads them."""


def imported_modules(path: Path, root: Path = CHECKOUT) -> list[tuple[int, str]]:
    """Every module an import statement in ``path`` names, with its line (relative imports resolved
    against the file's package, ``mestream.<folder>…``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ["mestream", *path.relative_to(root).parent.parts]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # ``from x import y`` may import the module x.y
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def forbidden(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_static_check_sees_what_it_must(tmp_path):
    """The checker itself can fail: plain, from-, relative and function-local imports are all seen."""
    probe = tmp_path / "engine" / "probe.py"
    probe.parent.mkdir()
    probe.write_text(
        "import torch.nn\nfrom mestream.export import onnx_export\n"
        "def f():\n    from ..models import checkpoint\n    from . import ring\n"
    )
    seen = [m for _, m in imported_modules(probe, tmp_path) if forbidden(m, FORBIDDEN_IN_ENGINE)]
    assert "torch.nn" in seen and "mestream.export" in seen and "mestream.models" in seen
    assert not any(m.startswith("mestream.engine") for m in seen)


def test_engine_imports_neither_export_nor_models_nor_torch():
    bad = [
        f"{path.relative_to(CHECKOUT)}:{line}: imports {module}"
        for path in sorted((CHECKOUT / "engine").rglob("*.py"))
        for line, module in imported_modules(path)
        if forbidden(module, FORBIDDEN_IN_ENGINE)
    ]
    assert not bad, "\n".join(bad)


def _loaded_after(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=CHECKOUT
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", ["mestream.engine.pipeline", "mestream.engine.run"])
def test_importing_the_runtime_loads_no_export_models_or_torch(module):
    loaded = _loaded_after(f"import {module}")
    assert module in loaded
    bad = [m for m in loaded if forbidden(m, FORBIDDEN_IN_ENGINE)]
    assert not bad, bad


def test_the_cli_loads_no_train_or_gpu_package_until_a_command_needs_it():
    """`mestream run` (what `make demo` runs) builds the parser of every command: none of them
    may pull in torch, onnx, matplotlib or tensorrt at import."""
    loaded = _loaded_after("from mestream.cli import build_parser\nbuild_parser()")
    bad = [m for m in loaded if forbidden(m, HEAVY)]
    assert not bad, bad
