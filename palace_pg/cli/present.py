"""What the CLI prints: JSON, tables, preflight checks, progress bars."""

from __future__ import annotations

import json
import sys


def print_json(value) -> None:
    print(json.dumps(value, indent=2, default=str))


def table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    out = [line, "  ".join("-" * widths[c] for c in columns)]
    out += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(out)


_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def print_checks(checks) -> None:
    for c in checks:
        c = c if isinstance(c, dict) else c.__dict__
        print(f"  [{_MARK.get(c['status'], c['status'])}] {c['name']}: {c['detail']}")
        if c.get("fix") and c["status"] != "ok":
            print(f"         fix: {c['fix']}")


class Bars:
    """One tqdm bar per (phase, unit), on stderr."""

    def __init__(self) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._bars: dict = {}

    def __call__(self, event) -> None:
        key = (event.phase, event.unit)
        if not event.total or not event.unit:
            if event.message and event.message != "done":
                print(f"== {event.phase}: {event.message}", file=sys.stderr)
            return
        bar = self._bars.get(key)
        if bar is None:
            bar = self._bars[key] = self._tqdm(total=event.total, desc=f"{event.phase}:{event.unit}",
                                               unit="row", file=sys.stderr, leave=True, initial=0)
        bar.n = event.done
        bar.refresh()
        if event.done >= event.total:
            bar.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()




def add_target(sp) -> None:
    sp.add_argument("--dsn", default=None, help="target DSN (default $PALACE_PG_DSN, else the embedded server); "
                    "keep the password in PGPASSWORD or ~/.pgpass")
