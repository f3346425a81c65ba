"""The runbooks' figures (03_verify's, 02_migrate's downtime), on matplotlib's object API (no pyplot, no GUI)."""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

_COLOURS = {"Chroma HNSW": "#e36209", "pgvector HNSW": "#0969da", "PostgreSQL exact": "#1a7f37",
            "PostgreSQL HNSW": "#0969da", "PostgreSQL": "#0969da"}
# distinct markers, so lines that coincide (recall 1.0 everywhere on a small palace) all stay visible
_MARKERS = {"Chroma HNSW": "o", "pgvector HNSW": "s", "PostgreSQL exact": "^", "PostgreSQL": "s"}


def _floor(rows: list[dict]) -> float:
    """The recall axis' lower end: close enough to the data that a 1 % loss is visible."""
    lowest = min((r["recall@10"] for r in rows), default=1.0)
    return max(0.0, min(0.95, lowest - 0.02))


def _plain(value: float, _pos=None) -> str:
    """A tick label as an operator writes the number: 40, 1,000, 0.5 (never 4×10¹)."""
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


def _plain_log(axis, values) -> None:
    """A log axis in plain numbers, ticked at 1, 2, 5 of each decade (only 1 across many, also 3 across one).

    Matplotlib labels the minor ticks of a log axis that spans less than a decade or two
    (2×10¹ 3×10¹ 4×10¹ …), and they run into each other at the size the figure is saved.
    """
    values = [v for v in values if v > 0]
    decades = math.log10(max(values) / min(values)) if values else 2.0
    subs = (1.0,) if decades > 2.5 else (1.0, 2.0, 5.0) if decades > 1.3 else (1.0, 2.0, 3.0, 5.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(_plain))
    axis.set_minor_formatter(NullFormatter())


