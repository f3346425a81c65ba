"""What the runbooks show: tables, banners, figures and evidence records (the live board is in :mod:`.board`).

Every output is a MIME bundle with an HTML view for JupyterLab *and* a
``text/plain`` view for logs (papermill ``--log-output``) and plain viewers.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any, Iterable

from .files import atomic_write

EVIDENCE_MIME = "application/vnd.palace-pg.evidence+json"
_COLOURS = {"ok": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e", "done": "#1a7f37", "running": "#0969da",
            "pending": "#57606a", "skipped": "#57606a", "failed": "#cf222e"}
_STYLE = ("<style>.ppg td,.ppg th{text-align:left !important;vertical-align:top;padding:2px 10px;font-size:12px}"
          ".ppg th{border-bottom:1px solid #999}.ppg-b{font-weight:bold}</style>")


def _show(html_text: str, text: str, *, display_id: bool = False):
    from IPython.display import display

    return display({"text/html": _STYLE + html_text, "text/plain": text}, raw=True, display_id=display_id)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def badge(status: str) -> str:
    colour = _COLOURS.get(status, "#57606a")
    return f'<span class="ppg-b" style="color:{colour}">{html.escape(status.upper())}</span>'


def _html_table(rows: list[dict], columns: list[str], status_col: str | None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            cells.append(f"<td>{badge(str(value))}</td>" if c == status_col and value
                         else f"<td>{html.escape(_cell(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="ppg"><tr>{head}</tr>{"".join(body)}</table>'


def text_table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def table(rows: Iterable[dict], columns: list[str] | None = None, *, title: str = "",
          status_col: str | None = None) -> None:
    """Show rows as a table (HTML and text)."""
    rows = list(rows)
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    heading = f"<h4>{html.escape(title)}</h4>" if title else ""
    body = _html_table(rows, columns, status_col) if rows else "<p><i>(none)</i></p>"
    _show(heading + body, (f"{title}\n" if title else "") + text_table(rows, columns))


def banner(text: str, status: str = "ok") -> None:
    """A one-line verdict in the status colour."""
    colour = _COLOURS.get(status, "#57606a")
    _show(f'<div style="border-left:6px solid {colour};padding:6px 10px;margin:4px 0">{badge(status)} '
          f"{html.escape(text)}</div>", f"[{status.upper()}] {text}")


def key_values(values: dict, *, title: str = "") -> None:
    """A two-column table of a flat or nested dict (nested keys joined with a dot)."""
    table([{"key": k, "value": v} for k, v in _flatten(values).items()], ["key", "value"], title=title)


def _flatten(values: dict, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and len(value) <= 12:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


# -- preflight, plan, checkpoints -----------------------------------------------------------
def checks(report_checks: list, *, title: str = "Preflight checks") -> None:
    """The preflight checks: status, name, detail, fix."""
    rows = [c if isinstance(c, dict) else c.__dict__ for c in report_checks]
    table([{k: r.get(k) for k in ("status", "name", "detail", "fix")} for r in rows],
          ["status", "name", "detail", "fix"], title=title, status_col="status")


def collections(facts: dict) -> None:
    """The source collections: rows, dimension, pending queue rows, HNSW space."""
    rows = [{"collection": name, "rows": f.get("rows"), "dimension": f.get("dimension"),
             "pending queue rows": f.get("pending_queue_rows"),
             "space": (f.get("metadata") or {}).get("hnsw:space")} for name, f in facts.get("collections", {}).items()]
    table(rows, title="Source collections")
    kg = facts.get("kg") or {}
    table([{"knowledge graph": kg.get("path") or "(none)", "entities": kg.get("entities"),
            "triples": kg.get("triples")}], title="Source knowledge graph")


def plan(the_plan: dict) -> None:
    """What each phase will do, with the time estimate."""
    est = the_plan.get("estimate_seconds") or {}
    rows = [{"phase": p["phase"], "state": p["state"], "what": p["title"], "sizes": _plan_sizes(p.get("plan") or {})}
            for p in the_plan["phases"]]
    table(rows, ["phase", "state", "what", "sizes"], title="Plan", status_col="state")
    table([{"step": k, "seconds": v} for k, v in est.items()], title="Time estimate (seconds)")


def _plan_sizes(plan_entry: dict) -> str:
    parts = []
    for key, value in plan_entry.items():
        if isinstance(value, (int, float, str)) and not isinstance(value, bool) and len(str(value)) < 80:
            parts.append(f"{key}: {_cell(value)}")
        elif isinstance(value, list):
            parts.append(f"{key}: {len(value)} item(s)")
    return "; ".join(parts)


def checkpoints(status: dict) -> None:
    """The target's checkpoint table first, so a resumed run is visibly a resume."""
    rows = status.get("checkpoints") or []
    if status.get("complete"):
        verdict, colour = "complete: this palace is already migrated; a rerun writes nothing", "done"
    elif rows:
        verdict, colour = f"partial: {sum(r['state'] == 'done' for r in rows)} of {len(rows)} units done; " \
                          "this run resumes from the checkpoints", "running"
    else:
        verdict, colour = "empty: a fresh migration", "pending"
    banner(f"target {status.get('target')}: {verdict}", colour)
    table([{k: r.get(k) for k in ("phase", "unit", "state", "batches", "rows_done", "updated_at")} for r in rows],
          ["phase", "unit", "state", "batches", "rows_done", "updated_at"], title="Checkpoints", status_col="state")


