"""Make the MNIST sample that ships inside nnframe (nnframe/data/mnist_sample/).

4,000 training images (the first 400 of each digit in MNIST's training file) and 1,000 test
images (the first 100 of each digit in MNIST's test file), in file order, as the same four
gzipped IDX files full MNIST comes in. MNIST is by Yann LeCun, Corinna Cortes and
Christopher J. C. Burges (CC BY-SA 3.0); see nnframe/data/mnist_sample/README.md.

    python tests/make_mnist_sample.py /path/to/full/mnist [OUT_DIR]

The output is byte-for-byte reproducible (gzip with mtime 0); tests/test_sample.py checks
that the shipped files are exactly what this script makes from full MNIST.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np

PER_DIGIT = {"train": 400, "t10k": 100}


def first_per_digit(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of the first ``count`` images of each digit, in file order."""
    keep = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        keep[np.flatnonzero(labels == digit)[:count]] = True
    return np.flatnonzero(keep)


def idx_bytes(array: np.ndarray) -> bytes:
    header = (0x0800 | array.ndim).to_bytes(4, "big")
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def make(mnist_dir: Path) -> dict[str, bytes]:
    """File name -> gzipped IDX bytes of the sample."""
    from nnframe.datasets import FILES, read_idx

    out = {}
    for split in ("train", "t10k"):
        key = "train" if split == "train" else "test"
        images_spec, labels_spec = FILES[f"{key}_images"], FILES[f"{key}_labels"]
        images = read_idx(mnist_dir / f"{images_spec.name}.gz", images_spec)
        labels = read_idx(mnist_dir / f"{labels_spec.name}.gz", labels_spec)
        chosen = first_per_digit(labels, PER_DIGIT[split])
        for spec, array in ((images_spec, images[chosen]), (labels_spec, labels[chosen])):
            out[f"{spec.name}.gz"] = gzip.compress(idx_bytes(array), 9, mtime=0)
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-3].strip(), file=sys.stderr)
        return 2
    target = Path(argv[1]) if len(argv) > 1 else (
        Path(__file__).resolve().parent.parent / "nnframe" / "data" / "mnist_sample")
    target.mkdir(parents=True, exist_ok=True)
    for name, data in make(Path(argv[0])).items():
        (target / name).write_bytes(data)
        print(f"{target / name}: {len(data):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
