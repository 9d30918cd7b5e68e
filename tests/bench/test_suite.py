"""`mestream bench`: the plan its flags make, the capacity search, the ratios, and a short
`--quick` run end to end (fields, ordered percentiles, files). No timing assertions."""

import argparse
import json
import sys

import pytest

from mestream.bench import measure, suite
from mestream.bench.measure import Method, Point
from mestream.bench.stats import KEYS
from mestream.cli import build_parser, main

ORDER = ("p50", "p90", "p99", "p99.9", "max")


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *argv])


def plan(*argv: str):
    args = parse(*argv)
    return suite.plan_from_args(args, suite.method_from_args(args))


def test_default_plan_sweeps_one_axis_at_a_time_around_the_headline_point():
    p, skipped = plan()
    head = Point()
    assert p.head == head and p.points[0].pipeline == "ingest" and head in p.points
    # 3 pipelines × 3 rates, + 2 more resolutions, + 2 more camera counts, + each other backend
    backends = [s for s in skipped if s["what"] == "backend tensorrt"]
    assert backends, "no GPU here: tensorrt is listed as skipped, with why"
    others = {pt.backend for pt in p.points} - {"onnxruntime"}
    assert len(p.points) == 9 + 2 + 2 + len(others)
    assert {pt.fps for pt in p.points if pt.pipeline == "ingest"} == {200.0, 300.0, 500.0}
    assert {pt.cameras for pt in p.points} == {1, 2, 4}
    assert [c.cameras for c in p.capacity] == [1, 2, 4] and p.baseline


def test_grid_and_quick_plans():
    grid, _ = plan("--grid", "--fps", "200,500", "--cameras", "1,2", "--backends", "onnxruntime")
    assert len(grid.points) == 3 * 2 * 3 * 2
    quick, _ = plan("--quick")
    assert [pt.pipeline for pt in quick.points] == ["ingest", "spot", "spot+recog"]
    assert len(quick.capacity) == 1 and quick.capacity_probes == 4
    ingest, _ = plan("--quick", "--pipelines", "ingest")
    assert not ingest.capacity and not ingest.baseline  # nothing to search or compare without spotting


@pytest.mark.parametrize(
    "flags",
    [
        ["--pipelines", "spot,bogus"],
        ["--fps", "fast"],
        ["--fps", ","],
        ["--fps", "0"],
        ["--fps", "9000"],
        ["--cameras", "1,17"],
        ["--resolutions", "big"],
        ["--backends", "tensorrt"],
        ["--repetitions", "0"],
        ["--threads", "0"],
        ["--p99-bound-ms", "-1"],
    ],
)
def test_bad_flags_are_refused_before_anything_runs_naming_the_flag(flags, tmp_path, capsys):
    with pytest.raises(suite.BenchError) as err:
        plan(*flags)
    assert str(err.value).startswith(flags[0])
    assert main(["bench", *flags, "--out", str(tmp_path / "out")]) == 2
    assert flags[0] in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_results_page_that_cannot_be_updated_is_refused_before_the_run(tmp_path, capsys):
    from mestream.bench.report import BEGIN

    page = tmp_path / "RESULTS.md"
    page.write_text(f"# results\n{BEGIN}\nno end marker\n")
    assert (
        main(
            ["bench", "--quick", "--update-results", "--results-md", str(page), "--out", str(tmp_path / "o")]
        )
        == 2
    )
    assert "--results-md" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_the_headline_is_the_fullest_fastest_smallest_point_whatever_the_flag_order():
    p, _ = plan(
        "--fps",
        "500,200",
        "--resolutions",
        "1280x1024,640x480",
        "--cameras",
        "2,1",
        "--pipelines",
        "spot+recog,ingest",
        "--backends",
        "onnxruntime",
    )
    assert p.head == Point(pipeline="spot+recog", fps=500.0, resolution="640x480", cameras=1)
    assert [c.cameras for c in p.capacity] == [1, 2]


def test_capacity_search_brackets_the_highest_passing_rate(monkeypatch):
    limit = 1700.0

    def fake_probe(point, method, seconds):
        ok = point.fps <= limit
        return {
            "fps": point.fps,
            "dropped_frames": 0 if ok else 9,
            "skipped_frames": 0,
            "frame_p99_ms": 100.0,
            "cpu_percent": 50.0,
            "ok": ok,
            "error": "",
            "interrupted": False,
        }

    monkeypatch.setattr(measure, "probe", fake_probe)
    result = measure.capacity(Point(), Method(), seconds=1.0, max_probes=12)
    assert limit / 1.1 <= result["capacity_fps"] <= limit < result["upper_fps"]
    assert result["converged"] and not result["capped"]
    assert [p["fps"] for p in result["probes"]][:3] == [500, 1000, 2000]
    few = measure.capacity(Point(), Method(), seconds=1.0, max_probes=4)
    assert few["capacity_fps"] == 1500 and not few["converged"]  # 500, 1000, 2000 ✗, 1500: a 33 % bracket
    low = measure.capacity(Point(), Method(), seconds=1.0, start_fps=4000.0, max_probes=12)
    assert limit / 1.1 <= low["capacity_fps"] <= limit  # the start fails: searched below it
    limit = 1e9
    top = measure.capacity(Point(), Method(), seconds=1.0, max_probes=12)
    assert top["capacity_fps"] == 4000 and top["capped"]  # every probe passed: only a lower bound
    monkeypatch.setattr(
        measure, "probe", lambda point, method, seconds: {**fake_probe(point, method, seconds), "ok": False}
    )
    nothing = measure.capacity(Point(), Method(), seconds=1.0, max_probes=12)
    assert (
        nothing["capacity_fps"] is None and min(p["fps"] for p in nothing["probes"]) >= 40
    )  # never below 40 Hz


