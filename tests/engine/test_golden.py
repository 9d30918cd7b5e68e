"""A seeded unpaced replay gives the same events as the recorded fixture, clock fields aside:
restructuring the engine must not change what it spots or recognises."""

import json
import math

import pytest

from tests.engine.golden import CASES, comparable, fixture_path, replay


def same(a, b, path="event"):
    """Equal, with floats compared to 1e-4 (a batch of another size may round differently)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{path}: {a!r} != {b!r}"
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_replay_matches_the_recorded_events(case, tmp_path):
    expected = json.loads(fixture_path(case).read_text())
    got = comparable(replay(CASES[case], tmp_path / "events.jsonl"))
    assert any(e["topic"] == "mestream.spot" for e in expected), (
        "the fixture must hold spots to mean anything"
    )
    assert [(e["topic"], e["camera"]) for e in got] == [(e["topic"], e["camera"]) for e in expected]
    for i, (g, e) in enumerate(zip(got, expected)):
        same(g, e, f"{case}[{i}] {e['topic']} {e['camera']} #{e['seq']}")
