"""The runbooks under papermill and nbmake, against the real embedded server and generated palaces.

What is proven here: the notebooks run as committed (nbmake); injected parameters
reach them and are recorded; a misspelt parameter fails; a failed check is a failed
cell and a non-zero exit; the write gate refuses headless without ``confirm``; the
archived progress board reads "done"; the evidence manifest hashes what is on disk;
and the server's password (as PGPASSWORD) reaches no notebook, log, manifest or traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import papermill as pm
import psycopg
import pytest

from palace_pg import engine
from palace_pg.errors import ParameterError
from palace_pg.runbook import evidence, params, secrets
from palace_pg.runbook.files import sha256_bytes
from palace_pg.testing.runbooks import CANARY, FAST

from palace_pg.testing.chroma import copy_of
from palaces import generated

REPO = Path(__file__).resolve().parents[1]
RUNBOOKS = REPO / "runbooks"


def _nb(name: str) -> Path:
    return RUNBOOKS / f"{name}.ipynb"


@pytest.fixture
def palace(tmp_path) -> Path:
    return copy_of(generated(300, 7), tmp_path / "src")


@pytest.fixture
def canary_env(monkeypatch, pg_server):
    """The embedded server's real password as PGPASSWORD (it asks for one, so a canary would be refused)."""
    from palace_pg.server import auth

    password = auth.read_password(pg_server.passfile)
    monkeypatch.setenv("PGPASSWORD", password)
    return password


def _assert_no_canary(root: Path, *texts: str, canary: str = CANARY) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), f"canary found in {path}"
    for text in texts:
        assert canary not in text


# -- the notebooks as committed ----------------------------------------------------------------
@pytest.mark.parametrize("name", params.NOTEBOOKS)
def test_parameters_cell_matches_the_known_names(name):
    nb = nbformat.read(_nb(name), as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    inferred = pm.inspect_notebook(str(_nb(name)))
    assert set(inferred) == set(params.SPECS[name])
    assert all(p["inferred_type_name"] != "None" for p in inferred.values()), "annotate every parameter"
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit runbooks without outputs"


@pytest.mark.notebooks
def test_nbmake_runs_all_three_notebooks_as_committed(pg_server, tmp_path):
    """`pytest --nbmake runbooks/`: the defaults (demo palace, demo database) run 01 → 02 → 03 in order."""
    db = f"rb_nbmake_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PALACE_PG_RUNBOOK_DIR": str(tmp_path / "work"), "PALACE_PG_RUNBOOK_DB": db}
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=900",
                               "-p", "no:cacheprovider", "-q", str(RUNBOOKS)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    finally:
        pg_server.drop_database(db)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "3 passed" in proc.stdout
    figures = tmp_path / "work" / "evidence" / "figures"
    assert {p.name for p in figures.glob("*.png")} == {"recall_vs_ef_search.png", "latency.png",
                                                        "filtered_by_wing.png", "kg_parity.png"}


# -- parameters --------------------------------------------------------------------------------
def test_parameter_checks():
    with pytest.raises(ParameterError, match="did you mean 'confirm'"):
        params.validate("02_migrate", {"confirm_": True})
    with pytest.raises(ParameterError, match="must be bool"):
        params.validate("02_migrate", {"confirm": "yes"})  # `-r confirm yes` is a truthy string
    with pytest.raises(ParameterError, match="must be int"):
        params.validate("01_preflight", {"batch_size": True})
    with pytest.raises(ParameterError) as info:
        params.validate("01_preflight", {"dsn": f"postgresql://postgres:{CANARY}@127.0.0.1/x"})
    assert CANARY not in str(info.value)
    with pytest.raises(ParameterError, match="no runbook has a parameter 'batch_sise'"):
        params.split_by_notebook({"batch_sise": 10})
    assert params.parse_cli_value("True") is True and params.parse_cli_value("40") == 40
    assert params.parse_cli_value("[10, 20]") == [10, 20] and params.parse_cli_value("/a/b") == "/a/b"


@pytest.mark.notebooks
def test_misspelt_parameter_fails_the_notebook(tmp_path, fresh_db, palace):
    out = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(_nb("01_preflight")), str(out), kernel_name="python3", progress_bar=False,
                            parameters={"palace": str(palace), "dsn": fresh_db, "evidence_dir": str(tmp_path),
                                        "batch_sise": 100})
    assert info.value.ename == "ParameterError"
    assert "batch_size" in info.value.evalue  # the fix names the parameter that was meant