# -- figures and evidence -------------------------------------------------------------------
def figure(fig, path: Path) -> None:
    """Save a matplotlib figure as PNG (atomically) and show exactly those bytes."""
    import io

    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    data = buf.getvalue()
    atomic_write(Path(path), data)
    display(Image(data=data))


def record(name: str, payload: dict, evidence_dir: Path | None = None) -> None:
    """Record results for the evidence: a JSON output the archiver reads back, and a sidecar file."""
    from IPython.display import display

    clean = json.loads(json.dumps(payload, default=str))
    display({EVIDENCE_MIME: {"name": name, "data": clean},
             "text/plain": f"evidence recorded: {name} ({len(clean)} field(s))"}, raw=True)
    if evidence_dir is not None:
        atomic_write(Path(evidence_dir) / "results" / f"{name}.json",
                     json.dumps(clean, indent=1, sort_keys=True).encode())


# -- migration summary, parity, operator steps ---------------------------------------------
def migration(summary: dict) -> None:
    """The migration's verdict, its phases' times and the rows loaded."""
    if summary.get("status") == "already-done":
        banner(summary.get("message", "already migrated"), "done")
        return
    banner(f"migration {summary['status']} in {summary['elapsed_seconds']} s "
           f"({'resumed' if summary.get('resumed') else 'fresh run'})", "done" if summary["status"] == "done" else "warn")
    results = summary.get("results") or {}
    seconds = summary.get("phase_seconds", {})
    rows = [{"phase": "snapshot + preflight", "seconds": seconds["preflight"], "result": ""}] \
        if "preflight" in seconds else []
    rows += [{"phase": k, "seconds": seconds.get(k),
              "result": "done in an earlier run" if isinstance(v, dict) and v.get("skipped") else _short(v)}
             for k, v in results.items()]
    table(rows, ["phase", "seconds", "result"], title="Phases")


def _short(value: Any) -> str:
    if not isinstance(value, dict):
        return _cell(value)
    keep = {k: v for k, v in value.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    return ", ".join(f"{k}={_cell(v)}" for k, v in list(keep.items())[:6])


_KINDS = {"missing": "ids missing", "extra": "ids extra", "document": "documents differ",
          "metadata": "metadata differ", "vector": "vectors differ", "count": "count differs"}


def parity(report: dict, differences: list[dict]) -> None:
    """Source against target: counts, id sets, rows, vectors per collection; the KG; every difference."""
    rows = []
    for name, c in (report.get("collections") or {}).items():
        row = {"collection": name, "source rows": c.get("source_rows"), "target rows": c.get("target_rows"),
               "rejected": c.get("rejected")}
        for kind, label in _KINDS.items():
            row[label] = sum(1 for d in differences if d.get("collection") == name and d.get("kind") == kind)
        row["recall@10"] = (c.get("recall") or {}).get("recall_at_10", "")
        row["status"] = "ok" if not any(row[label] for label in _KINDS.values()) else "fail"
        rows.append(row)
    table(rows, title="Parity: collections", status_col="status")
    kg = report.get("kg") or {}
    kg_rows = [{"kind": kind, "source": kg.get(f"{kind}_source"), "target": kg.get(f"{kind}_target"),
                "differences": sum(1 for d in differences if str(d.get("kind", "")).startswith(f"kg_{kind}"))}
               for kind in ("entity", "triple")]
    for r in kg_rows:
        r["status"] = "ok" if r["source"] == r["target"] and not r["differences"] else "fail"
    table(kg_rows, title="Parity: knowledge graph", status_col="status")
    if differences:
        table(differences[:50], title=f"Differences ({len(differences)}; first 50)")
    banner(f"{len(differences)} difference(s) between source and target",
           "fail" if differences else "ok")


def steps_list(steps: list[str], *, title: str) -> None:
    """A numbered operator sequence."""
    items = "".join(f"<li>{html.escape(s)}</li>" for s in steps)
    _show(f"<h4>{html.escape(title)}</h4><ol>{items}</ol>",
          title + "\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1)))
