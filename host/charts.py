"""Charts for the HTML reports: matplotlib figures rendered to inline SVG (no external assets,
the reports work offline). Agg backend: no display needed."""
import io

import matplotlib

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


def series(values, title, ylabel, xlabel="image (report order)"):
    """One value per item, as points joined by a line."""
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot(range(len(values)), values, marker=".", linewidth=0.8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return _svg(fig)


def histogram(values, title, xlabel, bins=30):
    fig, ax = plt.subplots(figsize=SIZE)
    if values:
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
