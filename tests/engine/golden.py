"""The seeded replays whose events must not change when the engine is restructured.

`python -m tests.engine.golden` (or ``python tests/engine/golden.py``) rewrites the
fixtures; do that only for a change that is meant to alter what is spotted or recognised, and
say so in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from mestream.engine.config import PublishConfig, RunConfig, SourceConfig
from mestream.engine.pipeline import Pipeline

DATA = Path(__file__).with_name("data")
SEED = 3
SECONDS = 20.0
CASES = {"one_camera": 1, "two_cameras": 2}
CLOCK_FIELDS = ("host_ns", "wall_ns", "onset_ns", "apex_ns", "offset_ns", "latency")
"""Fields that depend on when the run happened, not on what it found."""
SKIPPED_HEALTH = ("started", "stopped")
"""Health states whose text describes the run rather than the frames."""


def comparable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spot, recognition and face health events without their clock fields, in a fixed order."""
    kept = []
    for event in events:
        if event["topic"] == "mestream.stats":
            continue
        if event["topic"] == "mestream.health" and event.get("state") in SKIPPED_HEALTH:
            continue
        kept.append({k: v for k, v in event.items() if k not in CLOCK_FIELDS})
    return sorted(kept, key=lambda e: (e["topic"], e["camera"], e["seq"]))


def replay(cameras: int, log: Path) -> list[dict[str, Any]]:
    """Run the seeded synthetic camera unpaced and return what the JSONL log holds."""
    config = RunConfig(
        source=SourceConfig(pace=False, seed=SEED),
        cameras=cameras,
        duration=SECONDS,
        progress=False,
        publish=PublishConfig(endpoint="", log=str(log), console=False),
    )
    Pipeline(config).run()
    return [json.loads(line) for line in log.read_text().splitlines()]


def fixture_path(case: str) -> Path:
    return DATA / f"golden_{case}.json"


def main() -> int:
    import tempfile

    DATA.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for case, cameras in CASES.items():
            events = comparable(replay(cameras, Path(tmp) / f"{case}.jsonl"))
            fixture_path(case).write_text(json.dumps(events, indent=1) + "\n")
            print(f"wrote {fixture_path(case)}: {len(events)} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
