"""The export's errors, in a module of their own so that the subgraph descriptions (which need
torch) and the exporter (which must import without torch) both raise them without importing
each other."""

from __future__ import annotations


class ExportError(RuntimeError):
    """A subgraph could not be exported or checked; the message names the model subgraph."""


class ParityError(ExportError):
    """An exported subgraph computes something else than PyTorch; the message names subgraph,
    output and figure."""
