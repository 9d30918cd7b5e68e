"""Frame sources: the synthetic micro-expression camera, video files, image folders, OpenCV devices."""

from mestream.cameras.base import Frame, Source, SourceBase, SourceError

__all__ = ["Frame", "Source", "SourceBase", "SourceError"]
