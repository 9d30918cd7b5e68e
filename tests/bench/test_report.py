"""bench/report.py: the CSVs, figures, Markdown section and RESULTS.md block made from one
realistic results dict, including missing sections and a machine without matplotlib."""

from __future__ import annotations

import copy
import csv
import json
import sys

import numpy as np
import pytest

from mestream.bench import report
from mestream.bench.stats import CDF_QUANTILES, cdf, percentiles

SHA = "0123456789abcdef0123456789abcdef01234567"
PNG = b"\x89PNG\r\n\x1a\n"


def _lat(rng: np.random.Generator, scale: float, n: int = 2000) -> np.ndarray:
    return rng.lognormal(np.log(scale), 0.5, n)


def _point(rng: np.random.Generator, pipeline: str, fps: float, cameras: int, dropped: int = 0) -> dict:
    stages = {"ingest": {"ring": 0.05}}.get(
        pipeline, {"face": 3.0, "sample": 12.0, "encode": 30.0, "window": 60.0}
    )
    raw = {s: _lat(rng, m) for s, m in stages.items()}
    total = sum(raw.values())
    events = {} if pipeline == "ingest" else {"spot": percentiles(_lat(rng, 300.0, 40))}
    ev_stages = (
        {}
        if pipeline == "ingest"
        else {
            "spot": {
                f"{s}_ms": percentiles(_lat(rng, 20.0, 40))
                for s in ("face", "wait", "flow", "encoder", "heads", "refine")
            }
        }
    )
    if pipeline == "spot+recog":
        events["recog"] = percentiles(_lat(rng, 450.0, 40))
        ev_stages["recog"] = {
            f"{s}_ms": percentiles(_lat(rng, 30.0, 40))
            for s in ("spot", "queue", "prepare", "encoder", "head")
        }
    frame = percentiles(total)
    res = "640x480"
    throughput = fps * cameras * {"ingest": 1.0, "spot": 0.97, "spot+recog": 0.93}[pipeline] - dropped / 20
    rep = {
        "wall_s": 22.1,
        "frames": 10000,
        "throughput_fps": throughput,
        "cpu_percent": 52.0,
        "peak_rss_mb": 410.2,
        "dropped_frames": dropped,
        "skipped_frames": 0,
        "frame_latency_ms": frame,
        "event_latency_ms": events,
        "error": "",
    }
    return {
        "id": f"{pipeline} {fps:g}fps {res} {cameras}cam onnxruntime",
        "pipeline": pipeline,
        "fps": fps,
        "resolution": res,
        "cameras": cameras,
        "backend": "onnxruntime",
        "backend_settings": {"threads": 1, "max_batch": 16, "opt_batch": 4},
        "seconds": 20.0,
        "throughput_fps": throughput,
        "cpu_percent": 52.0,
        "peak_rss_mb": 410.2,
        "dropped_frames": dropped,
        "skipped_frames": 0,
        "frame_latency_ms": frame,
        "frame_stages_ms": {s: percentiles(v) for s, v in raw.items()},
        "event_latency_ms": events,
        "event_stages_ms": ev_stages,
        "spot_f1": None if pipeline == "ingest" else 0.93,
        "recog_uf1": 0.9 if pipeline == "spot+recog" else None,
        "cdf_ms": {"total": cdf(total), **{s: cdf(v) for s, v in raw.items()}},
        "repetitions": [dict(rep), dict(rep, throughput_fps=throughput - 2.0)],
        "error": "",
    }


