"""The runbooks' parameters: their names and types, checked in the cell after the parameters cell.

Papermill only *warns* about a parameter the notebook does not define ("Passed
unknown parameter"), and runs on with the default: a misspelt gate such as
``-p confirm_cutovr True`` would silently keep ``False``, or worse, a misspelt
``-p palace`` would run against the demo.  So each runbook starts with::

    runbook = params.begin("02_migrate", globals())   # before the parameters cell
    ...parameters cell (literals only)...
    P = runbook.check(globals())                        # the next cell

``check`` compares the globals with the ones that existed before the
parameters cell: any new name that is not a known parameter is an error, with
the nearest known name as the fix.  Types are checked strictly: papermill's
``-p`` turns ``True`` into a bool but ``-r confirm yes`` gives the string
``"yes"``, which is truthy, so a gate never accepts anything but a bool.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..errors import ParameterError

NOTEBOOKS = ("01_preflight", "02_migrate", "03_verify")

# name -> (accepted types, help).  ``None`` in the types means the value may be None.
_COMMON: dict[str, tuple[tuple, str]] = {
    "palace": ((str, None), "the Chroma palace folder; None: a generated demo palace"),
    "dsn": ((str, None), "target DSN without a password; None: a dedicated database on the embedded server"),
    "evidence_dir": ((str, None), "where figures and results are written; None: the demo folder's evidence/"),
    "work_dir": ((str, None), "where source snapshots are copied; None: $PALACE_PG_WORK_DIR or the temp folder"),
    "demo_drawers": ((int,), "drawers in the generated demo palace"),
    "demo_seed": ((int,), "seed of the generated demo palace"),
}
_BATCH = {"batch_size": ((int,), "rows per COPY batch")}
_KG_STORE = {"kg_store": ((str,), "where the KG goes: age, tables (no AGE needed) or auto (AGE where installed)")}
SPECS: dict[str, dict[str, tuple[tuple, str]]] = {
    "01_preflight": {**_COMMON, **_BATCH, **_KG_STORE,
                     "online": ((bool,), "MemPalace may be writing: accept a complete online copy the syncs catch up")},
    "02_migrate": {
        **_COMMON, **_BATCH, **_KG_STORE,
        "ef_search": ((int,), "hnsw.ef_search for the recall check of phase 6"),
        "restart": ((bool,), "discard the target's copy and migrate from scratch"),
        "online": ((bool,), "copy while MemPalace may be writing, then sync; the cutover catches up with writers "
                            "stopped"),
        "confirm": ((bool,), "pass the write gate without the button (papermill runs)"),
        "cutover": ((bool,), "run the cutover at the end (headless: this is its confirmation)"),
        "interactive": ((bool, None), "show gate buttons; None: detect a Jupyter server session"),
    },
    "03_verify": {
        **_COMMON, **_BATCH,
        "ef_search": ((int,), "hnsw.ef_search of the latency and filtered measurements"),
        "ef_search_grid": ((list,), "ef_search values of the recall@10 curve"),
        "recall_queries": ((int,), "sampled queries for recall@10"),
        "latency_queries": ((int,), "queries timed per engine"),
        "filtered_queries": ((int,), "queries per wing for filtered recall"),
        "kg_queries": ((int,), "entities asked through query_entity and timeline"),
    },
}
# Papermill may add these itself (--inject-paths); they are not typos.
_PAPERMILL_NAMES = {"PAPERMILL_INPUT_PATH", "PAPERMILL_OUTPUT_PATH"}
# The gates: a value here that is not literally True/False is refused loudly.
GATES = {"confirm", "cutover"}


def all_names() -> set[str]:
    return {name for spec in SPECS.values() for name in spec}


def _type_ok(value: Any, types: tuple) -> bool:
    if value is None:
        return None in types
    if isinstance(value, bool):  # bool is an int subclass: never let True pass as a batch size
        return bool in types
    return any(t is not None and t is not bool and isinstance(value, t) for t in types)


def _type_name(types: tuple) -> str:
    return " or ".join("None" if t is None else t.__name__ for t in types)


def _suggest(name: str, known) -> str:
    near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"did you mean {near[0]!r}? " if near else ""


def validate(notebook: str, values: dict[str, Any]) -> dict[str, Any]:
    """Check names and types of ``values`` for ``notebook``; return them unchanged.  Raises ParameterError."""
    spec = SPECS[notebook]
    unknown = sorted(set(values) - set(spec) - _PAPERMILL_NAMES)
    if unknown:
        fixes = "; ".join(f"{n!r}: {_suggest(n, spec)}" for n in unknown)
        raise ParameterError(f"{notebook} has no parameter {', '.join(map(repr, unknown))}",
                             f"{fixes}known: {', '.join(sorted(spec))}", unknown=unknown)
    for name, value in values.items():
        if name in _PAPERMILL_NAMES:
            continue
        types, _help = spec[name]
        if not _type_ok(value, types):
            raise ParameterError(f"parameter {name!r} must be {_type_name(types)}, got {type(value).__name__}",
                                 f"pass {name} as {_type_name(types)} (papermill: -p {name} True / -p {name} 10)")
    if "ef_search_grid" in values and not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                              for v in values["ef_search_grid"]):
        raise ParameterError("ef_search_grid must be a list of positive ints", "e.g. -y 'ef_search_grid: [10, 40]'")
    for name in ("batch_size", "demo_drawers", "recall_queries", "latency_queries", "filtered_queries", "kg_queries"):
        if name in values and values[name] < 1:
            raise ParameterError(f"{name} must be at least 1, got {values[name]}", f"pass a positive {name}")
    if values.get("kg_store", "auto") not in ("auto", "age", "tables"):
        raise ParameterError(f"kg_store must be auto, age or tables, got {values['kg_store']!r}",
                             "pass -p kg_store tables for a server without Apache AGE (or auto)")
    if values.get("dsn"):
        _refuse_password(values["dsn"])
    return values


def _refuse_password(dsn: str) -> None:
    """A password in the DSN parameter is written verbatim into the notebook by papermill: refuse it."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        has_password = bool(conninfo_to_dict(dsn).get("password"))
    except Exception:  # libpq's parse error echoes the DSN: say nothing of it
        raise ParameterError("the dsn parameter could not be parsed",
                             "pass a libpq DSN such as 'postgresql://user@host:5432/db'") from None
    if has_password:
        raise ParameterError("the dsn parameter carries a password (papermill stores parameters verbatim in "
                             "the executed notebook)", "remove it from the DSN and give it to libpq through "
                             "PGPASSWORD or ~/.pgpass")


