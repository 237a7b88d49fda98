"""When does data-parallel training pay off? Measurements on this machine, and a cost model.

Measures, and reports as tables (medians of interleaved repetitions, and for compute and
epochs also the fastest run: on a shared machine the model takes those):

  compute    seconds per batch (forward, backward, update: one step of network.train, with
             its gather, loss and accuracy count) of the benchmark MLP (784-256-128-10) and
             of a 4096-wide one (784-4096-4096-10), float32, plain SGD, at several batch
             sizes, with 1 BLAS thread and with 2 (threadpoolctl)
  allreduce  seconds per mpi4py Comm.Allreduce (sum, in place) of a float32 buffer of each
             model's gradients plus 7 numbers, and of a few other sizes, with 2 ranks under
             mpiexec on this machine; a fit of latency and bandwidth to those times
  epochs     seconds per epoch on full MNIST of 1 process (2 BLAS threads) against
             `mpiexec -n 2` with train(..., distributed=True) (needs --data-dir)
  model      the ring-allreduce cost model: predicted epoch time and parallel efficiency
             for 1 to 64 nodes on 10 GbE and on InfiniBand HDR, per model and global batch,
             and for this machine (1 process x 2 threads against 2 ranks x 1 thread)

    python bench/bench_distributed.py --no-epochs --rounds 7 --json dist.json
    python bench/bench_distributed.py --data-dir ../shared/data/mnist --rounds 7 \
        --repeats 5 --epoch-batches 64 256 1024 --json dist-epochs.json
    python bench/bench_distributed.py --quick        # a smoke run: seconds, numbers rough

docs/scaling.md shows the numbers of the first two on a 2-core machine.

The cost model is `predict_epoch` (pure; tests/test_bench_distributed.py checks it by hand).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

MODELS = {"mlp": (784, 256, 128, 10), "wide": (784, 4096, 4096, 10)}
MODEL_LABELS = {"mlp": "benchmark MLP 784-256-128-10", "wide": "4096-wide 784-4096-4096-10"}
SCALARS = 7  # the numbers nnframe.distributed sends with the gradients (its _SLOTS)
# Interconnects of the model: (bandwidth in bytes/s, latency in s per message).
NETWORKS = {
    "10GbE": (1.25e9, 30e-6),  # 10 Gbit/s line rate; MPI over TCP: 20-50 us per message
    "InfiniBand HDR": (25e9, 1.5e-6),  # 200 Gbit/s; 1-2 us per message
}
NODES = (1, 2, 4, 8, 16, 32, 64)
MNIST_ROWS = 60_000
FULL = {  # batch sizes measured per model: they cover every per-rank batch the model asks for
    "mlp": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
    "wide": (1, 4, 16, 64, 256, 1024),
}
QUICK = {"mlp": (1, 16, 64, 256), "wide": (1, 16)}
GLOBAL_BATCHES = {"mlp": (64, 256, 1024, 4096), "wide": (64, 256, 1024, 4096)}


# -- the cost model (pure) ---------------------------------------------------------------------
def ring_allreduce_seconds(nbytes: float, p: int, bandwidth: float, latency: float) -> float:
    """Time of one ring allreduce of `nbytes` over `p` nodes: a reduce-scatter and an
    allgather, each p - 1 steps that send nbytes / p per node:
    2 (p - 1) / p x nbytes / bandwidth + 2 (p - 1) x latency (0 for one node)."""
    if p < 1:
        raise ValueError(f"p must be at least 1, got {p}")
    return 2 * (p - 1) / p * nbytes / bandwidth + 2 * (p - 1) * latency


def interpolate_seconds(batch: float, table: dict[int, float]) -> float:
    """Seconds per batch at `batch` rows from measured {batch size: seconds}: piecewise
    linear between measured sizes (per batch, time is close to affine in the rows: a fixed
    cost plus a cost per row), extended with the nearest segment's slope beyond them."""
    sizes = sorted(table)
    if len(sizes) == 1:
        return table[sizes[0]] * batch / sizes[0]
    i = min(max(bisect.bisect_left(sizes, batch), 1), len(sizes) - 1)
    b0, b1 = sizes[i - 1], sizes[i]
    t0, t1 = table[b0], table[b1]
    return max(t0 + (t1 - t0) * (batch - b0) / (b1 - b0), 0.0)


