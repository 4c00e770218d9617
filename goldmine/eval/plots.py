"""Plots (matplotlib, no display needed): written as PNG files next to the run they describe."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def loss_curve(metrics_jsonl: str | Path, out_png: str | Path, title: str = "") -> Path:
    """Training loss (per log step) and validation loss (per evaluation) against steps."""
    train, val = [], []
    for line in Path(metrics_jsonl).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if "loss" in row:
            train.append((row["step"], row["loss"]))
        if "val_loss" in row:
            val.append((row["step"], row["val_loss"]))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if train:
        ax.plot(*zip(*train), label="train", color="#c9a227", linewidth=1.2)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", color="#1f4e79", markersize=4)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(title or "loss")
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out)
    plt.close(fig)
    return out
