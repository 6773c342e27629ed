"""PNG plots of training curves (matplotlib, headless)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.harness.distributed import is_main_process  # noqa: E402
from experiments.harness.metrics import curve  # noqa: E402


def plot_curves(histories: dict[str, list[dict]], keys, path: str, title: str = "") -> str:
    """One panel per metric key, one line per named history; saved as a PNG at `path` (by
    process 0 only in a multi-host run)."""
    if not is_main_process():
        return path
    keys = list(keys)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, history in histories.items():
            steps, values = curve(history, key)
            if steps:
                ax.plot(steps, values, label=name)
        ax.set_xlabel("step")
        ax.set_title(key)
        if key.endswith("loss") or key.startswith("feasibility"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
