"""Training curves as a PNG (needs matplotlib: pip install "nnframe[plot]")."""

from __future__ import annotations

import io
from pathlib import Path

from .errors import NNFrameError


def plot_history(history: dict[str, list[float]], path: str | Path, *,
                 title: str = "nnframe training", validation_label: str = "validation") -> Path:
    """Write loss and accuracy per epoch (training and validation) to ``path`` as PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NNFrameError("plotting needs matplotlib: pip install 'nnframe[plot]'") from None
    from ._files import atomic_write

    epochs = range(1, len(history.get("loss", [])) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    from matplotlib.ticker import MaxNLocator

    for key, label in (("loss", "train"), ("val_loss", validation_label)):
        if history.get(key):
            ax_loss.plot(epochs, history[key], marker="o", label=label)
    for key, label in (("accuracy", "train"), ("val_accuracy", validation_label)):
        if history.get(key):
            ax_acc.plot(epochs, history[key], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:  # an empty history has no curves to name
            ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    path = Path(path)
    atomic_write(path, buffer.getvalue(), error=NNFrameError)
    return path