def test_a_point_that_cannot_start_is_reported_and_the_others_kept(monkeypatch, tmp_path):
    from mestream.bench import report

    def broken(point, method, seconds=None):
        raise RuntimeError("camera unplugged")

    monkeypatch.setattr(measure, "run_once", broken)
    failed = measure.measure_point(Point(), Method(repetitions=2))
    assert failed["error"] == "RuntimeError: camera unplugged" and failed["repetitions"] == []
    assert (
        failed["throughput_fps"] is None
        and failed["frame_latency_ms"]["n"] == 0
        and not failed["interrupted"]
    )
    probe = measure.probe(Point(), Method(), 1.0)
    assert not probe["ok"] and "camera unplugged" in probe["error"]
    results = {
        "command": "mestream bench",
        "provenance": {},
        "method": {},
        "points": [failed],
        "capacity": [],
        "baseline": None,
        "skipped": [],
    }
    written = report.write_all(results, tmp_path)  # the report copes with a point that has no figures
    assert "camera unplugged" in (tmp_path / "points.csv").read_text() and written


def test_an_interrupted_run_keeps_its_files_and_leaves_the_results_page_alone(monkeypatch, tmp_path):
    out, page = tmp_path / "out", tmp_path / "RESULTS.md"
    page.write_text("# results\n")
    out.mkdir()
    (out / "baseline.png").write_bytes(b"an older run's figure")
    calls = []

    def fake(point, method, **kwargs):
        calls.append(point)
        return _fake_point(point, interrupted=len(calls) == 2)

    monkeypatch.setattr(suite, "measure_point", fake)
    code = main(["bench", "--quick", "--out", str(out), "--update-results", "--results-md", str(page)])
    assert code == 130 and len(calls) == 2  # stopped at the interrupted point: nothing after it ran
    results = json.loads((out / "results.json").read_text())
    assert [p["interrupted"] for p in results["points"]] == [False, True]
    assert page.read_text() == "# results\n"  # an interrupted run never becomes the record
    assert not (out / "baseline.png").exists()  # no older run's file is left beside this run's


def _fake_point(point, interrupted=False):
    from mestream.bench.stats import percentiles

    return {
        "id": point.id,
        "pipeline": point.pipeline,
        "fps": point.fps,
        "resolution": point.resolution,
        "cameras": point.cameras,
        "backend": point.backend,
        "paced": True,
        "throughput_fps": 500.0,
        "dropped_frames": 0,
        "skipped_frames": 0,
        "frame_latency_ms": percentiles([1.0, 2.0]),
        "frame_stages_ms": {},
        "event_latency_ms": {},
        "event_stages_ms": {},
        "cdf_ms": {},
        "repetitions": [],
        "interrupted": interrupted,
        "error": "",
    }


def test_ratios_favour_the_faster_side():
    lat = lambda p50, p99: {"p50": p50, "p99": p99}  # noqa: E731
    rows = [
        {"system": "mestream", "mode": "unpaced", "hop_ms": 100.0, "throughput_fps": 3000.0},
        {
            "system": "mestream",
            "mode": "paced",
            "hop_ms": 100.0,
            "frame_latency_ms": lat(100.0, 200.0),
            "event_latency_ms": lat(150.0, 250.0),
        },
        {"system": "baseline", "mode": "unpaced", "hop_ms": 100.0, "throughput_fps": 1000.0},
        {
            "system": "baseline",
            "mode": "paced",
            "hop_ms": 100.0,
            "frame_latency_ms": lat(400.0, 1000.0),
            "event_latency_ms": None,
        },
        {"system": "baseline", "mode": "unpaced", "hop_ms": 2000.0, "throughput_fps": 9000.0},
    ]
    r = suite.ratios(rows, 100.0)
    assert r == {
        "throughput": 3.0,
        "frame_latency_p50": 4.0,
        "frame_latency_p99": 5.0,
        "event_latency_p50": None,
        "event_latency_p99": None,
    }