def predict_epoch(rows: int, global_batch: int, p: int, compute: dict[int, float],
                  nbytes: float, bandwidth: float, latency: float) -> dict[str, float]:
    """Predicted seconds per epoch of data-parallel training on `p` nodes.

    Every global batch of `global_batch` rows is split across the p nodes; the slowest node
    holds ceil(global_batch / p) of them and takes `compute` at that per-node batch size (seconds
    per batch, measured at several sizes: `interpolate_seconds`). Then one allreduce of
    `nbytes` (`ring_allreduce_seconds`), not overlapped with the computation (nnframe
    reduces once, after the whole backward pass). The last batch may be smaller. Parallel
    efficiency is the one-node epoch (the same formula at p = 1, no communication) over
    p x this one.
    """
    full, rest = divmod(rows, global_batch)
    batches = [(global_batch, full)] + ([(rest, 1)] if rest else [])

    def epoch(nodes: int) -> tuple[float, float]:
        comm = ring_allreduce_seconds(nbytes, nodes, bandwidth, latency)
        work = sum(count * interpolate_seconds(math.ceil(size / nodes), compute)
                   for size, count in batches)
        return work, comm * (full + (1 if rest else 0))

    work, comm = epoch(p)
    single = sum(epoch(1))
    total = work + comm
    return {"epoch_s": total, "compute_s": work, "comm_s": comm, "speedup": single / total,
            "efficiency": single / (p * total)}


def fit_latency_bandwidth(nbytes: list[float], seconds: list[float], p: int = 2):
    """Latency and bandwidth of the ring formula from measured allreduce times: the
    latency from the smallest message (t = 2 (p-1) x latency), the bandwidth from the
    largest once that latency is taken off (t = 2 (p-1)/p x n / bandwidth + ...). A least
    squares fit over all sizes would let the largest size alone decide, and a cache-sized
    buffer moves faster than a large one, so no straight line fits them all."""
    pairs = sorted(zip(nbytes, seconds, strict=True))
    (_, t_small), (n_large, t_large) = pairs[0], pairs[-1]
    latency = t_small / (2 * (p - 1))
    bandwidth = 2 * (p - 1) / p * n_large / (t_large - 2 * (p - 1) * latency)
    return bandwidth, latency


# -- measurements ----------------------------------------------------------------------------
def parameter_count(sizes) -> int:
    return sum(m * n + n for m, n in itertools.pairwise(sizes))


def buffer_bytes(sizes, itemsize: int = 4) -> int:
    """The allreduce buffer: every parameter's gradient plus a few scalars, float32."""
    return (parameter_count(sizes) + SCALARS) * itemsize


def seconds_per_batch(sizes, batch: int, threads: int, batches: int) -> float:
    """Median seconds per batch of one `train` epoch of `batches` batches (synthetic data),
    with the BLAS limited to `threads` threads; the first batch is left out (warm-up)."""
    from threadpoolctl import threadpool_limits

    import nnframe
    from nnframe.callbacks import Callback

    class Marks(Callback):
        def __init__(self):
            self.times = []

        def on_epoch_begin(self, state):
            self.times.append(time.perf_counter())

        def on_batch_end(self, state):
            self.times.append(time.perf_counter())

    rng = np.random.default_rng(0)
    rows = batch * (batches + 1)
    x = rng.random((rows, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], rows)
    net = nnframe.NeuralNetwork(len(sizes), list(sizes),
                                [None] + ["relu"] * (len(sizes) - 2) + ["softmax"],
                                "cross_entropy", seed=0)
    marks = Marks()
    with threadpool_limits(threads, user_api="blas"):
        net.train(batch, x, y, 1, 0.01, seed=0, callbacks=[marks])
    return float(np.median(np.diff(marks.times)[1:]))


