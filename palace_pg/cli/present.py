"""What the CLI prints: JSON, tables, preflight checks (progress lines: progress.py)."""

from __future__ import annotations

import json


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


def add_target(sp) -> None:
    sp.add_argument("--dsn", default=None, help="target DSN (default $PALACE_PG_DSN, else the embedded server); "
                    "keep the password in PGPASSWORD or ~/.pgpass")
