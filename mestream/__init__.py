"""mestream: real-time facial micro-expression spotting and recognition on high-speed cameras.

Data flows source → ring → face → flow → spot → recognise → publish; each stage has its
own module under `mestream.engine`, sources live in `mestream.cameras`.

From Python::

    from mestream import Pipeline, PublishConfig, RunConfig, SourceConfig

    config = RunConfig(source=SourceConfig(pace=False), duration=10, publish=PublishConfig(endpoint=""))
    pipeline = Pipeline(config)
    for event in pipeline.events():  # typed events as they are published; `break` stops the run
        print(event)
    print(pipeline.summary.format())
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name → module. Loaded on first use, not here: every import of a submodule (a subscriber's
# `mestream.engine.events`, the CLI) runs this file first, and the pipeline pulls in OpenCV and
# NumPy (~0.3 s, against ~0.05 s for this file alone).
_EXPORTS = {
    "Pipeline": "mestream.engine.pipeline",
    "RunConfig": "mestream.engine.config",
    "SourceConfig": "mestream.engine.config",
    "PublishConfig": "mestream.engine.config",
    "SinkConfig": "mestream.engine.config",
    "ConfigError": "mestream.engine.config",
    "Sink": "mestream.engine.sinks",
    "Event": "mestream.engine.events",
    "SpotEvent": "mestream.engine.events",
    "RecogEvent": "mestream.engine.events",
    "StatsEvent": "mestream.engine.events",
    "HealthEvent": "mestream.engine.events",
    "Summary": "mestream.engine.summary",
}

__all__ = [
    "ConfigError",
    "Event",
    "HealthEvent",
    "Pipeline",
    "PublishConfig",
    "RecogEvent",
    "RunConfig",
    "Sink",
    "SinkConfig",
    "SourceConfig",
    "SpotEvent",
    "StatsEvent",
    "Summary",
    "__version__",
]  # spelled out (the keys of _EXPORTS, checked by a test) so that linters and IDEs can read it

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time `__getattr__` provides them
    from mestream.engine.config import ConfigError, PublishConfig, RunConfig, SinkConfig, SourceConfig
    from mestream.engine.events import Event, HealthEvent, RecogEvent, SpotEvent, StatsEvent
    from mestream.engine.pipeline import Pipeline
    from mestream.engine.sinks import Sink
    from mestream.engine.summary import Summary


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mestream' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
