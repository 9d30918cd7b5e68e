"""Export MESNet and AKMNet to ONNX with a manifest, and check every backend against PyTorch.

``mestream export`` exports the shipped demo checkpoints (or ``--checkpoint``) into ``--out``
(default runs/export), checking each subgraph against PyTorch as it goes. ``--check`` alone
compares every backend that can run here on the shipped export; with ``--out`` or
``--checkpoint`` it exports first and then checks that export (add ``--if-stale`` to check
an existing export without re-exporting it when it is up to date).

Exit codes: 0 all good, 1 a subgraph or backend disagrees with PyTorch, 2 a bad option,
checkpoint or export folder, or a missing extra (export needs ``mestream[train]``;
``--check`` runs on the runtime-only install).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from mestream.engine.backends import (
    BackendError,
    backend_class,
    backend_kinds,
    why_unavailable,
)
from mestream.engine.config import InferenceConfig
from mestream.engine.manifest import Manifest, ManifestError, shipped_export_dir
from mestream.export.check import check_backends, format_rows
from mestream.export.onnx_export import (
    ExportError,
    ParityError,
    checkpoint_family,
    default_checkpoints,
    export_all,
    is_stale,
)
from mestream.models.checkpoint import CheckpointError

FAMILIES = ("mesnet", "akmnet")


class UsageError(ValueError):
    """A bad option; the message names it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="[MODEL=]PATH",
        help="a checkpoint to export (repeatable); MODEL (mesnet, akmnet) is read from the file when "
        "omitted; default: both shipped demo checkpoints",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="export folder (default runs/export; with --check alone: check the shipped export)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17, the lowest supported)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare every backend that can run here on the export (random and camera inputs)",
    )
    parser.add_argument(
        "--backends",
        default="",
        metavar="A,B",
        help="the backends --check runs (default: every registered kind)",
    )
    parser.add_argument(
        "--if-stale",
        action="store_true",
        help="export only when the export in --out is missing or older than its checkpoints",
    )
    parser.add_argument(
        "--tolerance", type=float, default=1e-4, help="--check's max abs difference (default 1e-4)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch / onnxruntime threads (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def parse_checkpoints(values: list[str]) -> dict[str, Path]:
    """``[MODEL=]PATH`` values → model → path; the model is read from the file when not given."""
    out: dict[str, Path] = {}
    for value in values:
        model, sep, rest = value.partition("=")
        if sep and model in FAMILIES:
            path = Path(rest)
        elif sep and model and "/" not in model and "\\" not in model and not Path(value).exists():
            raise UsageError(f"--checkpoint {value}: unknown model {model!r}; models: {', '.join(FAMILIES)}")
        else:
            path, model = Path(value), ""
        if not model:
            model = checkpoint_family(path)
            if model not in FAMILIES:
                raise UsageError(f"--checkpoint {value}: holds a {model!r} model, which cannot be exported")
        if model in out:
            raise UsageError(f"--checkpoint {value}: a second {model} checkpoint (the first is {out[model]})")
        out[model] = path
    return out


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ParityError as exc:
        print(f"mestream export: [FAILED] {one_line(exc)}", file=sys.stderr)
        return 1
    except (UsageError, ManifestError, BackendError, CheckpointError, ExportError, OSError) as exc:
        # OSError: an --out that is a file or not writable, a full disk
        print(f"mestream export: {one_line(exc)}", file=sys.stderr)
        return 2


def one_line(exc: BaseException) -> str:
    """The message on one line: torch's and onnx.checker's errors, which ours quote, span several."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _run(args: argparse.Namespace) -> int:
    if args.opset < 17:
        raise UsageError(f"--opset {args.opset}: the subgraphs need opset 17 or newer")
    if args.threads < 1:
        raise UsageError(f"--threads {args.threads}: must be >= 1")
    if not args.tolerance >= 0:
        raise UsageError(f"--tolerance {args.tolerance}: must be >= 0")
    kinds = [k.strip() for k in args.backends.split(",") if k.strip()]
    if kinds and not args.check:
        raise UsageError("--backends only applies to --check")
    export = not (args.check and args.out is None and not args.checkpoint)
    if not export:
        return check(shipped_export_dir(), kinds, args)
    out = Path(args.out) if args.out is not None else Path("runs/export")
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx") is None:
        missing = "PyTorch" if importlib.util.find_spec("torch") is None else "the onnx package"
        raise UsageError(
            f"exporting needs {missing}, from the 'train' extra: pip install 'mestream[train]'"
            + ("; --check alone checks the shipped export without it" if args.check else "")
        )
    import torch  # lazy: torch is in the train extra

    torch.set_num_threads(args.threads)
    checkpoints = parse_checkpoints(args.checkpoint) if args.checkpoint else default_checkpoints()
    reason = is_stale(out, checkpoints, opset=args.opset) if args.if_stale else "asked for"
    if reason is None:
        print(f"{out}: up to date with {', '.join(str(p) for p in checkpoints.values())}")
    else:
        if args.if_stale:
            print(f"{out}: exporting: {reason}")
        started = time.perf_counter()
        manifest = export_all(checkpoints, out, opset=args.opset, progress=not args.no_progress)
        print(summary(manifest, time.perf_counter() - started))
    return check(out, kinds, args) if args.check else 0


def summary(manifest: Manifest, seconds: float) -> str:
    """One line per subgraph: file, parity figures; then where the manifest is."""
    lines = []
    for key, subgraph in manifest.subgraphs.items():
        figures = ", ".join(
            f"{group} {max(values.values()):.2g}" for group, values in subgraph.parity.items() if values
        )
        lines.append(f"  {key:<20} {subgraph.file:<28} max diff vs torch: {figures}")
    lines.append(
        f"exported {len(lines)} subgraphs in {seconds:.1f} s; manifest {manifest.root}/manifest.json"
    )
    return "\n".join(lines)


def check(root: Path, kinds: list[str], args: argparse.Namespace) -> int:
    manifest = Manifest.load(root)
    rows = check_backends(
        manifest, kinds or None, tol=args.tolerance, config=InferenceConfig(threads=args.threads)
    )
    if not rows:
        asked = kinds or backend_kinds()
        able = [k for k in asked if why_unavailable(backend_class(k)) is None]
        if not able:
            raise UsageError(
                f"{root}: nothing to compare: none of the backends asked for ({', '.join(asked)}) can run "
                f"here (see [SKIP] above)"
            )
        raise UsageError(
            f"{root}: nothing to compare: only {', '.join(able)} can run here and the export has no "
            f"camera inputs with recorded torch outputs (inputs.npz) to compare it with"
        )
    print(format_rows(rows, args.tolerance))
    return 0 if all(r.ok for r in rows) else 1
