"""Confirmation gates before the runbooks' writes: a button in JupyterLab, a parameter under papermill.

Widgets never fire in a headless run (papermill and nbmake have no frontend),
and a running cell blocks every widget message until it ends, so a cell cannot
wait for a click.  A gate is therefore two calls in two cells::

    g = gate.Gate("migrate", "Write the palace into …", confirmed=P.confirm, ...)
    g.show()        # JupyterLab: the button.  Headless: the decision, as text
    ...
    g.require()     # first line of the writing cell: raises GateNotConfirmed unless confirmed

Headless, the gate is passed by its parameter (``confirm=True``), or by a
throwaway target (the generated demo palace into the demo database), and
refused otherwise, before anything is written.  In JupyterLab, "Run All" stops
at ``require()`` until the operator presses the button, then "Run Selected Cell
and All Below" goes on.  Every decision is appended to ``gates.jsonl`` in the
evidence folder, because JupyterLab does not save widget state in the notebook.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
from pathlib import Path

from ..errors import PalacePgError
from . import display

log = logging.getLogger(__name__)


class GateNotConfirmed(PalacePgError):
    """A write was reached without its confirmation; nothing was written."""

    exit_code = 2


def frontend_attached() -> bool:
    """True in a kernel started by a Jupyter server for a notebook (JupyterLab, Notebook 7)."""
    # jupyter_server sets JPY_SESSION_NAME for kernels it starts for a session; papermill/nbclient do not.
    return bool(os.environ.get("JPY_SESSION_NAME"))


class Gate:
    def __init__(self, name: str, question: str, *, confirmed: bool, parameter: str, throwaway: bool = False,
                 interactive: bool | None = None, evidence_dir: Path | None = None, button: str = "Confirm") -> None:
        self.name = name
        self.question = question
        self.parameter = parameter
        self.button_text = button
        self.interactive = frontend_attached() if interactive is None else interactive
        self.evidence_dir = Path(evidence_dir) if evidence_dir else None
        self.confirmed_by: str | None = None
        if confirmed:
            self._confirm(f"parameter {parameter}=True")
        elif throwaway and not self.interactive:
            self._confirm("throwaway demo target (generated palace, demo database)")
        self._widgets = None

    @property
    def confirmed(self) -> bool:
        return self.confirmed_by is not None

    def _confirm(self, how: str) -> None:
        self.confirmed_by = how
        self._log("confirmed", how)

    def _log(self, decision: str, how: str) -> None:
        entry = {"gate": self.name, "decision": decision, "how": how, "question": self.question,
                 "user": getpass.getuser(), "at": dt.datetime.now(dt.timezone.utc).isoformat()}
        log.info("gate %s %s (%s)", self.name, decision, how)
        if self.evidence_dir is not None:
            self.evidence_dir.mkdir(parents=True, exist_ok=True)
            with open(self.evidence_dir / "gates.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")

    def show(self) -> None:
        """The button (JupyterLab) or the decision (headless)."""
        if self.confirmed or not self.interactive:
            status = "ok" if self.confirmed else "warn"
            verdict = f"confirmed by {self.confirmed_by}" if self.confirmed else \
                f"not confirmed: rerun with -p {self.parameter} True to pass it"
            display.banner(f"gate '{self.name}': {self.question} — {verdict}", status)
            return
        self._show_button()

    def _show_button(self) -> None:
        import ipywidgets as w
        from IPython.display import display as ip_display

        question = w.HTML(f"<b>{self.question}</b>")
        button = w.Button(description=self.button_text, button_style="danger", icon="check",
                          layout=w.Layout(width="auto"))
        out = w.Output()

        @out.capture()
        def on_click(_):
            button.disabled = True
            button.button_style = "success"
            button.description = "Confirmed"
            self._confirm(f"button pressed by {getpass.getuser()}")
            print(f"Confirmed at {dt.datetime.now():%H:%M:%S}. Now run the cell below "
                  "(Run ▸ Run Selected Cell and All Below).")

        button.on_click(on_click)
        self._widgets = (question, button, out)
        ip_display(w.VBox([question, button, out]))

    def proceed(self) -> bool:
        """For optional steps (the cutover): False headless when not confirmed, else as :meth:`require`."""
        if not self.confirmed and not self.interactive:
            display.banner(f"'{self.name}' skipped: not requested (pass -p {self.parameter} True to run it)",
                           "skipped")
            return False
        self.require()
        return True

    def require(self) -> str:
        """Raise GateNotConfirmed unless the gate was passed; returns how it was passed."""
        if self.confirmed:
            return self.confirmed_by
        self._log("refused", "not confirmed when the write was reached")
        if self.interactive:
            raise GateNotConfirmed(f"gate '{self.name}' is not confirmed: nothing was written",
                                   f"press '{self.button_text}' above, then run this cell and the ones below")
        raise GateNotConfirmed(f"gate '{self.name}' is not confirmed: nothing was written",
                               f"rerun with -p {self.parameter} True (papermill) or --confirm (palace-pg runbooks)")