def recall_vs_ef(rows: list[dict]) -> Figure:
    """One line per engine and query kind; the exact scan's line is flat (it has no ef_search)."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    x = "grid_ef" if rows and "grid_ef" in rows[0] else "ef_search"
    kinds = list(dict.fromkeys(r.get("query_kind", "") for r in rows))
    for engine in dict.fromkeys(r["engine"] for r in rows):
        for n, kind in enumerate(kinds):
            pts = [r for r in rows if r["engine"] == engine and r.get("query_kind", "") == kind]
            if not pts:
                continue
            ax.plot([r[x] for r in pts], [r["recall@10"] for r in pts], marker=_MARKERS.get(engine, "o"),
                    label=f"{engine} ({kind} queries)" if kind else engine, color=_COLOURS.get(engine),
                    linestyle=":" if n else ("--" if "exact" in engine else "-"),
                    markerfacecolor="none", markersize=8)
    ax.set_xscale("log", base=2)
    grid = sorted({r[x] for r in rows})
    ax.set_xticks(grid, [str(g) for g in grid])
    ax.set_xlabel("ef_search (HNSW; the exact scan has none)")
    ax.set_ylabel("recall@10 (vs exact cosine top-10)")
    ax.set_ylim(_floor(rows), 1.005)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)  # the lines meet at the top (recall 1.0): keep the legend off them
    counts = ", ".join(f"{r['queries']} {r.get('query_kind', '')}" for r in rows[: len(kinds)]) if rows else "0"
    ax.set_title(f"recall@10 against ef_search, k 10 ({counts} queries)")
    return fig


def latency(result: dict) -> Figure:
    samples = result["samples_ms"]
    fig = Figure(figsize=(8, 4))
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    names = list(samples)
    ax.boxplot([samples[n] for n in names], tick_labels=names, whis=(1, 99), showfliers=False)
    ax.set_yscale("log")
    _plain_log(ax.yaxis, [v for n in names for v in samples[n]])
    ax.set_ylabel("latency per query (ms, log scale)")
    ax.set_title(f"top-10 latency, HNSW, ef_search {result['ef_search']}, {result.get('query_kinds', '')} queries")
    ax.grid(alpha=0.3, axis="y")
    pct = {p["engine"]: p for p in result["percentiles"]}
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        vals = [pct[name][f"p{p}_ms"] for p in (50, 95, 99)]
        bx.bar([i + j * width for i in range(3)], vals, width=width, label=name, color=_COLOURS.get(name))
    bx.set_xticks([i + width * (len(names) - 1) / 2 for i in range(3)], ["p50", "p95", "p99"])
    bx.set_ylabel("ms")
    bx.legend(fontsize=8)
    bx.set_title("percentiles")
    return fig


def filtered(rows: list[dict]) -> Figure:
    fig = Figure(figsize=(9, 4))
    ax, bx = fig.subplots(1, 2)
    for engine in dict.fromkeys(r["engine"] for r in rows):
        pts = sorted((r for r in rows if r["engine"] == engine), key=lambda r: r["wing_rows"])
        xs = [r["wing_rows"] for r in pts]
        style = {"marker": _MARKERS.get(engine, "o"), "label": engine, "color": _COLOURS.get(engine),
                 "markerfacecolor": "none", "markersize": 8}
        ax.plot(xs, [r["recall@10"] for r in pts], **style)
        bx.plot(xs, [r["p50_ms"] for r in pts], **style)
    for a, label in ((ax, "recall@10 within the wing"), (bx, "p50 latency (ms)")):
        a.set_xscale("log")
        _plain_log(a.xaxis, [r["wing_rows"] for r in rows])
        a.set_xlabel("wing size (drawers, log scale)")
        a.set_ylabel(label)
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    ax.set_ylim(_floor(rows), 1.005)
    first = rows[0] if rows else {}
    fig.suptitle(f"search filtered to one wing, by wing size (k {first.get('k', 10)}, ef_search "
                 f"{first.get('ef_search', '?')}, {first.get('query_kind', '')} queries)")
    return fig


def kg_parity(result: dict) -> Figure:
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    rows = result.get("rows") or []
    if not rows:
        ax.text(0.5, 0.5, f"KG parity skipped:\n{result.get('reason', '')}", ha="center", va="center", wrap=True)
        ax.set_axis_off()
        return fig
    methods = list(dict.fromkeys(r["method"] for r in rows))
    same = [sum(1 for r in rows if r["method"] == m and r["equal"]) for m in methods]
    diff = [sum(1 for r in rows if r["method"] == m and not r["equal"]) for m in methods]
    ax.barh(methods, same, color="#1a7f37", label="same answer")
    ax.barh(methods, diff, left=same, color="#cf222e", label="different answer")
    ax.set_xlabel("questions asked to sqlite (mempalace) and AGE (palace_pg)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never on them
    ax.set_title(f"KG query parity: {sum(same)} of {len(rows)} answers identical")
    return fig


_PART_COLOURS = {"snapshot": "#0969da", "sync": "#e36209", "verify": "#1a7f37", "rename": "#8250df",
                 "other": "#8c959f"}


def downtime(parts: list[dict], total: float) -> Figure:
    """The catch-up cutover's downtime as one stacked bar, each part labelled with its seconds (02_migrate)."""
    fig = Figure(figsize=(8, 2.0))
    ax = fig.add_subplot()
    left = 0.0
    for part in parts:
        seconds = part["seconds"]
        ax.barh([0], [seconds], left=left, color=_PART_COLOURS.get(part["part"], "#8c959f"),
                label=f"{part['part']} {seconds:,.2f} s", height=0.5)
        if total and seconds / total > 0.08:  # a label only where it fits inside its segment
            ax.text(left + seconds / 2, 0, f"{seconds:,.1f} s", ha="center", va="center", color="white", fontsize=9)
        left += seconds
    ax.set_yticks([])
    ax.set_xlim(0, max(total, left) * 1.02 or 1)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.1f}" if total < 10 else f"{v:,.0f}"))
    ax.set_xlabel("seconds with MemPalace's writers stopped")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(f"downtime of the cutover with catch-up: {total:,.2f} s")
    return fig