@pytest.mark.notebooks
def test_injected_parameters_reach_the_notebook_and_are_recorded(tmp_path, fresh_db, palace):
    out = tmp_path / "01.ipynb"
    pm.execute_notebook(str(_nb("01_preflight")), str(out), kernel_name="python3", progress_bar=False,
                        parameters={"palace": str(palace), "dsn": fresh_db, "evidence_dir": str(tmp_path / "ev"),
                                    "batch_size": 123})
    nb = nbformat.read(out, as_version=4)
    assert nb.metadata.papermill.parameters["batch_size"] == 123
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    record = evidence.read_records(nb)["01_preflight"]
    assert record["parameters"]["batch_size"] == 123
    assert record["parameters"]["palace"] == str(palace)
    assert record["plan"]["preflight"]["ok"] is True
    assert json.loads((tmp_path / "ev" / "results" / "01_preflight.json").read_text()) == record


@pytest.mark.notebooks
def test_failed_check_is_a_failed_cell_and_a_nonzero_exit(tmp_path, pg_server, palace):
    """A database without the extensions: preflight's vector check fails (the KG would go to plain tables)."""
    db = f"rb_plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    try:
        out = tmp_path / "failed.ipynb"
        proc = subprocess.run([sys.executable, "-m", "papermill", str(_nb("01_preflight")), str(out),
                               "-p", "palace", str(palace), "-p", "dsn", pg_server.url(db),
                               "-p", "evidence_dir", str(tmp_path / "ev"), "--no-progress-bar"],
                              capture_output=True, text=True, timeout=600)
    finally:
        pg_server.drop_database(db)
    assert proc.returncode == 1
    assert "PreflightRefused" in proc.stderr
    nb = nbformat.read(out, as_version=4)
    assert nb.metadata.papermill.exception is True
    failed = [c for c in nb.cells if c.metadata.get("papermill", {}).get("status") == "failed"]
    assert len(failed) == 1 and "require_ok" in failed[0].source
    assert failed[0].outputs[-1].ename == "PreflightRefused"
    checks = evidence.read_records(nb)["01_preflight"]["plan"]["preflight"]["checks"]
    assert {c["name"] for c in checks if c["status"] == "fail"} >= {"vector"}  # recorded before raising
    assert [c["data"]["kg_store"] for c in checks if c["name"] == "kg_store"] == ["tables"]


# -- run_runbooks: gates, evidence, secrets ------------------------------------------------------
@pytest.mark.notebooks
def test_write_gate_refuses_headless_without_confirm(tmp_path, fresh_db, palace):
    result = evidence.run_runbooks(palace, tmp_path / "ev", dsn=fresh_db, confirm=False, parameters=FAST)
    assert not result["ok"]
    assert result["failed"]["notebook"] == "02_migrate"
    assert result["failed"]["error"].startswith("GateNotConfirmed")
    assert engine.status(fresh_db)["checkpoints"] == []  # nothing was written
    gates = [json.loads(line) for line in (tmp_path / "ev" / "gates.jsonl").read_text().splitlines()]
    assert gates[-1]["decision"] == "refused"
    manifest = json.loads((tmp_path / "ev" / "manifest.json").read_text())
    assert manifest["ok"] is False and [n["passed"] for n in manifest["notebooks"]] == [True, False]


