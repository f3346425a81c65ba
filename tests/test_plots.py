"""The 03_verify figures: log axes labelled in plain numbers whose labels never overlap at the saved size."""

from __future__ import annotations

import pytest

from palace_pg.runbook import plots
from palace_pg.runbook.measure import percentiles


def _labels(fig, axis):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(110)  # the dpi display.figure saves at
    canvas.draw()
    renderer = canvas.get_renderer()
    low, high = sorted(axis.get_view_interval())
    shown = [(t, t.get_window_extent(renderer)) for t, loc in zip(axis.get_majorticklabels(), axis.get_majorticklocs())
             if t.get_visible() and t.get_text() and low <= loc <= high]
    return [t.get_text() for t, _ in shown], [box for _, box in shown]


def _assert_plain_and_apart(fig, axis):
    texts, boxes = _labels(fig, axis)
    assert len(texts) >= 2, texts
    assert not any("$" in t or "10^" in t or "e-" in t or "e+" in t for t in texts), texts
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1:]), texts


@pytest.mark.parametrize("sizes", [[20, 25, 35, 50, 70, 90], [40, 80, 160, 280, 480, 960], [12, 300, 9000]])
def test_filtered_by_wing_labels_wing_sizes_in_plain_numbers(sizes):
    rows = [{"wing": f"w{n}", "wing_rows": n, "engine": e, "recall@10": 0.9, "p50_ms": 0.5 + n / 1000}
            for n in sizes for e in ("Chroma HNSW", "PostgreSQL")]
    fig = plots.filtered(rows)
    for ax in fig.axes:
        _assert_plain_and_apart(fig, ax.xaxis)


def test_latency_is_labelled_in_plain_milliseconds():
    samples = {"Chroma HNSW": [0.3 + i / 500 for i in range(200)], "PostgreSQL HNSW": [0.9 + i / 70 for i in range(200)]}
    fig = plots.latency({"ef_search": 100, "samples_ms": samples, "percentiles": percentiles(samples)})
    _assert_plain_and_apart(fig, fig.axes[0].yaxis)