def measure_compute(models, batch_sizes, threads=(1, 2), rounds: int = 3,
                    budget: float = 0.5) -> dict:
    """{model: {threads: {batch: median seconds}}}, configurations interleaved per round
    (the thread order alternates), each run long enough for about `budget` seconds."""
    samples: dict = {m: {t: {b: [] for b in batch_sizes[m]} for t in threads} for m in models}
    guess: dict = {}
    for r in range(-1 if rounds > 1 else 0, rounds):  # round -1: warm-up and calibration
        for model in models:
            for batch in batch_sizes[model]:
                for t in threads if r % 2 == 0 else threads[::-1]:
                    per = guess.get((model, batch, t), math.inf)
                    n = int(min(max(budget / per, 4), 200))
                    s = seconds_per_batch(MODELS[model], batch, t, n)
                    guess[model, batch, t] = s
                    if r < 0:
                        continue
                    samples[model][t][batch].append(s)
                    print(f"  compute {model} batch {batch} threads {t}: {s * 1e3:.3f} ms",
                          file=sys.stderr)
    medians = {m: {t: {b: statistics.median(v) for b, v in by_b.items()}
                   for t, by_b in by_t.items()} for m, by_t in samples.items()}
    return medians, samples


def find_mpiexec() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.access(here, os.X_OK) else shutil.which("mpiexec")


