"""SMIC (Li et al. 2013): HS (100 fps, 16 subjects), VIS and NIR (25 fps, 8 subjects).

Layout (the released SMIC_all_raw / SMIC_all_cropped trees; ``root`` holds HS/, VIS/, NIR/ or is
one of them)::

    HS/s1/micro/positive/s1_po_01/image046542.bmp     (cropped: reg_image046542.bmp)
    HS/s1/micro/negative/s1_ne_01/...
    HS/s1/micro/surprise/s1_sur_01/...

There is no annotation sheet for the recognition clips: each clip folder holds exactly the
expression, so onset and offset are its first and last frame and there is no apex (None).
The emotion is the folder name above the clip (positive / negative / surprise). Subject folders
are kept as named (``s1``; some copies use ``sub01``). Non-micro folders (``non_micro``) are ignored.
"""

from __future__ import annotations

from pathlib import Path

from mestream.images import natural_key
from mestream.models.datasets.base import Clip, DatasetError, collect, index_frames, require_dir

NAME = "smic"
PARTS = {"HS": 100.0, "VIS": 25.0, "NIR": 25.0}


def _part_dir(root: Path, part: str) -> Path:
    if part not in PARTS:
        raise DatasetError(f"SMIC: part must be one of {', '.join(PARTS)}, got {part!r}", file=root)
    if root.name.upper() == part:
        return root
    for child in root.iterdir():
        if child.is_dir() and child.name.upper() == part:
            return child
    raise DatasetError(f"SMIC: no {part}/ folder (and the folder itself is not {part})", file=root)


def _dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=natural_key)


def read_smic(
    root: str | Path, *, part: str = "HS", fps: float | None = None, errors: str = "raise"
) -> list[Clip]:
    """SMIC clips of one part, from the folder tree alone.

    Args:
        root: the SMIC folder holding HS/VIS/NIR, or the part folder itself.
        part: "HS", "VIS" or "NIR".
        fps: frame rate (default: 100 for HS, 25 for VIS and NIR).
        errors: "raise" stops at the first bad clip folder; "skip" logs and drops it.
    """
    part = part.upper()
    base = _part_dir(require_dir(root, "SMIC"), part)
    rate = PARTS[part] if fps is None else float(fps)
    folders = []
    for subject in _dirs(base):
        micro = subject / "micro"
        if not micro.is_dir():
            continue
        for emotion in _dirs(micro):
            folders += [(subject.name, emotion.name, clip) for clip in _dirs(emotion)]
    if not folders:
        raise DatasetError(
            f"SMIC {part}: no clip folders of the form <subject>/micro/<emotion>/<clip>/", file=base
        )

    def build(subject: str, emotion: str, folder: Path) -> Clip:
        frames = index_frames(folder)
        if not frames:
            raise DatasetError("clip folder holds no numbered frames", file=folder)
        numbers = tuple(sorted(frames))
        if numbers[-1] - numbers[0] + 1 != len(numbers):
            gaps = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
            raise DatasetError(f"frame numbers are not consecutive: missing {gaps[:5]}", file=folder)
        return Clip(
            dataset=NAME,
            subject=subject,
            clip=folder.name,
            frames=tuple(frames[n] for n in numbers),
            frame_numbers=numbers,
            onset=numbers[0],
            apex=None,
            offset=numbers[-1],
            emotion=emotion,
            fps=rate,
            source=str(folder),
        )

    return collect(
        (lambda s=s, e=e, f=f: build(s, e, f) for s, e, f in folders), errors, f"SMIC {part} ({base})"
    )