def parse_cli_value(text: str) -> Any:
    """``-p NAME=VALUE`` text as papermill's ``-p`` reads it: True/False/None, numbers, lists; else the string."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, (int, float, list)) else text


def split_by_notebook(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Route run-wide parameters to the notebooks that define them; a name none defines is an error."""
    unknown = sorted(set(values) - all_names())
    if unknown:
        fixes = "; ".join(f"{n!r}: {_suggest(n, all_names())}" for n in unknown)
        raise ParameterError(f"no runbook has a parameter {', '.join(map(repr, unknown))}", fixes.strip(),
                             unknown=unknown)
    routed = {nb: {k: v for k, v in values.items() if k in spec} for nb, spec in SPECS.items()}
    for nb, vals in routed.items():
        validate(nb, vals)
    return routed


@dataclass
class Runbook:
    """One notebook's parameter check, begun before its parameters cell."""

    notebook: str
    baseline: frozenset

    def check(self, namespace: dict) -> "Parameters":
        """The parameters as defined by the parameters cell and papermill's injected cell, validated."""
        spec = SPECS[self.notebook]
        # imports and helpers are never parameters: only plain values can be a misspelt parameter
        new = {name for name, value in namespace.items() if name not in self.baseline and not name.startswith("_")
               and not isinstance(value, ModuleType) and not callable(value)}
        missing = sorted(set(spec) - new - set(self.baseline))
        if missing:
            raise ParameterError(f"the parameters cell of {self.notebook} does not define "
                                 f"{', '.join(missing)}", "restore the parameters cell from the repository")
        values = {name: namespace[name] for name in new | (set(spec) & set(namespace))}
        validate(self.notebook, values)
        return Parameters(self.notebook, {k: v for k, v in values.items() if k in spec})


def begin(notebook: str, namespace: dict) -> Runbook:
    """Remember the names that exist before the parameters cell (call it in the cell above)."""
    if notebook not in SPECS:
        raise ParameterError(f"unknown runbook {notebook!r}", f"use one of {', '.join(NOTEBOOKS)}")
    return Runbook(notebook, frozenset(namespace) | {"runbook", "P"})


class Parameters(dict):
    """The checked parameters: a dict that also reads as attributes (``P.palace``)."""

    def __init__(self, notebook: str, values: dict) -> None:
        super().__init__(values)
        self.notebook = notebook

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def public(self) -> dict:
        """The values fit to archive: the DSN shown without a password."""
        from ..dsn import redact

        out = dict(self)
        if out.get("dsn"):
            out["dsn"] = redact(out["dsn"])
        return out
