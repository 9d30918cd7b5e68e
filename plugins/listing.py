"""`mestream sources`: what can be plugged in here: sources, sinks and inference backends."""

from __future__ import annotations

import argparse
import sys

from mestream.docstrings import first_paragraph
from mestream.plugins import (
    BACKEND_GROUP,
    SINK_GROUP,
    SOURCE_GROUP,
    NotInstalled,
    Plugin,
    PluginError,
    scan,
)

WIDTH = 12


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-load", action="store_true", help="list entry points without importing them")


def _summary(plugin: Plugin, load: bool) -> list[str]:
    """The kind's docstring summary, and for a backend whether it can run on this machine."""
    if not load:
        return []
    try:
        kind = plugin.load()
    except PluginError as exc:
        return [f"BROKEN: {exc.__cause__ or exc}"]
    lines = [first_paragraph(kind.__doc__)]
    check = getattr(kind, "unavailable", None) if plugin.group == BACKEND_GROUP else None
    if check is not None:
        reason = check()
        lines.append(f"unavailable here: {reason}" if reason else "available here")
    return [line for line in lines if line]


def run(args: argparse.Namespace) -> int:
    for title, group in (("sources", SOURCE_GROUP), ("sinks", SINK_GROUP), ("backends", BACKEND_GROUP)):
        print(f"{title} ({group}):")
        try:
            kinds, clashing = scan(group)
        except NotInstalled as exc:
            print(f"mestream sources: {exc}", file=sys.stderr)
            return 2
        for name, plugin in sorted(kinds.items()):
            print(f"  {name:<{WIDTH}} {plugin.origin:<12} {plugin.target}")
            for line in _summary(plugin, not args.no_load):
                print(f"  {'':<{WIDTH}} {line}")
        for name, message in sorted(clashing.items()):
            print(f"  {name:<{WIDTH}} CLASH: {message}")
    return 0