@pytest.fixture(scope="module")
def results() -> dict:
    rng = np.random.default_rng(7)
    points = [
        _point(rng, "spot+recog", 500.0, 1),
        _point(rng, "spot+recog", 1000.0, 1, dropped=1234),
        _point(rng, "spot+recog", 500.0, 2),
        _point(rng, "spot", 500.0, 1),
        _point(rng, "ingest", 500.0, 1),
    ]
    points[0]["cpu_percent"] = None  # a figure the run could not measure
    points[0]["cdf_ms"]["window"] = None
    pcts = percentiles(_lat(rng, 100.0, 500))
    rows = [
        {
            "system": sys_,
            "mode": mode,
            "hop_ms": 100.0,
            "throughput_fps": tp,
            "frame_latency_ms": pcts,
            "event_latency_ms": percentiles(_lat(rng, ev, 20)),
            "events": 12,
            "windows": 250,
            "skipped_windows": 0,
            "wall_s": 21.0,
            "cpu_percent": 90.0,
        }
        for sys_, mode, tp, ev in (
            ("mestream", "paced", 500.0, 300.0),
            ("baseline", "paced", 160.0, 2000.0),
            ("mestream", "unpaced", 1500.0, 200.0),
            ("baseline", "unpaced", 170.0, 2500.0),
        )
    ]
    return {
        "schema": 1,
        "command": "mestream bench --quick --out /tmp/b",
        "quick": True,
        "provenance": {
            "date": "2026-11-24T04:00:00+00:00",
            "git_sha": SHA,
            "git_dirty": True,
            "cpu_model": "AMD EPYC 7B13",
            "cores": 2,
            "memory_gib": 23.4,
            "os": "Linux-6.18-x86_64",
            "python": "3.11.7",
            "versions": {
                "mestream": "0.1.0",
                "numpy": "2.4.6",
                "onnxruntime": "1.23",
                "opencv": "4.14.0",
                "torch": None,
                "matplotlib": "3.11",
            },
        },
        "method": {
            "warmup_s": 2.0,
            "seconds": 20.0,
            "min_frames": 10000,
            "repetitions": 2,
            "p99_bound_ms": 500.0,
            "seed": 1,
            "frame_latency": "capture to end of the spot stage.",
            "event_latency": "event onset frame captured to event emitted.",
        },
        "points": points,
        "capacity": [
            {
                "pipeline": "spot+recog",
                "resolution": "640x480",
                "cameras": 1,
                "backend": "onnxruntime",
                "bound_ms": 500.0,
                "capacity_fps": 1000.0,
                "probes": [
                    {"fps": 500.0, "dropped_frames": 0, "frame_p99_ms": 210.3, "ok": True},
                    {"fps": 1000.0, "dropped_frames": 0, "frame_p99_ms": 420.0, "ok": True},
                    {"fps": 1500.0, "dropped_frames": 88, "frame_p99_ms": 2400.0, "ok": False},
                    {"fps": 2000.0, "dropped_frames": 900, "frame_p99_ms": None, "ok": False},
                ],
            }
        ],
        "baseline": {
            "stream": {
                "kind": "synthetic",
                "seed": 1,
                "fps": 500.0,
                "resolution": "640x480",
                "seconds": 20.0,
            },
            "rows": rows,
            "ratios": {
                "throughput": 3.125,
                "frame_latency_p50": 5.2,
                "frame_latency_p99": 7.0,
                "event_latency_p50": None,
                "event_latency_p99": 8.333,
            },
            "error": "",
        },
        "skipped": [{"what": "backend tensorrt", "why": "needs mestream[gpu]"}],
    }


def _bare(results: dict) -> dict:
    r = copy.deepcopy(results)
    for key in ("baseline", "capacity", "skipped"):
        r.pop(key)
    return r