def allreduce_worker(args) -> None:
    """Under mpiexec: median seconds per Allreduce for each size (rank 0 prints JSON)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    out = {}
    for nbytes in args.sizes:
        buf = np.ones(max(nbytes // 4, 1), dtype=np.float32)
        reps = args.reps if nbytes < 1 << 22 else max(args.reps // 10, 5)
        for _ in range(3):
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        times = []
        for _ in range(reps):
            comm.Barrier()
            start = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - start)
        # a collective ends when its slowest rank does: the larger time of each repetition
        every = comm.gather(np.array(times), root=0)
        if comm.rank == 0:
            out[str(buf.nbytes)] = float(np.median(np.max(every, axis=0)))
    if comm.rank == 0:
        print(json.dumps({"ranks": comm.size, "seconds": out}))


def measure_allreduce(sizes, reps: int, ranks: int = 2) -> dict:
    mpiexec = find_mpiexec()
    if mpiexec is None:
        return {"skipped": "no mpiexec (pip install 'nnframe[mpi]')"}
    command = [mpiexec, "-n", str(ranks), sys.executable, os.path.abspath(__file__),
               "--worker", "allreduce", "--reps", str(reps), "--sizes", *map(str, sizes)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        return {"skipped": f"mpiexec failed: {result.stderr.strip()[-500:]}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def epoch_worker(args) -> None:
    """One training run on full MNIST, 1 process or a rank under mpiexec; prints seconds
    per epoch (rank 0) as JSON."""
    from threadpoolctl import threadpool_info

    import nnframe
    from nnframe.callbacks import Callback
    from nnframe.datasets import load_mnist

    class Marks(Callback):
        def __init__(self):
            self.times = []

        def on_epoch_begin(self, state):
            self.times.append(time.perf_counter())

        def on_epoch_end(self, state):
            self.times.append(time.perf_counter())
            self.threads = max((i.get("num_threads", 0) for i in threadpool_info()
                                if i.get("user_api") == "blas"), default=0)

    data = load_mnist(args.data_dir, download_missing=False, fallback=False)
    x, y = data.x_train, data.y_train
    sizes = MODELS["mlp"]
    net = nnframe.NeuralNetwork(4, list(sizes), [None, "relu", "relu", "softmax"],
                                "cross_entropy", seed=0)
    marks = Marks()
    options = {"distributed": True} if args.distributed else {}
    history = net.train(args.batch_size, x, y, args.epochs, 0.1, seed=0, callbacks=[marks],
                        **options)
    rank = 0
    if args.distributed:
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.rank
    if rank == 0:
        epochs = [b - a for a, b in zip(marks.times[0::2], marks.times[1::2], strict=True)]
        print(json.dumps({"epochs": epochs, "blas_threads": marks.threads,
                          "loss": history["loss"][-1], "accuracy": history["accuracy"][-1],
                          "test_accuracy": net.check_accuracy(None, data.x_test,
                                                              data.y_test)}))


def measure_epochs(args) -> dict:
    """Interleaved runs: 1 process with 2 BLAS threads, and mpiexec -n 2 (distributed)."""
    mpiexec = find_mpiexec()
    script = [sys.executable, os.path.abspath(__file__), "--worker", "epoch", "--data-dir",
              args.data_dir, "--epochs", str(args.epochs)]
    runs: dict = {}
    for repeat in range(args.repeats):
        for batch in args.epoch_batches:
            order = ("1x2", "2x1") if repeat % 2 == 0 else ("2x1", "1x2")
            for config in order:
                command = [*script, "--batch-size", str(batch)]
                env = dict(os.environ)
                if config == "2x1":
                    if mpiexec is None:
                        continue
                    command = [mpiexec, "-n", "2", *command, "--distributed"]
                else:
                    env["OPENBLAS_NUM_THREADS"] = "2"
                result = subprocess.run(command, capture_output=True, text=True, env=env,
                                        timeout=1200)
                if result.returncode != 0:
                    return {"skipped": f"{config} batch {batch} failed: "
                                       f"{result.stderr.strip()[-800:]}"}
                run = json.loads(result.stdout.strip().splitlines()[-1])
                run["load_average"] = os.getloadavg()
                runs.setdefault(str(batch), {}).setdefault(config, []).append(run)
                print(f"  epochs {config} batch {batch}: "
                      + ", ".join(f"{e:.3f}" for e in run["epochs"]), file=sys.stderr)
    table = {}
    for batch, by_config in runs.items():
        table[batch] = {}
        for config, rs in by_config.items():
            later = [e for r in rs for e in r["epochs"][1:]] or [e for r in rs
                                                                 for e in r["epochs"]]
            table[batch][config] = {"seconds_per_epoch": statistics.median(later),
                                    "fastest_epoch": min(later),
                                    "blas_threads": rs[0]["blas_threads"],
                                    "test_accuracy": statistics.median(
                                        r["test_accuracy"] for r in rs)}
    return {"table": table, "runs": runs}


def this_machine(best: dict, allreduce: dict, batches=(64, 256, 1024)) -> dict:
    """The model on this machine: 1 process with 2 BLAS threads against 2 ranks of 1
    thread each, with the allreduce time measured for each model's buffer (at p = 2 the
    ring's bytes factor is 1: bandwidth = bytes / time, latency included)."""
    out: dict = {}
    for model, by_threads in best.items():
        nbytes = buffer_bytes(MODELS[model])
        measured = allreduce.get("seconds", {}).get(str(nbytes))
        if measured is None or 1 not in by_threads or 2 not in by_threads:
            continue
        out[model] = {str(b): {
            "1x2": predict_epoch(MNIST_ROWS, b, 1, by_threads[2], nbytes, math.inf, 0.0),
            "2x1": predict_epoch(MNIST_ROWS, b, 2, by_threads[1], nbytes, nbytes / measured,
                                 0.0)} for b in batches}
    return out


# -- the report ------------------------------------------------------------------------------
def model_tables(compute: dict, threads: int, rows: int = MNIST_ROWS,
                 networks=NETWORKS, nodes=NODES, global_batches=GLOBAL_BATCHES) -> dict:
    """{model: {network: {global batch: {p: prediction}}}} from the measured compute of
    one node (`threads` BLAS threads)."""
    out: dict = {}
    for model, by_threads in compute.items():
        table = by_threads[threads]
        nbytes = buffer_bytes(MODELS[model])
        out[model] = {}
        for name, (bandwidth, latency) in networks.items():
            out[model][name] = {
                str(b): {str(p): predict_epoch(rows, b, p, table, nbytes, bandwidth, latency)
                         for p in nodes}
                for b in global_batches[model]}
    return out


