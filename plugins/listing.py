"""`mestream sources`: what can be plugged in here (sources, sinks, backends)."""

from __future__ import annotations

import argparse

from mestream.plugins import BACKEND_GROUP, SINK_GROUP, SOURCE_GROUP, PluginError, scan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-load", action="store_true", help="list entry points without importing them")


def _summary(plugin, load: bool) -> str:
    if not load:
        return ""
    from mestream.cli import first_paragraph

    try:
        return first_paragraph(plugin.load().__doc__)
    except PluginError as exc:
        return f"BROKEN: {exc.__cause__ or exc}"


def run(args: argparse.Namespace) -> int:
    for title, group in (("sources", SOURCE_GROUP), ("sinks", SINK_GROUP), ("backends", BACKEND_GROUP)):
        print(f"{title} ({group}):")
        kinds, clashing = scan(group)
        for name, plugin in sorted(kinds.items()):
            print(f"  {name:<10} {plugin.origin:<12} {plugin.target}")
            summary = _summary(plugin, not args.no_load)
            if summary:
                print(f"  {'':<10} {summary}")
        for name, message in sorted(clashing.items()):
            print(f"  {name:<10} CLASH: {message}")
    return 0
