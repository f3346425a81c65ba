"""``run_runbooks``: run 01_preflight → 02_migrate → 03_verify with papermill and archive the evidence.

The evidence folder::

    notebooks/01_preflight.ipynb …   the executed notebooks (a failed one too: it is the log of the failure)
    logs/<notebook>.stdout.txt …     the kernels' stdout and stderr
    figures/*.png, results/*.json    written by the notebooks themselves
    gates.jsonl                      every gate decision
    manifest.json                    written last: hashes, versions, parameters, results

Every file is scanned for secrets before the manifest is written, and the run
fails closed (:class:`~palace_pg.runbook.secrets.SecretLeak`, no manifest, the
leaking files removed).  Notebooks are executed into ``.partial/`` and moved
into place atomically; the manifest is written last, so a crash never leaves a
manifest that points at a partial notebook.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat

from .. import __version__
from ..dsn import redact
from . import params, secrets
from .display import EVIDENCE_MIME
from .files import atomic_write, sha256_bytes

log = logging.getLogger(__name__)

ENV_RUNBOOKS = "PALACE_PG_RUNBOOKS"
PACKAGES = ("palace_pg", "mempalace", "chromadb", "psycopg", "pgvector", "papermill", "nbclient", "ipykernel",
            "numpy", "matplotlib")


def runbooks_dir() -> Path:
    """The runbook notebooks: $PALACE_PG_RUNBOOKS, else ``runbooks/`` of the source tree."""
    if os.environ.get(ENV_RUNBOOKS):
        return Path(os.environ[ENV_RUNBOOKS])
    return Path(__file__).resolve().parents[2] / "runbooks"


def code_sha256(nb) -> str:
    """Hash of the procedure: the kernel name and every code cell's source, papermill's injected cell excluded."""
    digest = hashlib.sha256(nb.metadata.get("kernelspec", {}).get("name", "").encode() + b"\0")
    for cell in nb.cells:
        if cell.cell_type == "code" and "injected-parameters" not in cell.metadata.get("tags", []):
            digest.update(cell.source.encode() + b"\0")
    return digest.hexdigest()


def read_records(nb) -> dict[str, Any]:
    """The evidence records a notebook emitted through ``display.record``."""
    found = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {}) if out.get("output_type") in ("display_data", "execute_result") else {}
            if EVIDENCE_MIME in data:
                found[data[EVIDENCE_MIME]["name"]] = data[EVIDENCE_MIME]["data"]
    return found


def notebook_status(nb) -> dict:
    """Passed only when papermill saw no exception, no cell has an error output, and every code cell completed."""
    cells = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    incomplete = [i for i, c in enumerate(cells) if c.metadata.get("papermill", {}).get("status") != "completed"]
    pm = nb.metadata.get("papermill", {})
    return {"passed": not errors and not incomplete and not pm.get("exception"),
            "error": f"{errors[-1]['ename']}: {errors[-1]['evalue']}" if errors else None,
            "duration_seconds": pm.get("duration")}


def _values(palace, evidence: Path, dsn, confirm: bool, parameters: dict | None) -> dict:
    values = {k: params.parse_cli_value(v) if isinstance(v, str) and k not in ("palace", "dsn", "evidence_dir",
                                                                                 "work_dir") else v
              for k, v in (parameters or {}).items()}
    values.update(evidence_dir=str(evidence), confirm=bool(confirm) or bool(values.get("confirm", False)))
    values["palace"] = str(Path(palace).expanduser().resolve()) if palace else None
    if dsn:
        values["dsn"] = dsn
    return values


def _versions(records: dict) -> dict:
    out = {"python": platform.python_version(), "packages": {}}
    for name in PACKAGES:
        try:
            out["packages"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    target = (((records.get("01_preflight") or {}).get("plan") or {}).get("preflight") or {}).get("facts", {}) \
        .get("target", {})
    out["server_version"] = target.get("server_version")
    out["extensions"] = target.get("extensions")
    return out


def run_runbooks(palace, evidence, dsn: str | None = None, confirm: bool = False, parameters: dict | None = None,
                 *, secret_values: tuple[str, ...] = (), execution_timeout: int | None = 3600,
                 notebooks: tuple[str, ...] = params.NOTEBOOKS, progress=None) -> dict:
    """Run the runbooks in order, stop at the first failure, archive everything with a manifest.

    Returns ``{"ok", "evidence", "manifest", "notebooks", "failed"}``; raises
    :class:`~palace_pg.runbook.secrets.SecretLeak` (no manifest) when a secret would be archived, and
    :class:`~palace_pg.errors.ParameterError` before anything runs for an unknown or mistyped parameter.
    ``progress(notebook, cell, cells, title)`` is called as each code cell starts.
    """
    import papermill as pm

    from .papermill_engine import register

    evidence = Path(evidence).expanduser().resolve()
    values = _values(palace, evidence, dsn, confirm, parameters)
    routed = params.split_by_notebook(values)  # refuses unknown names and a password in the DSN first
    known = secrets.known_secrets(secret_values)
    source_dir = runbooks_dir()
    partial = evidence / ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "logs").mkdir(parents=True)
    (evidence / "manifest.json").unlink(missing_ok=True)  # a manifest always describes the last run only
    entries, records, failed = [], {}, None
    for name in notebooks:
        src = source_dir / f"{name}.ipynb"
        out = partial / f"{name}.ipynb"
        log.info("running %s", name)
        with open(partial / "logs" / f"{name}.stdout.txt", "w") as so, \
                open(partial / "logs" / f"{name}.stderr.txt", "w") as se:
            try:
                pm.execute_notebook(str(src), str(out), parameters=routed[name], kernel_name="python3",
                                    progress_bar=False, stdout_file=so, stderr_file=se,
                                    execution_timeout=execution_timeout, engine_name=register(),
                                    cell_progress=_for_notebook(progress, name))
            except Exception as exc:  # PapermillExecutionError, a dead kernel, a timeout: all end the run
                failed = {"notebook": name, "error": type(exc).__name__}
        entry = _archive(name, src, out, evidence, partial, known)
        entries.append(entry)
        records.update(entry.pop("records"))
        if failed or not entry["passed"]:
            failed = failed or {"notebook": name, "error": entry["error"]}
            failed["error"] = entry["error"] or failed["error"]
            break
    secrets.refuse(_scan_and_remove(evidence, known))
    manifest = _manifest(values, entries, records, failed, evidence)
    atomic_write(evidence / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True, default=str).encode())
    shutil.rmtree(partial, ignore_errors=True)
    return {"ok": failed is None, "evidence": str(evidence), "manifest": str(evidence / "manifest.json"),
            "notebooks": [e["path"] for e in entries], "failed": failed}


def _for_notebook(progress, name: str):
    if progress is None:
        return None
    return lambda cell, cells, title: progress(name, cell, cells, title)


def _archive(name: str, src: Path, out: Path, evidence: Path, partial: Path, known: list[str]) -> dict:
    """Scan the executed notebook and its logs, then move them into place; returns the manifest entry."""
    moved = [(out, evidence / "notebooks" / out.name)] + \
        [(partial / "logs" / f"{name}.{s}.txt", evidence / "logs" / f"{name}.{s}.txt") for s in ("stdout", "stderr")]
    findings = [f for a, _ in moved if a.exists() for f in secrets.scan_file(a, known, root=partial)]
    if findings:  # fail closed: nothing of this run stays, including what the notebook wrote itself
        shutil.rmtree(partial, ignore_errors=True)
        secrets.refuse(findings + _scan_and_remove(evidence, known))
    if not out.exists():
        return {"notebook": name, "path": None, "passed": False, "error": "papermill wrote no output notebook",
                "records": {}}
    data = out.read_bytes()
    nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    for a, b in moved:
        if a.exists():
            atomic_write(b, a.read_bytes())
            a.unlink()
    status = notebook_status(nb)
    return {"notebook": name, "path": str((evidence / "notebooks" / out.name).relative_to(evidence)),
            "sha256": sha256_bytes(data), "code_sha256": code_sha256(nb),
            "runbook_code_sha256": code_sha256(nbformat.read(str(src), as_version=4)),
            "parameters": _public(nb.metadata.get("papermill", {}).get("parameters", {})),
            **status, "records": read_records(nb)}


def _public(values: dict) -> dict:
    return {k: (redact(v) if k == "dsn" and v else v) for k, v in values.items()}


def _scan_and_remove(evidence: Path, known: list[str]) -> list[secrets.Finding]:
    """Scan the whole evidence folder; a file with a finding is removed (fail closed) and reported."""
    findings = secrets.scan_tree(evidence, known)
    for f in findings:
        (evidence / f.path).unlink(missing_ok=True)
    return findings


def _manifest(values: dict, entries: list[dict], records: dict, failed: dict | None, evidence: Path) -> dict:
    plan = (records.get("01_preflight") or {}).get("plan") or {}
    files = {str(p.relative_to(evidence)): sha256_bytes(p.read_bytes())
             for p in sorted(evidence.rglob("*")) if p.is_file() and p.name != "manifest.json"
             and ".partial" not in p.parts}
    return {
        "ok": failed is None, "failed": failed,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(), "palace_pg": __version__,
        "source": {"palace": values.get("palace") or (plan.get("preflight") or {}).get("facts", {}).get("palace"),
                   "fingerprint": plan.get("source_fingerprint")},
        "versions": _versions(records),
        "parameters": _public(values),
        "notebooks": entries,
        "files": files,
        "results": records,
    }
