"""Where an nnframe epoch's time goes beyond the matrix products, in one process.

Times, per epoch of the benchmark's network (784-256-128-10, relu, relu, softmax), the best
of --repeats passes of each:

  floor      bench_mlp.py's floor: the 8 matrix products per batch, results thrown away
  products   the same products, the weight update folded into its gemm
  + gather   the same, on batches gathered from a shuffled index (as training does)
  + forward  plus bias, relu and softmax on the forward pass
  nnframe    a real training epoch (network.train)

    python bench/epoch_parts.py --data-dir ../shared/data/mnist --batch-size 256
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from bench_mlp import floor_epoch  # this folder is on sys.path when run as a script

import nnframe
from nnframe import _blas, ops
from nnframe.datasets import load_mnist


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("NNFRAME_DATA_DIR"))
    parser.add_argument("--synthetic", type=int, default=0, metavar="N")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.synthetic:
        rng = np.random.default_rng(0)
        x = rng.random((args.synthetic, 784), dtype=np.float32)
        y = rng.integers(0, 10, args.synthetic)
    else:
        data = load_mnist(args.data_dir, download_missing=False, fallback=False)
        x, y = data.x_train, data.y_train
    bs, n = args.batch_size, len(x)
    net = nnframe.NeuralNetwork(4, [784, 256, 128, 10], [None, "relu", "relu", "softmax"],
                                "cross_entropy", seed=0)
    weights = [layer.weights_for_layer for layer in net.layers[:-1]]
    biases = [layer.bias_for_layer for layer in net.layers[:-1]]
    order = np.random.default_rng(0).permutation(n)
    tiny = 1e-12  # the updates run but leave the weights as good as unchanged

    def backward(a0, a1, a2, d3):
        d2 = d3 @ weights[2].T
        d1 = d2 @ weights[1].T
        for a, d, w in ((a2, d3, weights[2]), (a1, d2, weights[1]), (a0, d1, weights[0])):
            if not _blas.gemm_update(a, d, w, tiny):
                w -= (a.T @ d) * tiny

    def products(gather: bool, forward_work: bool):
        for s in range(0, n, bs):
            a0 = x[order[s:s + bs]] if gather else x[s:s + bs]
            if forward_work:
                a1 = np.maximum(ops.affine(a0, weights[0], biases[0]), 0)
                a2 = np.maximum(ops.affine(a1, weights[1], biases[1]), 0)
                d3 = net.layers[3].activation_function.forward(
                    ops.affine(a2, weights[2], biases[2]))
            else:
                a1 = a0 @ weights[0]
                a2 = a1 @ weights[1]
                d3 = a2 @ weights[2]
            backward(a0, a1, a2, d3)

    def train():
        net.train(bs, x, y, 1, tiny, seed=0)

    parts = {"floor": lambda: floor_epoch(x, weights, bs),
             "products": lambda: products(False, False),
             "+ gather": lambda: products(True, False),
             "+ forward": lambda: products(True, True),
             "nnframe": train}
    best = {name: float("inf") for name in parts}
    for _ in range(args.repeats):
        for name, fn in parts.items():  # interleaved, so drift hits all alike
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    print(f"batch {bs}, {n:,} samples, best of {args.repeats}, ms per epoch:")
    previous = None
    for name, seconds in best.items():
        step = "" if previous is None else f"  ({(seconds - previous) * 1e3:+.0f})"
        print(f"  {name:<10}{seconds * 1e3:8.0f}{step}")
        previous = seconds
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
