"""mestream: real-time facial micro-expression spotting and recognition on high-speed cameras.

Data flows source → ring → face → flow → spot → recognise → publish; each stage has its
own module under `mestream.engine`, sources live in `mestream.cameras`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
