"""Seconds per epoch of one MLP in nnframe, PyTorch CPU, scikit-learn and a GEMM-only floor.

The network: 784-256-128-10, relu, relu, softmax with cross-entropy, float32, on full MNIST,
trained by one of the optimizers in OPTIMIZERS (--optimizer; plain SGD by default), with the
same algorithm and learning rate in every peer. Every peer runs in its own process (so each
one's peak RSS is its own), the peers are interleaved, and the whole round is repeated; each
optimizer gets its own table of medians and ratios nnframe / peer from the same run.

    python bench/bench_mlp.py --data-dir ../shared/data/mnist            # the full benchmark
    python bench/bench_mlp.py --optimizer sgd momentum adam --batch-sizes 64
    python bench/bench_mlp.py --synthetic 2048 --epochs 1 --repeats 1    # a smoke run

Peers that are not installed (torch, scikit-learn) are reported as such and skipped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

SIZES = (784, 256, 128, 10)
PEERS = ("nnframe", "floor", "torch", "sklearn")


@dataclass(frozen=True)
class Setting:
    """One optimizer as every peer spells it. The hyperparameters not named are the
    defaults, which agree: torch.optim.Adam's betas (0.9, 0.999) and eps 1e-8 are nnframe's
    and scikit-learn's; no weight decay, dampening or Nesterov anywhere."""

    learning_rate: float
    nnframe: tuple  # get_optimizer's arguments: (name, {hyperparameters})
    torch: tuple  # (torch.optim class name, {arguments besides lr})
    sklearn: dict  # MLPClassifier arguments
    label: str


