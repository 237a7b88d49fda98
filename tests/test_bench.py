"""The benchmark script runs end to end on a tiny configuration, so it cannot rot.

It proves nothing about speed (that is the benchmark's job, with ratios from one run); it
checks that every peer runs and that the report, JSON and plot are produced.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_smoke_run(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_mlp.py"), "--synthetic", "1024",
         "--epochs", "2", "--repeats", "1", "--batch-sizes", "64,256",
         "--json", str(tmp_path / "bench.json"), "--plot", str(tmp_path / "bench.png")],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    expected = {"nnframe", "floor"}
    for peer, module in (("torch", "torch"), ("sklearn", "sklearn")):
        if importlib.util.find_spec(module) is not None:
            expected.add(peer)
        elif os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            # `make test` installs both peers in CI (PyTorch elsewhere with `make torch`).
            raise AssertionError(f"{module} is not installed, but CI must compare with it")
    for batch_size in ("64", "256"):
        rows = report["table"][batch_size]
        assert set(rows) == expected
        assert rows["nnframe"]["nnframe_over_peer"] == 1.0
        for peer, row in rows.items():
            assert row["seconds_per_epoch"] > 0 and row["peak_rss_mb"] > 0
            if peer != "floor":
                assert 0 <= row["accuracy"] <= 100
        assert rows["nnframe"]["infer"] > 0 and rows["nnframe"]["infer_floor"] > 0
    assert "nnframe/peer" in result.stdout and "GEMM floor" in result.stdout
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
    if "sklearn" in expected:  # it was handed nnframe's batches, not left to its own
        assert "own shuffling" not in report["table"]["64"]["sklearn"]["version"]


def test_epoch_parts_smoke_run():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "epoch_parts.py"), "--synthetic", "2048",
         "--batch-size", "64", "--repeats", "1"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()[1:]
    assert [line[2:12].strip() for line in lines] == [
        "floor", "products", "+ gather", "+ forward", "nnframe"]
    assert all(float(line[12:20]) > 0 for line in lines)  # milliseconds per epoch
