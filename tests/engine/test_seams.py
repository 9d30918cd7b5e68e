"""The stages keep to their seams: the spot stage never writes a camera stream's state, and spot
and recognition meet only at the clip queue, recognition reading crops only through the crop ring's
methods. Checked on the source, so a shortcut added later fails here rather than in a review."""

from __future__ import annotations

import ast
from pathlib import Path

import mestream.engine.recognise as recognise_module
import mestream.engine.spot as spot_module


def tree(module) -> ast.Module:
    return ast.parse(Path(module.__file__).read_text())


def written_attributes(module_tree: ast.Module, owner: str) -> list[str]:
    """``owner.x = ...``, ``owner.x += ...`` and ``owner.x[i] = ...`` targets, as ``x``."""
    found = []
    for node in ast.walk(module_tree):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, (ast.AugAssign, ast.AnnAssign))
            else []
        )
        for target in targets:
            while isinstance(target, ast.Subscript):
                target = target.value
            if isinstance(target, ast.Attribute) and ast.unparse(target.value) in (owner, f"w.{owner}"):
                found.append(target.attr)
    return found


def imported_modules(module_tree: ast.Module) -> set[str]:
    return {node.module for node in ast.walk(module_tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_written_attributes_finds_a_write_through_a_stream() -> None:  # the check below can fail
    sample = ast.parse("cam.encoded = 1\ncam.features[3] = x\nw.cam.events += 1\nself.calls = 0\n")
    assert written_attributes(sample, "cam") == ["encoded", "features", "events"]


def test_the_spot_stage_never_writes_a_camera_streams_state() -> None:
    assert written_attributes(tree(spot_module), "cam") == []


def test_spot_and_recognition_meet_only_at_the_clip_queue() -> None:
    spot, recog = tree(spot_module), tree(recognise_module)
    assert "mestream.engine.recognise" not in imported_modules(spot)
    assert "mestream.engine.spot" not in imported_modules(recog)
    assert "mestream.engine.clipqueue" in imported_modules(spot) & imported_modules(recog)
    calls = {node.attr for node in ast.walk(spot) if isinstance(node, ast.Attribute)}
    assert not calls & {"submit", "oldest_pending", "recogniser", "recog"}


def test_recognition_reads_crops_only_through_the_crop_rings_methods() -> None:
    source = Path(recognise_module.__file__).read_text()
    for internal in (
        "ring.boxes",
        "ring.source_seq",
        "ring.done_ns",
        "ring.ring",
        ".read_range(",
        "._boxes",
        "._source_seq",
        "._written_ns",
        "import Box, crop",
        " crop(",
    ):
        assert internal not in source, internal
