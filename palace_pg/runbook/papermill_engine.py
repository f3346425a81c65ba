"""Papermill's nbclient engine, telling its caller which cell of which notebook is running.

Papermill's own progress is a tqdm bar (noise in a log, a widget in a kernel) and its
``log_output`` copies every output into the log.  ``run_runbooks`` wants one line per
code cell instead, so this engine wraps the execution manager's ``cell_start`` and
calls ``cell_progress(index, count, title)`` for each code cell (the injected
parameters cell included, as papermill numbers them).

The kernel is started with its own log at ERROR: its one warning, "Kernel is running
over TCP without encryption", concerns a kernel on localhost that papermill starts and
stops for this run, and it would otherwise reach the operator's terminal every notebook.
"""

from __future__ import annotations

from typing import Callable

from papermill.engines import NBClientEngine, papermill_engines

ENGINE_NAME = "palace_pg"
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]

CellProgress = Callable[[int, int, str], None]


def cell_title(source: str) -> str:
    """What a code cell does, for a progress line: its first comment or its first statement."""
    lines = [line.strip() for line in source.splitlines() if line.strip() and not line.startswith("%")]
    for line in lines:
        if line.startswith("#") and len(line) > 2:
            return line.lstrip("# ")[:80]
    return lines[0][:80] if lines else ""


class ReportingEngine(NBClientEngine):
    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, cell_progress: CellProgress | None = None, **kwargs):
        if cell_progress is not None:
            code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
            start = nb_man.cell_start

            def cell_start(cell, cell_index=None, **kw):
                start(cell, cell_index, **kw)
                if cell.cell_type == "code" and cell_index in code:
                    try:
                        cell_progress(code.index(cell_index) + 1, len(code), cell_title(cell.source))
                    except Exception:  # a display must never stop the run
                        pass

            nb_man.cell_start = cell_start
        kwargs["extra_arguments"] = [*kwargs.get("extra_arguments", []), *KERNEL_ARGUMENTS]
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


def register() -> str:
    """Make the engine known to papermill (idempotent); its name for ``engine_name``."""
    papermill_engines.register(ENGINE_NAME, ReportingEngine)
    return ENGINE_NAME
