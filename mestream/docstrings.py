"""Docstring summaries, for the CLI's help and `mestream sources`: below both, so that nothing
has to import the CLI (which sits on top of every command module)."""

from __future__ import annotations


def first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph on one line: the summary for help and listings."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())