OPTIMIZERS = {
    "sgd": Setting(0.1, ("sgd", {}), ("SGD", {"momentum": 0.0}),
                   {"solver": "sgd", "momentum": 0.0, "nesterovs_momentum": False},
                   "plain SGD, learning rate 0.1"),
    "momentum": Setting(0.01, ("sgd", {"momentum": 0.9}), ("SGD", {"momentum": 0.9}),
                        {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": False},
                        "SGD with momentum 0.9, learning rate 0.01"),
    # scikit-learn's Adam adds eps to sqrt(v) before the bias correction, torch's after it:
    # the same algorithm up to a 1e-8-sized term.
    "adam": Setting(0.001, ("adam", {}), ("Adam", {}), {"solver": "adam"},
                    "Adam (betas 0.9, 0.999, eps 1e-8), learning rate 0.001"),
}


# -- data ------------------------------------------------------------------------------------
def load_data(args):
    if args.synthetic:
        rng = np.random.default_rng(0)
        centres = rng.random((10, 784), dtype=np.float32)
        y_train = rng.integers(0, 10, args.synthetic)
        y_test = rng.integers(0, 10, max(args.synthetic // 6, 10))
        noise = np.float32(0.3)
        x_train = centres[y_train] + noise * rng.random((len(y_train), 784), dtype=np.float32)
        x_test = centres[y_test] + noise * rng.random((len(y_test), 784), dtype=np.float32)
        return x_train, y_train, x_test, y_test, f"synthetic ({args.synthetic} samples)"
    from nnframe.datasets import load_mnist, load_sample

    data = load_sample() if args.sample else load_mnist(args.data_dir, download_missing=False,
                                                        fallback=False)
    return data.x_train, data.y_train, data.x_test, data.y_test, data.source


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_time(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def initial_parameters(seed: int):
    """nnframe's initial weights and biases for this seed. The peers start from the same
    values, so that test accuracies after a few epochs compare the frameworks, not their
    default initialisations."""
    import nnframe

    net = nnframe.NeuralNetwork(4, list(SIZES), [None, "relu", "relu", "softmax"],
                                "cross_entropy", seed=seed)
    return [(layer.weights_for_layer.copy(), layer.bias_for_layer.ravel().copy())
            for layer in net.layers[:-1]]


# -- workers: each trains the same network for --epochs epochs ----------------------------------
def run_nnframe(args, x, y, xt, yt):
    import nnframe

    net = nnframe.NeuralNetwork(4, list(SIZES), [None, "relu", "relu", "softmax"],
                                "cross_entropy", seed=args.seed)
    marks = []

    def callback(state):
        if state.epoch_done:
            marks.append(time.perf_counter())

    start = time.perf_counter()
    setting = OPTIMIZERS[args.optimizer]
    name, hyperparameters = setting.nnframe
    net.train(args.batch_size, x, y, args.epochs, setting.learning_rate, seed=args.seed,
              callback=callback, optimizer=nnframe.get_optimizer(name, **hyperparameters))
    epochs = np.diff([start, *marks]).tolist()
    accuracy = net.check_accuracy(None, xt, yt)
    infer = median_time(lambda: net.predict(None, xt))
    weights = [layer.weights_for_layer for layer in net.layers[:-1]]

    def floor_pass():
        a = xt
        for w in weights:
            a = a @ w

    return {"epochs": epochs, "accuracy": accuracy, "infer": infer,
            "infer_floor": median_time(floor_pass), "trained_with": repr(net.optimizer)}


def run_floor(args, x, y, xt, yt):
    """Only the matrix products backprop needs per batch: 3 forward, 3 weight gradients and
    2 input gradients, on the same shapes and batches, with no other work."""
    rng = np.random.default_rng(args.seed)
    w = [rng.standard_normal((m, n), dtype=np.float32) for m, n in itertools.pairwise(SIZES)]
    epochs = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        floor_epoch(x, w, args.batch_size)
        epochs.append(time.perf_counter() - start)
    return {"epochs": epochs, "accuracy": None}


def floor_epoch(x, w, batch_size: int) -> None:
    """One epoch of the floor's products (also used by epoch_parts.py)."""
    for s in range(0, len(x), batch_size):
        a0 = x[s:s + batch_size]
        a1 = a0 @ w[0]
        a2 = a1 @ w[1]
        d3 = a2 @ w[2]
        d2 = d3 @ w[2].T
        d1 = d2 @ w[1].T
        _ = a2.T @ d3, a1.T @ d2, a0.T @ d1


def run_torch(args, x, y, xt, yt):
    import torch

    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    with torch.no_grad():
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        for linear, (w, b) in zip(linears, initial_parameters(args.seed), strict=True):
            linear.weight.copy_(torch.from_numpy(w.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
    loss_fn = torch.nn.CrossEntropyLoss()
    setting = OPTIMIZERS[args.optimizer]
    kind, options = setting.torch
    optimizer = getattr(torch.optim, kind)(model.parameters(), lr=setting.learning_rate,
                                           **options)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    rng = np.random.default_rng(args.seed)  # the same batches as nnframe's train(seed=...)
    epochs = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        order = torch.from_numpy(rng.permutation(len(tx)))
        for s in range(0, len(tx), args.batch_size):
            index = order[s:s + args.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(tx[index]), ty[index])
            loss.backward()
            optimizer.step()
        epochs.append(time.perf_counter() - start)
    with torch.no_grad():
        txt = torch.from_numpy(xt)
        predicted = model(txt).argmax(dim=1).numpy()
        infer = median_time(lambda: model(txt).argmax(dim=1))
    settings = {k: v for k, v in optimizer.defaults.items()
                if isinstance(v, (int, float, tuple)) and not isinstance(v, bool)}
    return {"epochs": epochs, "accuracy": float(100.0 * np.mean(predicted == yt)),
            "infer": infer, "version": torch.__version__,
            "trained_with": f"torch.optim.{kind}({settings})"}


def run_sklearn(args, x, y, xt, yt):
    import warnings

    import sklearn
    import sklearn.neural_network._multilayer_perceptron as mlp_module
    from sklearn.neural_network import MLPClassifier

    setting = OPTIMIZERS[args.optimizer]
    model = MLPClassifier(hidden_layer_sizes=SIZES[1:-1], activation="relu",
                          learning_rate="constant", learning_rate_init=setting.learning_rate,
                          alpha=0.0, batch_size=args.batch_size, shuffle=True,
                          random_state=args.seed, **setting.sklearn)
    # Start from nnframe's initial weights...
    start_values = iter(initial_parameters(args.seed))
    model._init_coef = lambda fan_in, fan_out, dtype: tuple(
        v.astype(dtype) for v in next(start_values))
    # ...and see the same batches: sklearn shuffles an index array once per epoch and gathers
    # each batch's rows from it; it is handed nnframe's permutation instead (same cost).
    rng = np.random.default_rng(args.seed)
    epoch_order = {}
    same_batches = hasattr(mlp_module, "shuffle")
    if same_batches:
        mlp_module.shuffle = lambda index, random_state=None: index[epoch_order["now"]]
    classes = np.arange(10)
    epochs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(args.epochs):
            start = time.perf_counter()
            epoch_order["now"] = rng.permutation(len(x))
            model.partial_fit(x, y, classes=classes)  # one epoch of mini-batch SGD
            epochs.append(time.perf_counter() - start)
    accuracy = float(100.0 * np.mean(model.predict(xt) == yt))
    infer = median_time(lambda: model.predict(xt))
    return {"epochs": epochs, "accuracy": accuracy, "infer": infer,
            "version": sklearn.__version__ + ("" if same_batches else " (own shuffling)"),
            "trained_with": f"MLPClassifier({setting.sklearn}, "
                            f"learning_rate_init={model.learning_rate_init})"}


WORKERS = {"nnframe": run_nnframe, "floor": run_floor, "torch": run_torch,
           "sklearn": run_sklearn}
MODULES = {"torch": "torch", "sklearn": "sklearn"}


def worker(args) -> None:
    x, y, xt, yt, _ = load_data(args)
    result = WORKERS[args.worker](args, x, y, xt, yt)
    result.update(peer=args.worker, optimizer=args.optimizer, batch_size=args.batch_size,
                  peak_rss_mb=peak_rss_mb())
    print(json.dumps(result))


# -- the parent: interleave, repeat, report ----------------------------------------------------
def available(peer: str) -> bool:
    import importlib.util

    return peer not in MODULES or importlib.util.find_spec(MODULES[peer]) is not None


def run_one(args, peer: str, optimizer: str, batch_size: int, seed: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", peer, "--optimizer",
               optimizer, "--batch-size", str(batch_size), "--epochs", str(args.epochs),
               "--seed", str(seed)]
    if args.synthetic:
        command += ["--synthetic", str(args.synthetic)]
    elif args.sample:
        command += ["--sample"]
    elif args.data_dir:
        command += ["--data-dir", args.data_dir]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"the {peer} worker failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict], args, optimizer: str) -> dict:
    """One optimizer's table: {batch size: {peer: row}}."""
    table = {}
    for bs in args.batch_sizes:
        rows = {}
        for peer in args.peers:
            # the floor has no optimizer: its runs serve every table
            mine = [r for r in runs if r["peer"] == peer and r["batch_size"] == bs
                    and (r["optimizer"] == optimizer or peer == "floor")]
            if not mine:
                continue
            # per run: the median epoch, skipping the first (warm-up) when there are several
            per_run = [statistics.median(r["epochs"][1:] or r["epochs"]) for r in mine]
            accuracies = [r["accuracy"] for r in mine if r["accuracy"] is not None]
            rows[peer] = {
                "seconds_per_epoch": statistics.median(per_run),
                "accuracy": statistics.median(accuracies) if accuracies else None,
                "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
                "infer": statistics.median([r["infer"] for r in mine if "infer" in r] or [0]),
                "infer_floor": statistics.median(
                    [r["infer_floor"] for r in mine if "infer_floor" in r] or [0]),
                "version": mine[0].get("version", ""),
            }
        base = rows.get("nnframe")
        for row in rows.values():
            row["nnframe_over_peer"] = (base["seconds_per_epoch"] / row["seconds_per_epoch"]
                                        if base else None)
        table[bs] = rows
    return table


def machine() -> str:
    import numpy

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"NumPy {numpy.__version__}")


def report(tables: dict, args, source: str) -> str:
    lines = [f"machine: {machine()}", f"data: {source}; {args.epochs} epochs x "
             f"{args.repeats} interleaved runs per peer (seeds {args.seed}.."
             f"{args.seed + args.repeats - 1}); medians", ""]
    for optimizer, table in tables.items():
        lines += _report_table(optimizer, table, args)
    return "\n".join(lines)


def _report_table(optimizer: str, table: dict, args) -> list[str]:
    lines = []
    for bs, rows in table.items():
        lines.append(f"optimizer {optimizer} ({OPTIMIZERS[optimizer].label}), batch size {bs}")
        lines.append(f"  {'peer':<22}{'s/epoch':>9}{'test acc':>10}{'peak RSS':>11}"
                     f"{'nnframe/peer':>14}")
        for peer, row in rows.items():
            acc = f"{row['accuracy']:.2f}%" if row["accuracy"] is not None else "-"
            name = f"{peer} {row['version']}".strip()
            lines.append(f"  {name:<22}{row['seconds_per_epoch']:>9.3f}{acc:>10}"
                         f"{row['peak_rss_mb']:>8.0f} MB{row['nnframe_over_peer']:>14.2f}")
        nn = rows.get("nnframe")
        if nn and nn["infer_floor"]:
            lines.append(f"  predict over {args.test_size:,} test images: nnframe "
                         f"{nn['infer'] * 1e3:.1f} ms, GEMM floor {nn['infer_floor'] * 1e3:.1f} "
                         f"ms, ratio {nn['infer'] / nn['infer_floor']:.2f}")
        lines.append("")
    return lines


def plot(tables: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(optimizer, bs) for optimizer, table in tables.items() for bs in table]
    peers = [p for p in PEERS
             if any(p in rows for table in tables.values() for rows in table.values())]
    fig, ax = plt.subplots(figsize=(max(7, 2.4 * len(groups)), 3.6))
    width = 0.8 / len(peers)
    for k, peer in enumerate(peers):
        values = [tables[o][bs].get(peer, {}).get("seconds_per_epoch", 0) for o, bs in groups]
        bars = ax.bar([i + k * width for i in range(len(groups))], values, width, label=peer)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    several = len(tables) > 1
    ax.set_xticks([i + width * (len(peers) - 1) / 2 for i in range(len(groups))],
                  [f"{o}, batch {bs}" if several else f"batch {bs}" for o, bs in groups])
    ax.set_ylabel("seconds per epoch (lower is better)")
    names = ", ".join(tables)
    ax.set_title(f"784-256-128-10 MLP, {names if several else OPTIMIZERS[names].label}, "
                 "float32, full MNIST", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", default=os.environ.get("NNFRAME_DATA_DIR"))
    source.add_argument("--sample", action="store_true", help="the embedded 5,000 images")
    source.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="N synthetic samples instead of MNIST (smoke runs)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--optimizer", nargs="+", default=["sgd"], choices=OPTIMIZERS,
                        metavar="NAME", help="one or more of " + ", ".join(OPTIMIZERS)
                        + " (default sgd), each its own table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="PATH", help="also write a bar chart (PNG)")
    parser.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        [args.optimizer] = args.optimizer
        worker(args)
        return 0
    args.optimizer = list(dict.fromkeys(args.optimizer))  # each once, in the order given
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    requested = [p.strip() for p in args.peers.split(",") if p.strip()]
    args.peers = [p for p in requested if available(p)]
    for missing in sorted(set(requested) - set(args.peers)):
        print(f"note: {missing} is not installed; skipped", file=sys.stderr)
    from nnframe.errors import DataError

    try:
        _, _, _, y_test, source_name = load_data(args)
    except DataError as exc:
        raise SystemExit(f"bench_mlp.py: {exc} (or pass --data-dir DIR, --sample or "
                         "--synthetic N)") from None
    args.test_size = len(y_test)
    runs = []
    for repeat in range(args.repeats):
        for bs in args.batch_sizes:
            order = args.peers[repeat % len(args.peers):] + args.peers[:repeat % len(args.peers)]
            for k, optimizer in enumerate(args.optimizer):
                for peer in order:  # interleaved, and rotated so no peer always goes first
                    if peer == "floor" and k:
                        continue  # the same products whatever the optimizer: once a round
                    # one seed per round: every peer starts from the same weights in a round
                    runs.append(run_one(args, peer, optimizer, bs, args.seed + repeat))
                    print(f"  run {repeat + 1}/{args.repeats} {optimizer} batch {bs} {peer}: "
                          f"{statistics.median(runs[-1]['epochs']):.3f} s/epoch",
                          file=sys.stderr)
    tables = {optimizer: summarise(runs, args, optimizer) for optimizer in args.optimizer}
    print(report(tables, args, source_name))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "data": source_name, "epochs": args.epochs,
                       "repeats": args.repeats,
                       "optimizers": {o: OPTIMIZERS[o].label for o in args.optimizer},
                       "tables": tables, "runs": runs}, f, indent=2)
    if args.plot:
        plot(tables, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
