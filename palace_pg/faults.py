"""Named crash points for the kill-and-resume harness (as SQLite's crash tests do).

``PALACE_PG_CRASH_AT=<point>:<n>`` makes the process SIGKILL itself the n-th
time it reaches ``point``.  Unset (always, outside the harness) it costs one
dict lookup.  Points:

* ``copied``     after a batch's COPY, before its checkpoint and commit;
* ``committed``  right after a batch and its checkpoint committed;
* ``index``      just before an index build starts;
* ``kg``         after the KG bulk load, before its commit;
* ``verify``     in the middle of verification;
* ``phase-done`` in a phase's last transaction, its "done" row written, before the commit;
* ``sync``       in a sync, after each batch of rows (and the KG's writes), before its commit;
* ``cutover``    between the cutover's two renames (the Chroma palace moved aside, the
  palace_pg folder not yet in its place).
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}
_target: tuple[str, int] | None = None
_parsed = False


def _parse() -> None:
    global _target, _parsed
    _parsed = True
    spec = os.environ.get("PALACE_PG_CRASH_AT")
    if spec and ":" in spec:
        point, n = spec.rsplit(":", 1)
        _target = (point, int(n))


def crash_point(point: str) -> None:
    if not _parsed:
        _parse()
    if _target is None or _target[0] != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
