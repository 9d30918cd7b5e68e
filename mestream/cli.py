"""The `mestream` command. Each subcommand lives beside the code it drives and exposes
``add_arguments(parser)`` and ``run(args) -> int`` (a module, or an object named as
``module:attribute``); later issues add theirs to COMMANDS."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from mestream import __version__
from mestream.docstrings import first_paragraph

COMMANDS = {
    "run": ("mestream.engine.run", "run the pipeline: source → ring → … → published events"),
    "listen": ("mestream.engine.listen", "subscribe to a running engine and print or log its events"),
    "sources": (
        "mestream.plugins.listing",
        "list the source, sink and backend kinds, built-in and from plugins",
    ),
    "train": (
        "mestream.models.commands:train",
        "train MESNet or AKMNet and write a checkpoint with its model card",
    ),
    "eval": ("mestream.models.commands:evaluate", "evaluate MESNet or AKMNet on held-out synthetic subjects"),
    "export": (
        "mestream.export.command",
        "export the models to ONNX with a manifest; --check compares every backend",
    ),
    "bench": (
        "mestream.bench.suite",
        "latency and throughput benchmarks, with a naive baseline, plots and provenance",
    ),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; given the command line ``argv``, only the command it names
    is imported (each command module imports what it drives at its top, so loading all of them
    would make `mestream listen` pay for the exporter and the training code)."""
    parser = argparse.ArgumentParser(
        prog="mestream", description="Real-time facial micro-expression spotting and recognition."
    )
    parser.add_argument("--version", action="version", version=f"mestream {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, (target, help_text) in COMMANDS.items():
        if named is not None and name != named:
            sub.add_parser(name, help=help_text)  # listed in --help; its options load when it is the command
            continue
        module_name, _, attribute = target.partition(":")
        module = importlib.import_module(module_name)
        if attribute:
            module = getattr(module, attribute)
        command = sub.add_parser(
            name, help=help_text, description=first_paragraph(module.__doc__) or help_text
        )
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    args.command_line = ["mestream", *argv]  # as typed, for results that record it
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:  # `mestream sources | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
