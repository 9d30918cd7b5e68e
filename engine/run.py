"""Run the pipeline: `mestream run` reads a source and publishes events until the duration
ends, the source ends, or Ctrl-C.

Exit codes: 0 finished; 1 stopped by an error (or the summary could not be written); 2 a bad
flag or config, before anything ran; 130 interrupted by Ctrl-C or SIGTERM (the log and the
summary are still written), as for `mestream bench` and any shell command killed by SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from mestream.cameras.base import SourceError
from mestream.engine.backends.base import BackendError
from mestream.engine.config import PRESETS, ConfigError, RunConfig, check_kinds, load_config, merge
from mestream.engine.pipeline import Pipeline
from mestream.engine.sinks import SinkError
from mestream.plugins import PluginError

log = logging.getLogger("mestream")

EXIT_INTERRUPTED = 130
"""128 + SIGINT, what a shell reports for a command stopped by Ctrl-C; `mestream bench` returns it too."""

FLAGS = {"source.kind": "--source", "inference.backend": "--backend"}
"""Keys `check_kinds` may name that a flag can set, so the error names what the user typed."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="TOML config file (see docs/configuration.md); flags override it"
    )
    parser.add_argument(
        "--preset",
        default="default",
        choices=sorted(PRESETS),
        help="named starting config (default: %(default)s)",
    )
    parser.add_argument(
        "--source",
        metavar="KIND",
        help="source kind: synthetic (default), video, folder, opencv, or a plugin's",
    )
    parser.add_argument("--path", metavar="PATH", help="video file or image folder to replay")
    parser.add_argument("--device", type=int, metavar="N", help="OpenCV camera device index")
    parser.add_argument("--camera", metavar="ID", help="camera id carried by the events (default cam0)")
    parser.add_argument("--fps", type=float, metavar="F", help="frame rate (synthetic default 500)")
    parser.add_argument("--resolution", metavar="WxH", help="frame size (synthetic default 640x480)")
    parser.add_argument("--seed", type=int, metavar="S", help="synthetic camera seed")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--paced",
        dest="pace",
        action="store_true",
        default=None,
        help="release frames in real time at --fps (the default for the synthetic camera and replays)",
    )
    pace.add_argument(
        "--unpaced",
        "--no-pace",
        dest="pace",
        action="store_false",
        help="read the source as fast as the pipeline takes it, losing no frame (capacity tests, replays)",
    )
    parser.add_argument(
        "--cameras", type=int, metavar="N", help="run N copies of the source (seeds seed..seed+N-1), batched"
    )
    parser.add_argument("--summary", metavar="FILE", help="write the end-of-run summary here as JSON")
    parser.add_argument(
        "--no-spot", action="store_true", help="ingest only: no face, spotting or recognition"
    )
    parser.add_argument("--no-recognise", action="store_true", help="spot only: no recognition")
    parser.add_argument("--quiet", action="store_true", help="do not print events as they are published")
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop after this much source time (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--publish",
        metavar="ENDPOINT",
        help="ZeroMQ endpoint to bind (default tcp://127.0.0.1:5556; 'none' disables)",
    )
    parser.add_argument("--log", metavar="FILE", help="append every event to this JSONL file")
    parser.add_argument(
        "--ground-truth", metavar="FILE", help="write the synthetic camera's ground truth here (JSON)"
    )
    parser.add_argument(
        "--shared-memory", metavar="NAME", help="back the frame ring with shared memory of this name"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--backend",
        metavar="KIND",
        help="inference backend: onnxruntime (default, CPU), tensorrt (GPU, mestream[gpu]), "
        "torch (eager reference, mestream[train]), or a plugin's",
    )
    parser.add_argument(
        "--models",
        metavar="DIR",
        help="export folder from `mestream export` (default: the shipped demo export)",
    )
    parser.add_argument("--threads", type=int, metavar="N", help="inference threads per stage (default 1)")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The preset, overlaid with the config file, overlaid with the flags that were given."""
    config = load_config(args.config, args.preset)
    source = {
        "kind": args.source,
        "path": args.path,
        "device": args.device,
        "name": args.camera,
        "fps": args.fps,
        "resolution": args.resolution,
        "seed": args.seed,
        "pace": args.pace,
    }
    publish = {
        "endpoint": "" if args.publish == "none" else args.publish,
        "log": args.log,
        "console": False if args.quiet else None,
    }
    top: dict[str, Any] = {
        "duration": args.duration,
        "ground_truth": args.ground_truth,
        "progress": False if args.no_progress else None,
        "cameras": args.cameras,
        "summary": args.summary,
    }
    changes = {k: v for k, v in top.items() if v is not None}
    changes["source"] = {k: v for k, v in source.items() if v is not None}
    changes["publish"] = {k: v for k, v in publish.items() if v is not None}
    if args.shared_memory:
        changes["ring"] = {"shared_memory": args.shared_memory}
    if args.no_spot:
        changes["spot"] = {"enabled": False}
    if args.no_spot or args.no_recognise:
        changes["recognise"] = {"enabled": False}
    inference = {"backend": args.backend, "models": args.models, "threads": args.threads}
    changes["inference"] = {k: v for k, v in inference.items() if v is not None}
    config = merge(config, changes)
    try:
        check_kinds(config)
    except ConfigError as exc:
        key = str(exc).partition(":")[0]
        flag = FLAGS.get(key)
        if flag and getattr(args, flag[2:]) is not None:
            raise ConfigError(f"{key} ({flag}){str(exc)[len(key) :]}") from None
        if args.config:
            raise ConfigError(f"config file {args.config}: {exc}") from None
        raise
    return config


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        pipeline = Pipeline(config)
    except (
        ConfigError,
        PluginError,
        SourceError,
        SinkError,
        BackendError,
        ValueError,
        OSError,
        MemoryError,
    ) as exc:
        print(f"mestream run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while the models or cameras opened: nothing ran, nothing to summarise
        print("mestream run: interrupted before the run started", file=sys.stderr)
        return EXIT_INTERRUPTED
    summary = pipeline.run()
    print(summary.format(), flush=True)
    if config.summary:
        try:
            pipeline.write_summary(summary)
        except (
            OSError
        ) as exc:  # checked at start; a disk that filled up since still must not lose the printout
            print(f"mestream run: cannot write the summary {config.summary}: {exc}", file=sys.stderr)
            return 1
    if summary.error:
        print(f"mestream run: stopped by an error: {summary.error}", file=sys.stderr)
        return 1
    return EXIT_INTERRUPTED if summary.interrupted else 0