def _rows(path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def figures(results, tmp_path_factory) -> list:
    return report.plot_figures(results, tmp_path_factory.mktemp("figures"))


def test_csvs_have_headers_rows_and_empty_cells_for_none(results, tmp_path):
    paths = report.write_csvs(results, tmp_path)
    assert [p.name for p in paths] == [
        "points.csv",
        "repetitions.csv",
        "stages.csv",
        "capacity.csv",
        "baseline.csv",
    ]
    points = _rows(tmp_path / "points.csv")
    assert len(points) == 5
    assert list(points[0])[:10] == [
        "id",
        "pipeline",
        "fps",
        "resolution",
        "cameras",
        "backend",
        "paced",
        "seconds",
        "throughput_fps",
        "camera_fps",
    ]
    for col in (
        "frame_p50_ms",
        "frame_p99.9_ms",
        "frame_max_ms",
        "frame_n",
        "spot_event_p99_ms",
        "recog_event_n",
        "spot_f1",
        "recog_uf1",
        "error",
    ):
        assert col in points[0]
    assert points[0]["cpu_percent"] == ""  # None
    assert points[4]["recog_event_p50_ms"] == "" and points[4]["spot_f1"] == ""  # ingest has no events
    assert float(points[1]["frame_p99_ms"]) == results["points"][1]["frame_latency_ms"]["p99"]
    assert points[1]["dropped_frames"] == "1234"
    reps = _rows(tmp_path / "repetitions.csv")
    assert (
        len(reps) == 10 and reps[1]["point_id"] == results["points"][0]["id"] and reps[1]["repetition"] == "1"
    )
    stages = _rows(tmp_path / "stages.csv")
    assert list(stages[0]) == [
        "point_id",
        "kind",
        "stage",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p99.9_ms",
        "max_ms",
        "n",
    ]
    # full pipeline: 4 frame + 6 spot + 5 recog stages, each kind with a total
    first = [s for s in stages if s["point_id"] == results["points"][0]["id"]]
    assert len(first) == 4 + 6 + 5 + 3
    assert {s["kind"] for s in first} == {"frame", "spot event", "recog event"}
    assert len([s for s in stages if s["point_id"].startswith("ingest")]) == 2  # ring + total
    capacity = _rows(tmp_path / "capacity.csv")
    assert (
        len(capacity) == 4 and capacity[3]["frame_p99_ms"] == "" and capacity[0]["capacity_fps"] == "1000.0"
    )
    baseline = _rows(tmp_path / "baseline.csv")
    assert len(baseline) == 5 and baseline[0]["system"] == "mestream"
    ratio = baseline[-1]
    assert ratio["system"].startswith("ratio") and ratio["throughput_fps"] == "3.125"
    assert ratio["frame_p99_ms"] == "7.0" and ratio["event_p50_ms"] == "" and ratio["event_p99_ms"] == "8.333"


def test_csvs_without_optional_sections(results, tmp_path):
    bare = _bare(results)
    bare["points"] = []
    assert [p.name for p in report.write_csvs(bare, tmp_path)] == ["points.csv"]
    assert len((tmp_path / "points.csv").read_text().splitlines()) == 1  # header only


def test_figures_are_pngs(figures):
    assert [p.name for p in figures] == ["latency_cdf.png", "throughput.png", "baseline.png", "capacity.png"]
    for p in figures:
        data = p.read_bytes()
        assert data[:8] == PNG and len(data) > 20_000, p


def test_figures_without_optional_sections(results, tmp_path):
    bare = _bare(results)
    bare["points"] = bare["points"][:1]  # one point: one CDF panel, no throughput chart
    assert [p.name for p in report.plot_figures(bare, tmp_path)] == ["latency_cdf.png"]
    bare["baseline"] = {"stream": {}, "rows": [], "ratios": {}, "error": "torch is not installed"}
    bare["points"][0] = dict(bare["points"][0], cdf_ms={"total": None}, throughput_fps=None)
    assert report.plot_figures(bare, tmp_path / "none") == []


def test_results_section(results):
    text = report.results_section(results)
    assert text.startswith("## Latency suite: `mestream bench`")
    assert "mestream bench --quick --out /tmp/b" in text
    assert f"git `{SHA[:10]}` (dirty)," in text and SHA[:11] not in text
    assert "AMD EPYC 7B13" in text and "torch not installed" in text and "OpenCV 4.14.0" in text
    for p in results["points"]:
        assert f"{p['frame_latency_ms']['p99']:,.1f}" in text
    assert "| spot+recog | 1,000 | 640x480 | 1 | onnxruntime | 868 |" in text  # 1000 * 0.93 - 1234 / 20
    assert "| 1,234 |" in text  # dropped frames
    assert "3.12×" in text and "favour mestream" in text and "needs mestream[gpu]" in text
    for name in ("latency_cdf", "throughput", "baseline", "capacity"):
        assert f"(figures/{name}.png)" in text
    assert "(out/latency_cdf.png)" in report.results_section(results, "out")
    assert report.results_section(copy.deepcopy(results)) == text  # deterministic


def test_results_section_without_optional_sections(results):
    bare = _bare(results)
    text = report.results_section(bare)
    assert "### Capacity" not in text and "### Against" not in text and "### Skipped" not in text
    bare["baseline"] = {"stream": {}, "rows": [], "ratios": {}, "error": "torch is not installed"}
    assert "Baseline error: torch is not installed" in report.results_section(bare)
    assert "baseline.png" not in report.results_section(bare)


def test_update_results_md_keeps_outside_and_is_idempotent(results, figures, tmp_path):
    md = tmp_path / "RESULTS.md"
    before, after = "# Benchmark results\r\n\nhand-written ✓ text\n\n", "\n## Later section\nkept\n"
    md.write_bytes((before + report.BEGIN + "\nold generated text\n" + report.END + after).encode())
    report.update_results_md(results, md, figures)
    once = md.read_bytes()
    text = once.decode()
    assert text.startswith(before) and text.endswith(report.END + after)
    assert "old generated text" not in text and "## Latency suite" in text
    assert "![Per-frame latency CDF by stage](figures/latency_cdf.png)" in text
    assert all((tmp_path / "figures" / p.name).read_bytes() == p.read_bytes() for p in figures)
    report.update_results_md(results, md, [tmp_path / "figures" / p.name for p in figures])  # same files
    assert md.read_bytes() == once
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_update_results_md_appends_and_links_only_copied_figures(results, figures, tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text("# Benchmark results\nno newline at the end")
    report.update_results_md(results, md, figures[:1])
    text = md.read_text()
    assert text.startswith("# Benchmark results\nno newline at the end\n")
    assert text.count(report.BEGIN) == 1 and text.rstrip().endswith(report.END)
    assert "figures/latency_cdf.png" in text and "figures/baseline.png" not in text
    report.update_results_md(results, md, figures[:1])
    assert md.read_text() == text


def test_update_results_md_never_leaves_half_a_file(results, tmp_path, monkeypatch):
    md = tmp_path / "RESULTS.md"
    md.write_text("intro\n")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", fail)
    with pytest.raises(OSError):
        report.update_results_md(results, md, [])
    assert md.read_text() == "intro\n" and [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]


def test_update_results_md_refuses_a_begin_without_end(results, tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text(f"intro\n{report.BEGIN}\nhalf\n")
    with pytest.raises(ValueError):
        report.update_results_md(results, md, [])
    assert md.read_text() == f"intro\n{report.BEGIN}\nhalf\n"


def test_write_all(results, tmp_path):
    r = copy.deepcopy(results)
    r["points"][0]["dropped_frames"] = np.int64(0)  # numpy scalars that slipped in
    r["points"][0]["throughput_fps"] = np.float32(498.5)
    paths = report.write_all(r, tmp_path)
    names = [p.name for p in paths]
    assert names[:6] == [
        "results.json",
        "points.csv",
        "repetitions.csv",
        "stages.csv",
        "capacity.csv",
        "baseline.csv",
    ]
    assert "latency_cdf.png" in names and all(p.exists() for p in paths)
    back = json.loads((tmp_path / "results.json").read_text())
    assert back["points"][0]["dropped_frames"] == 0 and back["points"][0]["throughput_fps"] == 498.5
    assert back["points"][0]["cpu_percent"] is None and len(back["points"][1]["cdf_ms"]["total"]) == len(
        CDF_QUANTILES
    )


def test_write_all_without_matplotlib(results, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    paths = report.write_all(_bare(results), tmp_path)
    assert [p.name for p in paths] == ["results.json", "points.csv", "repetitions.csv", "stages.csv"]
    assert not list(tmp_path.glob("*.png"))
    assert "pip install 'mestream[train]'" in caplog.text


def test_a_quick_run_draws_no_throughput_chart_of_single_points(results):
    """--quick measures each pipeline at one point: a chart of three lone markers says nothing."""
    quick = copy.deepcopy(results)
    quick["points"] = [p for p in quick["points"] if p["fps"] == 500.0 and p["cameras"] == 1]
    assert {p["pipeline"] for p in quick["points"]} == {"ingest", "spot", "spot+recog"}
    assert "throughput.png" not in report._figure_names(quick)
    assert "throughput.png" in report._figure_names(results)  # 500 and 1000 fps, 1 and 2 cameras: lines
    assert "throughput.png" not in report.results_section(quick)


def test_capacity_at_the_search_limit_reads_as_a_lower_bound(results):
    capped = copy.deepcopy(results)
    capped["capacity"][0].update(capacity_fps=4000.0, capped=True, converged=True)
    assert "| ≥ 4,000 (search limit) |" in report.results_section(capped)
    assert "| 1,000 |" in report.results_section(results)


def test_figures_unavailable_names_the_extra(monkeypatch):
    assert report.figures_unavailable() is None
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert "pip install 'mestream[train]'" in report.figures_unavailable()
