"""Where and with what a result was measured: every bench result carries this, because a
latency figure without its machine, versions and commit cannot be compared with anything."""

from __future__ import annotations

import datetime
import hashlib
import importlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from mestream.engine.manifest import shipped_export_dir

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "mestream": "mestream",
    "numpy": "numpy",
    "onnxruntime": "onnxruntime",
    "opencv": "cv2",
    "torch": "torch",
    "matplotlib": "matplotlib",
}
"""Name in the results → the module whose version is recorded (whichever wheel provided it:
opencv-python or -headless, onnxruntime or onnxruntime-gpu)."""


def _version(module: str) -> str | None:
    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        pass
    try:  # a module whose distribution has another name
        return str(importlib.import_module(module).__version__)
    except (ImportError, AttributeError):
        return None


def _export() -> dict[str, Any]:
    """The model export the engine runs by default: its folder and a digest of its manifest."""
    try:
        manifest = Path(shipped_export_dir()) / "manifest.json"
        return {
            "path": str(manifest.parent),
            "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        }
    except (OSError, ImportError) as exc:
        return {"error": str(exc)}


def _proc_field(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance() -> dict[str, Any]:
    """Machine, OS, versions, git commit and date, as recorded in every results.json."""
    memory_kb = _proc_field("/proc/meminfo", "MemTotal")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_sha": _git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(status) if status is not None else None,
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(int(memory_kb.split()[0]) / 2**20, 1) if memory_kb else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(module) for name, module in PACKAGES.items()},
        "models": _export(),
    }