def test_measured_seconds_reach_the_frame_minimum():
    m = Method(seconds=20.0, min_frames=10_000)
    assert m.measured_seconds(500.0, 1) == 20.0 and m.measured_seconds(200.0, 1) == 50.0
    assert m.measured_seconds(200.0, 4) == 20.0


def ordered(pcts):
    values = [pcts[k] for k in ORDER]
    return all(v is not None for v in values) and values == sorted(values)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    page = out / "RESULTS.md"
    page.write_text("# Benchmark results\n\nkept as it is\n")
    code = main(
        [
            "bench",
            "--quick",
            "--seconds",
            "2",
            "--warmup",
            "0.5",
            "--out",
            str(out / "run"),
            "--update-results",
            "--results-md",
            str(page),
        ]
    )
    return code, out / "run", page


def test_quick_bench_writes_every_field_file_and_figure(quick):
    code, out, page = quick
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["command"].startswith("mestream bench --quick --seconds 2")
    prov = results["provenance"]
    for key in ("date", "git_sha", "cpu_model", "cores", "memory_gib", "os", "python"):
        assert prov[key], key
    assert {"numpy", "onnxruntime", "opencv", "torch"} <= set(prov["versions"])
    assert results["method"]["seconds"] == 2 and results["method"]["warmup_s"] == 0.5
    points = {p["pipeline"]: p for p in results["points"]}
    assert set(points) == {"ingest", "spot", "spot+recog"}
    for p in points.values():
        assert not p["error"] and p["frame_latency_ms"]["n"] > 0 and set(p["frame_latency_ms"]) == set(KEYS)
        assert ordered(p["frame_latency_ms"]), p["frame_latency_ms"]
        assert all(ordered(s) for s in p["frame_stages_ms"].values())
        for key in (
            "throughput_fps",
            "cpu_percent",
            "peak_rss_mb",
            "dropped_frames",
            "skipped_frames",
            "backend",
            "backend_settings",
            "repetitions",
            "cdf_ms",
        ):
            assert p[key] is not None, key
    assert set(points["ingest"]["frame_stages_ms"]) == {"ring"}
    assert set(points["spot+recog"]["frame_stages_ms"]) == {"face", "sample", "encode", "window"}
    assert set(points["spot+recog"]["event_latency_ms"]) == {"spot", "recog"}
    (search,) = results["capacity"]
    assert search["probes"] and all("ok" in p for p in search["probes"])
    base = results["baseline"]
    assert not base["error"]
    systems = {(r["system"], r["mode"]) for r in base["rows"]}
    assert systems == {
        ("mestream", "paced"),
        ("mestream", "unpaced"),
        ("baseline", "paced"),
        ("baseline", "unpaced"),
    }
    assert base["ratios"]["throughput"] is not None and base["ratios"]["frame_latency_p50"] is not None
    for name in ("points.csv", "latency_cdf.png", "baseline.png"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "throughput.png").exists()  # one point per pipeline: no chart of lone markers
    text = page.read_text()
    assert text.startswith("# Benchmark results\n\nkept as it is\n") and "mestream bench --quick" in text
    assert (page.parent / "figures" / "latency_cdf.png").exists()


def test_quick_without_torch_or_matplotlib_skips_the_baseline_and_figures_and_exits_0(
    monkeypatch, tmp_path, capsys
):
    """No torch and no matplotlib (`pip install mestream`): the bench measures what it can, says
    what it left out, and succeeds. torch is hidden, not uninstalled."""
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr(suite, "measure_point", lambda point, method, **kwargs: _fake_point(point))

    def no_baseline(*args, **kwargs):
        raise AssertionError("the baseline must not run without torch")

    monkeypatch.setattr(suite, "run_baseline_comparison", no_baseline)
    out = tmp_path / "out"
    assert main(["bench", "--quick", "--no-capacity", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["baseline"] is None
    skipped = {s["what"]: s["why"] for s in results["skipped"]}
    assert "pip install 'mestream[train]'" in skipped["naive baseline comparison"]
    assert "matplotlib is not installed" in skipped["figures"]
    assert not list(out.glob("*.png"))
    printed = capsys.readouterr().out
    assert "skipped naive baseline comparison: the baseline needs torch" in printed
    assert "skipped figures: matplotlib is not installed" in printed


def test_the_headline_reads_a_capped_capacity_as_a_lower_bound():
    capped = {
        "pipeline": "spot+recog",
        "resolution": "640x480",
        "cameras": 1,
        "capacity_fps": 4000.0,
        "capped": True,
        "converged": True,
    }
    text = suite._headline({"points": [], "capacity": [capped], "baseline": None})
    assert text == "capacity spot+recog 640x480 1cam: ≥ 4,000 fps per camera (search limit)"
    found = dict(capped, capacity_fps=1500.0, capped=False)
    text = suite._headline({"points": [], "capacity": [found], "baseline": None})
    assert text == "capacity spot+recog 640x480 1cam: 1,500 fps per camera"
