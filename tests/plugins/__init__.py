"""Tests for plugin discovery; `install_fake_plugin` fakes an installed camera SDK package."""

import os
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
"""The source tree: a subprocess needs it on PYTHONPATH to import the fake plugins in `tests`."""

FAKE_ENTRY_POINTS = """\
[mestream.sources]
brokencam = tests.plugins.fakecam:BrokenCamera

[mestream.sinks]
listsink = tests.plugins.fakecam:ListSink
"""


def install_fake_plugin(root: Path, entry_points: str = FAKE_ENTRY_POINTS) -> Path:
    """Write a ``fakecam-1.0.dist-info`` with entry points under ``root``; return ``root``.

    Put ``root`` on sys.path (or PYTHONPATH for a subprocess) and importlib.metadata sees
    an installed distribution named fakecam, as it would after ``pip install``.
    """
    info = root / "fakecam-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakecam\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    return root


def on_path(monkeypatch, root: Path) -> None:
    monkeypatch.setattr(sys, "path", [str(root), *sys.path])


def plugin_env(root: Path) -> dict[str, str]:
    """The environment of a ``mestream`` subprocess that sees the fake plugin under ``root``."""
    return {"PYTHONPATH": os.pathsep.join([str(root), str(CHECKOUT)]), "PATH": "/usr/bin:/bin"}
