"""Charts for the HTML reports: matplotlib figures rendered to inline SVG (no external assets,
the reports work offline). Agg backend: no display needed."""
import io

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SIZE = (6.4, 2.6)


def _svg(fig):
    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG sits in HTML


MAX_POINTS = 1000   # a series longer than this is drawn as min/max per bucket of items


def series(values, title, ylabel, xlabel="image (report order)"):
    """One value per item, as points joined by a line; more than MAX_POINTS items as the
    band between the min and max of each run of consecutive items (the chart, its memory and
    its SVG stay the same size for 10,000 images)."""
    fig, ax = plt.subplots(figsize=SIZE)
    if len(values) > MAX_POINTS:
        per = -(-len(values) // MAX_POINTS)
        v = np.full(per * -(-len(values) // per), np.nan)
        v[:len(values)] = values
        v = v.reshape(-1, per)
        x = np.arange(len(v)) * per
        lo, hi = np.nanmin(v, axis=1), np.nanmax(v, axis=1)
        ax.fill_between(x, lo, hi, step="post", alpha=0.35, linewidth=0)
        ax.plot(x, lo, drawstyle="steps-post", linewidth=0.6)
        ax.plot(x, hi, drawstyle="steps-post", linewidth=0.6)
        xlabel += ", min and max of each %d" % per
    else:
        ax.plot(range(len(values)), values, marker=".", linewidth=0.8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return _svg(fig)


def histogram(values, title, xlabel, bins=30):
    fig, ax = plt.subplots(figsize=SIZE)
    if len(values):
        ax.hist(values, bins=bins, color="#4477aa")
    else:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    return _svg(fig)


def layer_bars(labels, values, title, xlabel):
    """Horizontal bars, one per layer, first layer on top."""
    fig, ax = plt.subplots(figsize=(SIZE[0], 0.9 + 0.28 * len(labels)))
    ax.barh(range(len(labels)), values, color="#cc6677")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(title=title, xlabel=xlabel)
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def budget_bars(rows, title):
    """rows: [(label, used bytes, budget bytes)]: used against the budget, in KiB."""
    fig, ax = plt.subplots(figsize=(SIZE[0], 0.9 + 0.5 * len(rows)))
    labels = [r[0] for r in rows]
    ax.barh(labels, [r[2] / 1024.0 for r in rows], color="#dddddd", label="budget")
    ax.barh(labels, [r[1] / 1024.0 for r in rows],
            color=["#228833" if r[1] <= r[2] else "#cc3311" for r in rows], label="used")
    for i, (_, used, budget) in enumerate(rows):
        ax.text(budget / 1024.0, i, " %.0f / %.0f KiB" % (used / 1024.0, budget / 1024.0),
                va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set(title=title, xlabel="KiB")
    ax.margins(x=0.35)
    return _svg(fig)