def report(result: dict) -> str:
    m = result["machine"]
    lines = [f"{m['cpus']} CPUs, {m['processor']}; load average (1, 5, 15 "
             f"min) before {', '.join(f'{x:.2f}' for x in m['load_average_before'])}, after "
             f"{', '.join(f'{x:.2f}' for x in m['load_average'])}"]
    compute = result["compute"]
    for model, by_threads in compute.items():
        best = result["compute_best"][model]
        lines.append(f"\n{MODEL_LABELS[model]}: ms per batch (forward, backward, update), "
                     f"median and fastest of {len(result['compute_samples'][model]['1']['1'])}"
                     f" runs")
        threads = sorted(by_threads, key=int)
        lines.append("  batch " + "".join(f"{t + ' thread' + ('s' if t != '1' else ''):>20}"
                                          for t in map(str, threads))
                     + "   1 / 2 threads (fastest)")
        for b in sorted(by_threads[threads[0]], key=int):
            row = [(by_threads[t][b], best[t][b]) for t in threads]
            ratio = row[0][1] / row[-1][1] if len(row) > 1 else 1.0
            lines.append(f"  {b:>5}" + "".join(f"{f'{m * 1e3:.3f} ({f * 1e3:.3f})':>20}"
                                               for m, f in row) + f"{ratio:10.2f}")
    allreduce = result["allreduce"]
    if "skipped" in allreduce:
        lines.append(f"\nallreduce: skipped ({allreduce['skipped']})")
    else:
        lines.append(f"\nAllreduce, {allreduce['ranks']} ranks on this machine (median us):")
        labels = {str(buffer_bytes(MODELS[m])): m for m in MODELS}
        for nbytes, s in sorted(allreduce["seconds"].items(), key=lambda kv: int(kv[0])):
            label = f"   {MODEL_LABELS[labels[nbytes]]}" if nbytes in labels else ""
            lines.append(f"  {int(nbytes):>11,} bytes {s * 1e6:12.1f}{label}")
        if "fit" in allreduce:
            bw, lat = allreduce["fit"]["bandwidth"], allreduce["fit"]["latency"]
            lines.append(f"  fit: latency {lat * 1e6:.1f} us, bandwidth {bw / 1e9:.2f} GB/s")
    epochs = result.get("epochs")
    if epochs:
        if "skipped" in epochs:
            lines.append(f"\nepochs: skipped ({epochs['skipped']})")
        else:
            lines.append("\nFull MNIST, benchmark MLP, seconds per epoch, median (fastest) "
                         "of epochs 2 on:")
            lines.append("  batch   1 process x 2 threads   mpiexec -n 2 x 1 thread   ratio")
            for b, row in epochs["table"].items():
                one, two = (row.get(k, {}) for k in ("1x2", "2x1"))
                cells = [f"{f'{c.get(k1, math.nan):.3f} ({c.get(k2, math.nan):.3f})':>{w}}"
                         for c, w in ((one, 23), (two, 25))
                         for k1, k2 in [("seconds_per_epoch", "fastest_epoch")]]
                ratio = two.get("seconds_per_epoch", math.nan) / one.get(
                    "seconds_per_epoch", math.nan)
                lines.append(f"  {b:>5} {cells[0]} {cells[1]} {ratio:7.2f}")
    if result.get("this_machine"):
        lines.append("\nThe model on this machine, seconds per epoch of MNIST (fastest compute "
                     "runs, measured allreduce):")
        lines.append("  model  batch   1 process x 2 threads   2 ranks x 1 thread   ratio")
        for name, by_batch in result["this_machine"].items():
            for b, row in by_batch.items():
                one, two = row["1x2"]["epoch_s"], row["2x1"]["epoch_s"]
                lines.append(f"  {name:>5} {b:>6} {one:23.3f} {two:20.3f} {two / one:7.2f}")
    model = result["model"]
    lines.append(f"\nCost model: {result['rows']} rows per epoch, one node = this machine with "
                 f"{result['node_threads']} BLAS threads (fastest runs); seconds per epoch "
                 f"(parallel efficiency)")
    for name, by_network in model.items():
        for network, by_batch in by_network.items():
            bandwidth, latency = NETWORKS[network]
            lines.append(f"\n{MODEL_LABELS[name]}, {network} ({bandwidth / 1e9:g} GB/s, "
                         f"{latency * 1e6:g} us)")
            lines.append("  nodes" + "".join(f"{'batch ' + b:>18}" for b in by_batch))
            for p in map(str, NODES):
                cells = [by_batch[b][p] for b in by_batch]
                lines.append(f"  {p:>5}" + "".join(
                    f"{c['epoch_s']:10.3f} ({c['efficiency']:4.0%})" for c in cells))
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import nnframe

    return {"platform": platform.platform(), "processor": cpu_name(),
            "load_average": os.getloadavg(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "nnframe": nnframe.__version__}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data-dir", default=os.environ.get("NNFRAME_DATA_DIR"),
                        help="full MNIST, for the epoch timings (skipped without it)")
    parser.add_argument("--json", metavar="OUT", help="write every number to this file")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: few batch sizes, few repetitions, no epochs")
    parser.add_argument("--rounds", type=int, default=3, help="compute rounds (interleaved)")
    parser.add_argument("--reps", type=int, default=2000,
                        help="allreduce repetitions per size (a tenth for 4 MB and more)")
    parser.add_argument("--epoch-batches", type=int, nargs="+", default=[64, 256],
                        metavar="B", help="batch sizes of the end-to-end runs")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per end-to-end run")
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end runs per setting")
    parser.add_argument("--no-epochs", action="store_true", help="skip the end-to-end runs")
    parser.add_argument("--worker", choices=("allreduce", "epoch"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "allreduce":
        allreduce_worker(args)
        return 0
    if args.worker == "epoch":
        epoch_worker(args)
        return 0

    sizes = QUICK if args.quick else FULL
    load_before = os.getloadavg()
    rounds = 1 if args.quick else args.rounds
    compute, samples = measure_compute(list(MODELS), sizes, rounds=rounds,
                                       budget=0.05 if args.quick else 0.5)
    buffers = sorted({4, 4096, 65536, 1 << 20, 1 << 23,
                      *(buffer_bytes(MODELS[m]) for m in MODELS)})
    if args.quick:
        buffers = [4, buffer_bytes(MODELS["mlp"])]
    allreduce = measure_allreduce(buffers, 50 if args.quick else args.reps)
    if "seconds" in allreduce and len(allreduce["seconds"]) > 1:
        n = [int(k) for k in allreduce["seconds"]]
        bw, lat = fit_latency_bandwidth(n, list(allreduce["seconds"].values()),
                                        allreduce["ranks"])
        allreduce["fit"] = {"bandwidth": bw, "latency": lat}
    epochs = None
    if not (args.quick or args.no_epochs):
        epochs = (measure_epochs(args) if args.data_dir
                  else {"skipped": "no --data-dir (full MNIST)"})
    # The model takes each setting's fastest run: on a shared machine other jobs slow
    # some runs down (the 2-thread ones most), and the model is about this machine, not
    # about its neighbours. The medians are reported beside them.
    best = {m: {t: {b: min(v) for b, v in by_b.items()} for t, by_b in by_t.items()}
            for m, by_t in samples.items()}
    node_threads = max(compute["mlp"])
    result = {"machine": {**machine(), "load_average_before": load_before},
              "rows": MNIST_ROWS, "node_threads": node_threads,
              "compute": compute, "compute_best": best, "compute_samples": samples,
              "allreduce": allreduce,
              "epochs": epochs,
              "networks": {k: {"bandwidth": b, "latency": lat}
                           for k, (b, lat) in NETWORKS.items()},
              "buffer_bytes": {m: buffer_bytes(MODELS[m]) for m in MODELS},
              "model": model_tables(best, node_threads)}
    result["this_machine"] = this_machine(best, allreduce)
    print(report(json.loads(json.dumps(result))))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
