"""Sources and sinks are found through entry points, so a camera SDK package adds itself
without touching the core.

A package declares, in its own pyproject.toml::

    [project.entry-points."mestream.sources"]
    mycam = "mycam_mestream:MyCamera"

    [project.entry-points."mestream.sinks"]
    lsl = "lsl_mestream:LslSink"

    [project.entry-points."mestream.backends"]
    openvino = "ov_mestream:OpenVinoBackend"

A source class is built by ``from_config(SourceConfig)`` when it has one, else called with
the config's ``options`` table as keyword arguments. A backend class is a
`mestream.engine.backends.base.Runner` (or follows the `Backend` protocol). A sink class is built by
``from_options(options)`` when it has one, else called with the options as keywords.
mestream's own sources, sinks and backends are registered the same way, in its
pyproject.toml and nowhere else: a source tree that was never installed has no entry points,
and says so (`NotInstalled`) rather than falling back on a second list that could drift.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the engine imports this registry: these imports are for the checker only
    from mestream.cameras.base import Source
    from mestream.engine.config import SourceConfig
    from mestream.engine.sinks import Sink

SOURCE_GROUP = "mestream.sources"
SINK_GROUP = "mestream.sinks"
BACKEND_GROUP = "mestream.backends"
NOUNS = {SOURCE_GROUP: "source", SINK_GROUP: "sink", BACKEND_GROUP: "backend"}


class PluginError(LookupError):
    """A kind is not registered, or its entry point failed to load."""


class NotInstalled(PluginError):
    """mestream's own entry points are missing: the source tree was not installed."""


@dataclass(frozen=True)
class Plugin:
    """One registered source or sink kind."""

    group: str
    name: str
    target: str
    origin: str

    def load(self) -> Any:
        try:
            obj = metadata.EntryPoint(self.name, self.target, self.group).load()
        except Exception as exc:  # a broken plugin must not hide which one it was
            raise PluginError(
                f"{self.group} {self.name!r} ({self.target}, from {self.origin}) failed to load: {exc}"
            ) from exc
        return obj


def scan(group: str) -> tuple[dict[str, Plugin], dict[str, str]]:
    """``(kinds, clashes)`` of ``group``: built-ins first, then installed plugins. A plugin
    reusing a taken name is a clash, with a message naming both packages; it fails only when
    that kind is used, so one bad package cannot break every other kind.

    Raises `NotInstalled` when mestream itself registered nothing in ``group``."""
    entry_points = list(metadata.entry_points(group=group))
    found = {
        ep.name: Plugin(group, ep.name, ep.value, "mestream")
        for ep in entry_points
        if _origin(ep) == "mestream"
    }
    if not found:
        raise NotInstalled(
            f"mestream's own {NOUNS.get(group, group)} kinds are not registered (entry point "
            f"group {group!r}): this source tree was not installed. Run `pip install -e .` in "
            f"it (or `make demo`), which registers the entry points pyproject.toml declares"
        )
    clashes: dict[str, str] = {}
    for ep in entry_points:
        dist = _origin(ep)
        if dist == "mestream":
            continue
        if ep.name in found:
            clashes[ep.name] = (
                f"{group} {ep.name!r} from {dist} ({ep.value}) clashes with the one from "
                f"{found[ep.name].origin} ({found[ep.name].target}); uninstall one of them"
            )
            continue
        found[ep.name] = Plugin(group, ep.name, ep.value, dist)
    return found, clashes


def _origin(ep: metadata.EntryPoint) -> str:
    """The distribution that declared ``ep`` ("?" when importlib.metadata does not say)."""
    return ep.dist.name if ep.dist is not None else "?"


def registered(group: str) -> dict[str, Plugin]:
    """Every kind in ``group`` (a clashing plugin is left out; see `scan`)."""
    return scan(group)[0]


def lookup(group: str, kind: str) -> Any:
    """The class or factory registered as ``kind``; the error lists what is available."""
    kinds, clashing = scan(group)
    if kind in clashing:
        raise PluginError(clashing[kind])
    if kind not in kinds:
        raise PluginError(
            f"no {NOUNS.get(group, group)} kind {kind!r}; available: {', '.join(sorted(kinds))}"
        )
    return kinds[kind].load()


def _build(where: str, call: Callable[[], Any]) -> Any:
    """Turn an unknown option key into an error naming it, rather than a raw TypeError."""
    try:
        return call()
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise PluginError(f"{where}: {exc}") from None
        raise


def make_source(config: SourceConfig) -> Source:
    """Build the source a `SourceConfig` describes."""
    factory = lookup(SOURCE_GROUP, config.kind)
    if hasattr(factory, "from_config"):
        return _build("source.options", lambda: factory.from_config(config))
    return _build("source.options", lambda: factory(**dict(config.options)))


def make_sink(kind: str, options: Mapping[str, Any]) -> Sink:
    """Build a sink by kind from its options table."""
    factory = lookup(SINK_GROUP, kind)
    if hasattr(factory, "from_options"):
        return _build(f"sink {kind!r} options", lambda: factory.from_options(dict(options)))
    return _build(f"sink {kind!r} options", lambda: factory(**dict(options)))
