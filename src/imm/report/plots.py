"""The report's figures as PNG bytes. matplotlib is imported here and nowhere else in imm.

Colours are the Okabe–Ito palette (distinguishable with every common colour-vision deficiency), and each
arm also has its own marker and line style, so the figures read in grey print too. Every axis says
what it measures and in which unit.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from imm.analysis.importance import axis_label

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
DPI = 80


@dataclass(frozen=True)
class Series:
    label: str
    x: tuple[int, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]  # min over runs (equals mean with one run)
    high: tuple[float, ...]


@dataclass(frozen=True)
class Panel:
    title: str
    ylabel: str
    series: tuple[Series, ...]
    references: dict[str, float] = field(default_factory=dict)  # label -> horizontal line (θ0, teacher)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def style(index: int) -> dict:
    return {"color": OKABE_ITO[index % len(OKABE_ITO)], "marker": MARKERS[index % len(MARKERS)],
            "linestyle": LINESTYLES[index % len(LINESTYLES)]}


def curves(panels: list[Panel], labels: list[str], columns: int = 3) -> bytes:
    """One panel per figure: a line per series over iterations, the min–max band over runs shaded,
    reference models as horizontal lines. `labels` fixes each series' style across panels."""
    plt = _pyplot()
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for s in panel.series:
            look = style(labels.index(s.label))
            ax.plot(s.x, s.mean, label=s.label, linewidth=1.8, markersize=5, **look)
            if s.low != s.high:
                ax.fill_between(s.x, s.low, s.high, color=look["color"], alpha=0.15, linewidth=0)
        for i, (name, y) in enumerate(panel.references.items()):
            ax.axhline(y, color="#000000" if i == 0 else "#777777", linestyle=(0, (4, 3)) if i == 0 else ":",
                       linewidth=1.2, label=name)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel("iteration t")
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, names, loc="upper center", ncol=min(6, len(names)), frameon=False, bbox_to_anchor=(0.5, 0.0))
    return _png(fig)


def heatmaps(title: str, maps: dict[str, list[list[float]]], blocks: list[int], steps: list[int],
             importance: dict[str, list[float]]) -> bytes:
    """Block × iteration update size per model (one colour scale for all), θ0's importance beside."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(maps) + len(importance), figsize=(2.8 * (len(maps) + len(importance)) + 1.5, 3.4),
                             layout="constrained", gridspec_kw={"width_ratios": [len(steps) + 1] * len(maps) + [3] * len(importance)})
    axes = list(axes) if hasattr(axes, "__len__") else [axes]
    top = max((v for m in maps.values() for row in m for v in row), default=1.0) or 1.0
    image = None
    for ax, (name, matrix) in zip(axes, maps.items()):
        image = ax.imshow(matrix, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=top,
                          extent=(steps[0] - 0.5, steps[-1] + 0.5, blocks[0] - 0.5, blocks[-1] + 0.5))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("iteration t")
        ax.set_ylabel("decoder block")
        ax.set_xticks(steps)
    if image is not None:
        fig.colorbar(image, ax=axes[len(maps) - 1], label="relative update ‖Δ‖/‖θ0‖ (%)", shrink=0.9)
    for i, (ax, (name, values)) in enumerate(zip(axes[len(maps):], importance.items())):
        ax.barh(blocks[:len(values)], values, color=OKABE_ITO[4 + i], hatch="//" if i else None)
        ax.set_title(f"importance of θ0\n({name})", fontsize=9)
        ax.set_xlabel(axis_label(name, "{} (pts)"), fontsize=8)
        ax.set_yticks(blocks)
    fig.suptitle(title, fontsize=11)
    return _png(fig)


def scatter(points: list[tuple[str, list[float], list[float], list[int], str, str]]) -> bytes:
    """Importance (x) against update size (y) per block, one panel per (title, x, y, blocks, note, x label)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(points), figsize=(3.6 * len(points), 3.2), squeeze=False)
    for i, (ax, (title, x, y, blocks, note, xlabel)) in enumerate(zip(axes.flat, points)):
        ax.scatter(x, y, color=OKABE_ITO[i % 4], marker=MARKERS[i % 4], s=28)
        for bx, by, b in zip(x, y, blocks):
            ax.annotate(str(b), (bx, by), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_title(f"{title}\n{note}", fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("update ‖θ_l − θ0_l‖₂ (weight units)", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def training(logs: dict[str, list[dict]]) -> bytes:
    """Loss and learning rate per optimizer step, one line per arm and iteration."""
    plt = _pyplot()
    fig, (loss_ax, lr_ax) = plt.subplots(1, 2, figsize=(10, 3.0))
    for i, (name, rows) in enumerate(logs.items()):
        look = {"color": OKABE_ITO[i % len(OKABE_ITO)], "linestyle": LINESTYLES[i % len(LINESTYLES)]}
        loss_ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=name, **look)
        lr_ax.plot([r["step"] for r in rows], [r["lr"] for r in rows], **look)
    loss_ax.set(xlabel="optimizer step", ylabel="loss (nats per response token)", title="training loss")
    lr_ax.set(xlabel="optimizer step", ylabel="learning rate", title="learning rate schedule")
    for ax in (loss_ax, lr_ax):
        ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _png(fig)
