"""bench/bench_distributed.py: its cost model against numbers worked out by hand, and a
smoke run of the script (which proves nothing about speed)."""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import nnframe

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "bench_distributed.py"


def load():
    spec = importlib.util.spec_from_file_location("bench_distributed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load()


def test_ring_allreduce_by_hand():
    ring = bench.ring_allreduce_seconds
    assert ring(1e9, 1, 1e9, 1e-3) == 0.0  # one node sends nothing
    # p = 2: the bytes factor 2 (p-1)/p is 1.0, and 2 (p-1) = 2 latencies
    assert ring(1e9, 2, 1e9, 1e-3) == pytest.approx(1.0 + 0.002)
    # p = 4: 1.5 x the bytes, 6 latencies
    assert ring(1e9, 4, 1e9, 1e-3) == pytest.approx(1.5 + 0.006)
    # 940,600 bytes (the benchmark MLP's gradients) over 10 GbE at 64 nodes:
    # 2 x 63/64 x 940600 / 1.25e9 = 1.48144e-3 s, plus 126 x 30 us = 3.78e-3 s
    assert ring(940_600, 64, 1.25e9, 30e-6) == pytest.approx(1.48144e-3 + 3.78e-3)
    # many nodes: the bytes factor tends to 2, the latency term grows linearly
    assert ring(1.0, 10**6, 1.0, 0.0) == pytest.approx(2.0, rel=1e-5)
    with pytest.raises(ValueError):
        ring(1.0, 0, 1.0, 0.0)


def test_interpolation_is_piecewise_linear_and_extends_the_end_segments():
    table = {1: 1.0, 3: 2.0, 7: 10.0}
    f = bench.interpolate_seconds
    assert f(1, table) == 1.0 and f(3, table) == 2.0 and f(7, table) == 10.0
    assert f(2, table) == pytest.approx(1.5)
    assert f(5, table) == pytest.approx(6.0)
    assert f(9, table) == pytest.approx(14.0)  # the last slope, 2 per row
    assert f(0, {2: 3.0, 4: 4.0}) == pytest.approx(2.0)  # the first slope, backwards
    assert f(0, {2: 1.0, 4: 4.0}) == 0.0  # never negative
    assert f(5, {10: 2.0}) == pytest.approx(1.0)  # one point: proportional to rows


def test_predict_epoch_by_hand():
    # 1000 rows, global batch 100: 10 batches. Compute is 1 ms + 0.1 ms per row.
    compute = {1: 1.1e-3, 1000: 101e-3}
    one = bench.predict_epoch(1000, 100, 1, compute, 4e6, 1e9, 10e-6)
    assert one["epoch_s"] == pytest.approx(10 * 11e-3)
    assert one["comm_s"] == 0.0 and one["efficiency"] == pytest.approx(1.0)
    # 4 nodes: 25 rows each (3.5 ms), and per batch 1.5 x 4 ms + 6 x 10 us = 6.06 ms
    four = bench.predict_epoch(1000, 100, 4, compute, 4e6, 1e9, 10e-6)
    assert four["compute_s"] == pytest.approx(10 * 3.5e-3)
    assert four["comm_s"] == pytest.approx(10 * 6.06e-3)
    assert four["epoch_s"] == pytest.approx(0.0956)
    assert four["speedup"] == pytest.approx(0.110 / 0.0956)
    assert four["efficiency"] == pytest.approx(0.110 / (4 * 0.0956))
    # a last, smaller batch: 1050 rows = 10 batches of 100 and one of 50 (13 rows per node
    # at p = 4, the slowest node's share); 11 allreduces
    last = bench.predict_epoch(1050, 100, 4, compute, 4e6, 1e9, 10e-6)
    assert last["compute_s"] == pytest.approx(10 * 3.5e-3 + 2.3e-3)
    assert last["comm_s"] == pytest.approx(11 * 6.06e-3)


def test_free_communication_scales_perfectly_when_compute_is_proportional():
    compute = {1: 1e-3, 64: 64e-3}
    for p in (2, 4, 8, 16, 32, 64):
        result = bench.predict_epoch(6400, 64, p, compute, 1e6, math.inf, 0.0)
        assert result["efficiency"] == pytest.approx(1.0)


def test_buffer_and_fit():
    assert bench.parameter_count(bench.MODELS["mlp"]) == 235_146
    assert bench.buffer_bytes(bench.MODELS["mlp"]) == (235_146 + bench.SCALARS) * 4
    # the numbers nnframe's distributed training sends with the gradients in one buffer
    from nnframe import distributed
    assert bench.SCALARS == len(distributed._SLOTS)
    # latency from the smallest message (2 (p-1) of them), bandwidth from the largest:
    # p = 2: 6 us / 2 = 3 us; (8e6 bytes) / (1.606 ms - 6 us) = 5 GB/s
    bandwidth, latency = bench.fit_latency_bandwidth([8e6, 4, 4096], [1.606e-3, 6e-6, 1e-5])
    assert bandwidth == pytest.approx(5e9) and latency == pytest.approx(3e-6)
    # p = 4: 6 messages, 1.5 x the bytes
    bandwidth, latency = bench.fit_latency_bandwidth([4, 8e6], [6e-6, 2.406e-3], p=4)
    assert bandwidth == pytest.approx(5e9) and latency == pytest.approx(1e-6)


def test_help():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert "--quick" in result.stdout and "--data-dir" in result.stdout
    assert "--json" in result.stdout


def test_quick_run(tmp_path):
    out = tmp_path / "dist.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    for model in ("mlp", "wide"):
        for threads in ("1", "2"):
            assert all(s > 0 for s in report["compute"][model][threads].values())
        for network in ("10GbE", "InfiniBand HDR"):
            cells = report["model"][model][network]
            assert set(cells["64"]) == {"1", "2", "4", "8", "16", "32", "64"}
            assert cells["64"]["1"]["efficiency"] == pytest.approx(1.0)
    allreduce = report["allreduce"]
    if bench.find_mpiexec() and importlib.util.find_spec("mpi4py"):
        assert str(bench.buffer_bytes(bench.MODELS["mlp"])) in allreduce["seconds"]
        assert "Allreduce, 2 ranks" in result.stdout
    else:
        assert "skipped" in allreduce
    assert "Cost model" in result.stdout and "InfiniBand" in result.stdout


def test_the_scaling_guide_script_runs_under_mpiexec(tmp_path):
    # docs/scaling.md shows train_mpi.py as text (test_docs runs python blocks in-process,
    # without mpiexec): here it runs as the page says, on 2 ranks, offline on the sample.
    page = (ROOT / "docs" / "scaling.md").read_text()
    match = re.search(r"^```text\n# train_mpi\.py\n(.*?)^```", page, re.S | re.M)
    assert match, "docs/scaling.md lost its train_mpi.py example"
    mpiexec = bench.find_mpiexec()
    if mpiexec is None or importlib.util.find_spec("mpi4py") is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("make test installs nnframe[mpi]: mpiexec and mpi4py must be here")
        pytest.skip("needs pip install 'nnframe[mpi]'")
    script = tmp_path / "train_mpi.py"
    script.write_text(match.group(1))
    env = {key: value for key, value in os.environ.items() if key != "NNFRAME_DATA_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"),
               NNFRAME_MNIST_MIRRORS="http://127.0.0.1:9/",
               PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([mpiexec, "-n", "2", sys.executable, str(script)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    net = nnframe.NeuralNetwork.load(tmp_path / "model.pkl")
    assert net.epochs == 10
