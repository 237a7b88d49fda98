"""The GPU check of issue 16: nnframe on CuPy against PyTorch CUDA eager, in one run.

On a machine with a CUDA GPU, CuPy and PyTorch (no network needed: bench/gpu_prepare.sh
makes the wheels and the data folder to carry there, and prints the call), from the
repository root:

    python bench/gpu_check.py --data-dir DIR --out gpu_check.md

1. runs the device-marked tests (``pytest -m gpu``: on the stand-in and on CUDA);
2. checks that one plain-SGD step of the benchmark MLP on CUDA matches the CPU backend's to
   1e-5 in float32;
3. trains the benchmark MLP (784-256-128-10, relu, relu, softmax, cross-entropy, plain SGD
   at 0.1, float32, the same initial weights and batches) on full MNIST with nnframe on
   CuPy and with PyTorch CUDA eager, at batch sizes 64, 256, 1024 and 8192; each epoch is
   timed after a warm-up epoch, with the device synchronised at its end;
4. writes a markdown table: median seconds per epoch, test accuracy, nnframe / PyTorch, and
   the goal (at most 0.8x), plus the checks above. The exit status is 1 when a check fails.

Without CuPy or a GPU it stops at once with a message saying what is missing. ``--dry-run``
runs every step on the CPU instead (nnframe's CuPy stand-in, PyTorch on the CPU, synthetic
data), to check the script itself anywhere; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = (784, 256, 128, 10)
LEARNING_RATE = 0.1
BATCH_SIZES = (64, 256, 1024, 8192)
GOAL = 0.8  # nnframe's epoch time at most this times PyTorch eager's
STEP_TOLERANCE = 1e-5
ACCURACY_GAP = 0.5  # percentage points between the two frameworks' test accuracies


class CheckError(Exception):
    """The machine cannot run the check (no CuPy, no GPU, no PyTorch CUDA, no data)."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="directory of the full MNIST .gz files (required "
                   "unless --dry-run)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per run (after one "
                   "warm-up epoch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="gpu_check.md", help="the markdown report")
    p.add_argument("--skip-tests", action="store_true", help="skip the pytest step")
    p.add_argument("--dry-run", action="store_true", help="everything on the CPU (stand-in "
                   "device, PyTorch CPU, synthetic data): checks the script, not the GPU")
    args = p.parse_args(argv)
    if not args.dry_run and not args.data_dir:
        p.error("--data-dir is required (the full MNIST files), unless --dry-run")
    if any(b < 1 for b in args.batch_sizes) or args.epochs < 1:
        p.error("--batch-sizes and --epochs must be at least 1")
    return args


# -- the machine ------------------------------------------------------------------------------
def environment(dry_run: bool) -> dict:
    """What runs where: nnframe's device name, PyTorch's device, and their descriptions.
    Raises CheckError when the machine cannot run the check."""
    import nnframe
    from nnframe.backend import get_backend
    from nnframe.errors import DeviceUnavailableError

    info = {"python": platform.python_version(), "numpy": np.__version__,
            "nnframe": nnframe.__version__}
    if dry_run:
        info.update(device="standin", torch_device="cpu", gpu="none (dry run on the CPU)")
    else:
        try:
            get_backend("cuda")
        except DeviceUnavailableError as exc:
            raise CheckError(str(exc)) from None
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        info.update(device="cuda", torch_device="cuda", cupy=cupy.__version__,
                    gpu=name.decode() if isinstance(name, bytes) else str(name))
    try:
        import torch
    except ImportError:
        if not dry_run:
            raise CheckError("PyTorch is not installed: the check compares with PyTorch CUDA "
                             "eager (pip install torch)") from None
        info["torch"] = None
        return info
    if not dry_run and not torch.cuda.is_available():
        raise CheckError(f"PyTorch {torch.__version__} sees no CUDA device (a CPU build?); "
                         "install a CUDA build of torch")
    info["torch"] = torch.__version__
    return info


def load(args):
    """``(x_train, y_train, x_test, y_test, source)``: full MNIST, or synthetic (dry run)."""
    if args.dry_run:
        rng = np.random.default_rng(0)
        centres = rng.random((10, 784), dtype=np.float32)
        y, yt = rng.integers(0, 10, 2048), rng.integers(0, 10, 512)
        x = centres[y] + np.float32(0.3) * rng.random((len(y), 784), dtype=np.float32)
        xt = centres[yt] + np.float32(0.3) * rng.random((len(yt), 784), dtype=np.float32)
        return x, y, xt, yt, "synthetic (2,048 samples; dry run)"
    from nnframe.datasets import load_mnist
    from nnframe.errors import NNFrameError

    try:
        data = load_mnist(args.data_dir, download_missing=False, fallback=False)
    except NNFrameError as exc:
        raise CheckError(f"full MNIST is needed in --data-dir: {exc}") from None
    return data.x_train, data.y_train, data.x_test, data.y_test, data.source


def network(seed: int, device: str):
    import nnframe

    return nnframe.NeuralNetwork(4, list(SIZES), [None, "relu", "relu", "softmax"],
                                 "cross_entropy", seed=seed, device=device)


# -- the checks -----------------------------------------------------------------------------
def run_tests(dry_run: bool) -> tuple[bool, str]:
    """``pytest -m gpu`` in a fresh interpreter: (passed, its summary line)."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
               "-W", "error::RuntimeWarning", str(ROOT / "tests" / "test_device.py")]
    if dry_run:
        command += ["-k", "standin"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in result.stdout.strip().splitlines() if line.strip()]
    summary = lines[-1] if lines else result.stderr.strip()[-300:]
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-2000:], sep="\n", file=sys.stderr)
    return result.returncode == 0, summary


def one_step_difference(x, y, device: str, seed: int, rows: int = 256) -> float:
    """The largest difference between the parameters after one plain-SGD step (float32) on
    ``device`` and on the CPU, from the same initial weights and batch."""
    cpu, dev = network(seed, "cpu"), network(seed, device)
    for net in (cpu, dev):
        net.train(rows, x[:rows], y[:rows], 1, LEARNING_RATE, seed=seed)
    return max(float(np.max(np.abs(a - dev._backend.to_host(b))))
               for a, b in zip(cpu.parameters(), dev.parameters(), strict=True))


def time_nnframe(x, y, xt, yt, device: str, batch_size: int, epochs: int, seed: int) -> dict:
    """Median seconds per epoch (each ended by a device synchronisation) after a warm-up
    epoch, and the test accuracy after the timed epochs."""
    from nnframe.callbacks import Callback

    net = network(seed, device)
    backend = net._backend
    x_dev, y_dev = backend.asarray(x), backend.asarray(y)  # as a GPU user would hold them
    net.train(batch_size, x_dev, y_dev, 1, LEARNING_RATE, seed=seed)  # warm-up: kernels
    marks = []

    class EpochClock(Callback):  # at epoch ends only: no per-batch state for the timing
        def on_epoch_end(self, state):
            backend.synchronize()
            marks.append(time.perf_counter())

    backend.synchronize()
    start = time.perf_counter()
    net.train(batch_size, x_dev, y_dev, epochs, LEARNING_RATE, callbacks=[EpochClock()])
    times = np.diff([start, *marks]).tolist()
    return {"epoch_s": statistics.median(times), "epochs": times,
            "accuracy": net.check_accuracy(None, backend.asarray(xt), yt)}


def time_torch(x, y, xt, yt, device: str, batch_size: int, epochs: int, seed: int) -> dict:
    """The same network, initial weights and batches in PyTorch eager (``torch.nn``,
    ``torch.optim.SGD``), timed the same way."""
    import torch

    torch.manual_seed(seed)
    dev = torch.device(device)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10)).to(dev)
    start_net = network(seed, "cpu")
    with torch.no_grad():
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        for linear, layer in zip(linears, start_net.layers[:-1], strict=True):
            linear.weight.copy_(torch.from_numpy(layer.weights_for_layer.T.copy()))
            linear.bias.copy_(torch.from_numpy(layer.bias_for_layer.ravel().copy()))
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    tx, ty = torch.from_numpy(x).to(dev), torch.from_numpy(y.astype(np.int64)).to(dev)
    rng = np.random.default_rng(seed)  # the batches of nnframe's train(seed=...)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def epoch():
        order = torch.from_numpy(rng.permutation(len(tx))).to(dev)
        for s in range(0, len(tx), batch_size):
            index = order[s:s + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(tx[index]), ty[index])
            loss.backward()
            optimizer.step()  # no loss.item(): PyTorch at its fastest, never waiting

    epoch()  # warm-up
    times = []
    for _ in range(epochs):
        sync()
        start = time.perf_counter()
        epoch()
        sync()
        times.append(time.perf_counter() - start)
    with torch.no_grad():
        predicted = model(torch.from_numpy(xt).to(dev)).argmax(dim=1).cpu().numpy()
    return {"epoch_s": statistics.median(times), "epochs": times,
            "accuracy": float(100.0 * np.mean(predicted == yt))}


# -- the report -------------------------------------------------------------------------------
def table(rows: list[dict]) -> str:
    lines = ["| batch | nnframe (CuPy) s/epoch | PyTorch eager s/epoch | nnframe / PyTorch "
             f"| goal <= {GOAL} | nnframe acc | PyTorch acc |",
             "| ---: | ---: | ---: | ---: | :---: | ---: | ---: |"]
    for row in rows:
        torch_s = row.get("torch_s")
        ratio = row["nnframe_s"] / torch_s if torch_s else None
        lines.append(
            f"| {row['batch']:,} | {row['nnframe_s'] * 1e3:.1f} ms | "
            + (f"{torch_s * 1e3:.1f} ms | {ratio:.2f} | {'yes' if ratio <= GOAL else 'no'}"
               if torch_s else "- | - | -")
            + f" | {row['nnframe_acc']:.2f}% | "
            + (f"{row['torch_acc']:.2f}% |" if torch_s else "- |"))
    return "\n".join(lines)


def report(info: dict, source: str, checks: list[tuple[str, bool, str]], rows: list[dict],
           args) -> str:
    command = "python bench/gpu_check.py " + " ".join(sys.argv[1:])
    head = [f"# nnframe GPU check{' (dry run: NOT GPU numbers)' if args.dry_run else ''}", "",
            f"GPU: {info['gpu']}; nnframe {info['nnframe']} on {info['device']}"
            + (f" (CuPy {info['cupy']})" if "cupy" in info else "")
            + f"; PyTorch {info.get('torch') or 'not installed'} on {info['torch_device']}; "
            f"NumPy {info['numpy']}, Python {info['python']}.", "",
            f"Data: {source}. Network 784-256-128-10 relu/relu/softmax, cross-entropy, plain "
            f"SGD at {LEARNING_RATE}, float32, the same initial weights and batches in both; "
            f"median of {args.epochs} epochs after a warm-up epoch, each ended by a device "
            "synchronisation.", "", f"Command: `{command}`", "", "## Checks", ""]
    head += [f"- {'PASS' if ok else 'FAIL'} {name}: {detail}" for name, ok, detail in checks]
    return "\n".join([*head, "", "## Epoch times", "", table(rows), ""])


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        info = environment(args.dry_run)
        x, y, xt, yt, source = load(args)
    except CheckError as exc:
        print(f"gpu_check: cannot run here: {exc}", file=sys.stderr)
        return 2
    device = info["device"]
    checks = []
    if not args.skip_tests:
        ok, summary = run_tests(args.dry_run)
        checks.append(("device-marked tests (pytest -m gpu)", ok, summary))
    difference = one_step_difference(x, y, device, args.seed)
    checks.append((f"one SGD step on {device} vs the CPU, float32", difference <= STEP_TOLERANCE,
                   f"largest parameter difference {difference:.2g} (at most "
                   f"{STEP_TOLERANCE:g})"))
    rows = []
    for batch in args.batch_sizes:
        row = {"batch": batch}
        mine = time_nnframe(x, y, xt, yt, device, batch, args.epochs, args.seed)
        row.update(nnframe_s=mine["epoch_s"], nnframe_acc=mine["accuracy"])
        if info.get("torch"):
            theirs = time_torch(x, y, xt, yt, info["torch_device"], batch, args.epochs,
                                args.seed)
            row.update(torch_s=theirs["epoch_s"], torch_acc=theirs["accuracy"])
            gap = abs(mine["accuracy"] - theirs["accuracy"])
            checks.append((f"equal accuracy at batch {batch}", gap <= ACCURACY_GAP,
                           f"nnframe {mine['accuracy']:.2f}%, PyTorch "
                           f"{theirs['accuracy']:.2f}% (at most {ACCURACY_GAP} points apart)"))
        rows.append(row)
        print(f"batch {batch}: nnframe {row['nnframe_s'] * 1e3:.1f} ms/epoch"
              + (f", PyTorch {row['torch_s'] * 1e3:.1f} ms/epoch" if "torch_s" in row else ""),
              flush=True)
    text = report(info, source, checks, rows, args)
    Path(args.out).write_text(text)
    print(text)
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