@pytest.mark.notebooks
def test_run_runbooks_archives_evidence_and_never_the_canary(tmp_path, fresh_db, palace, canary_env, capfd, caplog):
    ev = tmp_path / "ev"
    result = evidence.run_runbooks(palace, ev, dsn=fresh_db, confirm=True, parameters=FAST)
    assert result["ok"], result
    manifest = json.loads((ev / "manifest.json").read_text())
    # every hash in the manifest is the hash of the bytes on disk; the code hash is the committed runbook's
    for entry in manifest["notebooks"]:
        data = (ev / entry["path"]).read_bytes()
        assert entry["sha256"] == sha256_bytes(data) and entry["passed"]
        assert entry["code_sha256"] == entry["runbook_code_sha256"]
    for rel, digest in manifest["files"].items():
        assert sha256_bytes((ev / rel).read_bytes()) == digest
    assert manifest["source"]["fingerprint"] and manifest["versions"]["extensions"] == {"age": "1.7.0",
                                                                                         "vector": "0.8.6"}
    assert manifest["versions"]["server_version"].startswith("18.")
    assert manifest["results"]["03_verify"]["verification"]["differences"] == 0
    assert {p.name for p in (ev / "figures").glob("*.png")} == {"recall_vs_ef_search.png", "latency.png",
                                                                "filtered_by_wing.png", "kg_parity.png"}
    # the progress board was archived in its final state, not at 0 %
    migrate = nbformat.read(ev / "notebooks" / "02_migrate.ipynb", as_version=4)
    board = next(o for c in migrate.cells for o in c.get("outputs", [])
                 if o.get("data", {}).get("text/plain", "").startswith("Migration"))
    text = board["data"]["text/plain"]
    assert "running" not in text and "pending" not in text and text.count("done") >= len(engine.PHASES)
    out, err = capfd.readouterr()
    _assert_no_canary(ev, out, err, caplog.text, json.dumps(result), canary=canary_env)


@pytest.mark.notebooks
def test_a_secret_in_the_evidence_fails_closed(tmp_path, fresh_db, pg_server):
    """A known secret that would be archived (here: a word in the palace path) stops the run; no manifest."""
    secret = "leakprobe-4711"
    src = copy_of(generated(300, 7), tmp_path / secret)
    ev = tmp_path / "ev"
    with pytest.raises(secrets.SecretLeak) as info:
        evidence.run_runbooks(src, ev, dsn=fresh_db, secret_values=(secret,), notebooks=("01_preflight",))
    assert secret not in str(info.value) or "a known secret value" in str(info.value)
    assert not (ev / "manifest.json").exists()
    assert not any(secret.encode() in p.read_bytes() for p in ev.rglob("*") if p.is_file())


def test_secret_patterns():
    found = secrets.scan_text
    assert found("host=db password=hunter2 dbname=x", []) == ["password=value"]
    assert found("postgresql://alice:s3cret@db:5432/x", []) == ["uri with a password"]
    assert "PGPASSWORD assignment" in found("export PGPASSWORD=s3cret", [])
    assert found("user=postgres dbname=x host=127.0.0.1 (no password)", []) == []
    assert found("keep it in PGPASSWORD or ~/.pgpass; password=***", []) == []
    assert found(f"…{CANARY}…", [CANARY]) == ["a known secret value"]


def test_password_in_the_dsn_is_refused_before_anything_runs(tmp_path, palace):
    with pytest.raises(ParameterError) as info:
        evidence.run_runbooks(palace, tmp_path / "ev", dsn=f"postgresql://postgres:{CANARY}@127.0.0.1:1/x")
    assert CANARY not in str(info.value)
    assert not (tmp_path / "ev").exists() or not any((tmp_path / "ev").rglob("*.ipynb"))


@pytest.mark.notebooks
def test_cutover_behind_its_gate_then_verify_reads_the_chroma_backup(tmp_path, fresh_db, palace):
    """`-p cutover True`: 02 moves the Chroma palace aside (kept), leaves the marker, smoke-tests it; 03 still proves
    parity against the Chroma backup."""
    ev = tmp_path / "ev"
    result = evidence.run_runbooks(palace, ev, dsn=fresh_db, confirm=True, parameters={**FAST, "cutover": True})
    assert result["ok"], result
    assert (palace / "palace_pg.json").is_file() and not (palace / "chroma.sqlite3").exists()
    backups = list(palace.parent.glob("palace.chromadb-backup-*"))
    assert len(backups) == 1 and (backups[0] / "chroma.sqlite3").is_file()
    results = json.loads((ev / "manifest.json").read_text())["results"]
    smoke = {r["check"]: r["status"] for r in results["02_cutover"]["smoke"]}
    assert smoke["mempalace status"] == "ok" and smoke["KG query (AGE)"] == "ok"
    assert results["02_cutover"]["gate"] == "parameter cutover=True"
    assert results["03_verify"]["verification"]["differences"] == 0
