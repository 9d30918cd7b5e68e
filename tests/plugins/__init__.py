"""Tests for plugin discovery; `install_fake_plugin` fakes an installed camera SDK package."""

import sys
from pathlib import Path

FAKE_ENTRY_POINTS = """\
[mestream.sources]
brokencam = mestream.tests.plugins.fakecam:BrokenCamera

[mestream.sinks]
listsink = mestream.tests.plugins.fakecam:ListSink
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
