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


def expected_peers() -> set[str]:
    expected = {"nnframe", "floor"}
    for peer, module in (("torch", "torch"), ("sklearn", "sklearn")):
        if importlib.util.find_spec(module) is not None:
            expected.add(peer)
        elif os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            # `make test` installs both peers in CI (PyTorch elsewhere with `make torch`).
            raise AssertionError(f"{module} is not installed, but CI must compare with it")
    return expected


def test_benchmark_smoke_run(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_mlp.py"), "--synthetic", "1024",
         "--epochs", "2", "--repeats", "1", "--batch-sizes", "64,256",
         "--json", str(tmp_path / "bench.json"), "--plot", str(tmp_path / "bench.png")],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    expected = expected_peers()
    assert list(report["tables"]) == ["sgd"]  # plain SGD unless told otherwise
    assert "optimizer sgd (plain SGD, learning rate 0.1), batch size 64" in result.stdout
    for batch_size in ("64", "256"):
        rows = report["tables"]["sgd"][batch_size]
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
        assert "own shuffling" not in report["tables"]["sgd"]["64"]["sklearn"]["version"]


def test_benchmark_compares_the_optimizers_asked_for(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_mlp.py"), "--synthetic", "1024",
         "--epochs", "1", "--repeats", "1", "--batch-sizes", "64",
         "--optimizer", "momentum", "adam", "--json", str(tmp_path / "bench.json")],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    expected = expected_peers()
    assert list(report["tables"]) == ["momentum", "adam"]
    for optimizer in ("momentum", "adam"):
        rows = report["tables"][optimizer]["64"]
        assert set(rows) == expected
        assert rows["nnframe"]["accuracy"] > 50  # it learned (10 well-separated classes)
        assert f"optimizer {optimizer} (" in result.stdout
    # the floor has no optimizer: run once a round, shown in every table
    assert sum(r["peer"] == "floor" for r in report["runs"]) == 1
    used = {(r["peer"], r["optimizer"]): r.get("trained_with", "") for r in report["runs"]}
    assert "'sgd'(momentum=0.9," in used["nnframe", "momentum"]
    assert "'adam'(" in used["nnframe", "adam"]
    if "torch" in expected:
        assert "SGD" in used["torch", "momentum"] and "'momentum': 0.9" in used[
            "torch", "momentum"]
        assert "Adam" in used["torch", "adam"] and "'lr': 0.001" in used["torch", "adam"]
    if "sklearn" in expected:
        assert "'momentum': 0.9" in used["sklearn", "momentum"]
        assert "'solver': 'adam'" in used["sklearn", "adam"]


def test_benchmark_refuses_an_unknown_optimizer():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_mlp.py"), "--synthetic", "64",
         "--optimizer", "rmsprop"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "invalid choice: 'rmsprop'" in result.stderr and "momentum" in result.stderr


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


def test_gpu_check_dry_run_and_its_refusals(tmp_path):
    """bench/gpu_check.py (issue 16) is run for real only where a GPU is lent; here its
    CPU-side parts run (--dry-run: the CuPy stand-in, PyTorch on the CPU if installed)."""
    script = str(ROOT / "bench" / "gpu_check.py")
    out = tmp_path / "gpu.md"
    result = subprocess.run([sys.executable, script, "--dry-run", "--skip-tests",
                             "--batch-sizes", "256", "--epochs", "1", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text()
    assert "dry run: NOT GPU numbers" in text
    assert "PASS one SGD step on standin vs the CPU, float32" in text
    assert "| 256 |" in text
    if importlib.util.find_spec("torch") is not None:
        assert "PASS equal accuracy at batch 256" in text
    missing = subprocess.run([sys.executable, script], capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 2 and "--data-dir is required" in missing.stderr
    if importlib.util.find_spec("cupy") is None:  # no GPU stack: a clear refusal, no traceback
        refused = subprocess.run([sys.executable, script, "--data-dir", str(tmp_path)],
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert "needs CuPy" in refused.stderr and "nnframe[cuda12]" in refused.stderr
