"""`mestream train <model>` and `mestream eval <model>`.

Each model keeps its own options in ``mestream.models.<model>.train`` and ``.evaluate``
(``add_arguments`` / ``run``). They are imported only when the command runs, so the rest of
the CLI, and this command's --help, work on a runtime-only install without torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mestream.models.registry import FAMILIES
from mestream.models.training import MissingExtra, require_torch

_STEPS = {"train": "train", "eval": "evaluate"}


def _add(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument("model", choices=FAMILIES, help="which network")
    parser.add_argument(
        "options",
        nargs=argparse.REMAINDER,
        help=f"the model's own options; see `mestream {verb} <model> --help`",
    )
    parser.set_defaults(_verb=verb)


def _run(args: argparse.Namespace) -> int:
    verb, model = args._verb, args.model
    try:
        require_torch(f"mestream {verb} {model}")
    except MissingExtra as exc:
        print(f"mestream {verb}: {exc}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"mestream.models.{model}.{_STEPS[verb]}")
    parser = argparse.ArgumentParser(
        prog=f"mestream {verb} {model}", description=(module.__doc__ or "").strip().split("\n\n")[0]
    )
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(args.options)) or 0)


class _Verb:
    """One verb as the CLI expects a command module: ``add_arguments`` and ``run``."""

    def __init__(self, verb: str, doc: str) -> None:
        self.verb, self.__doc__ = verb, doc

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _add(parser, self.verb)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        return _run(args)


train = _Verb(
    "train",
    "Train a network on synthetic subjects (or a dataset you hold) "
    "and write a checkpoint with its model card.",
)
evaluate = _Verb(
    "eval",
    "Evaluate a checkpoint (the shipped one by default) on held-out synthetic subjects and write metrics.",
)
