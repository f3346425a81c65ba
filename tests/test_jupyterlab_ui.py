"""02_migrate as an operator runs it: JupyterLab in a real browser, Run All, press the gate, run on.

JupyterLab is started headless on loopback with a random token; Debian's
chromium is driven by playwright (``executable_path``: playwright never
downloads a browser here).  Skipped when chromium or playwright is missing, or
with PALACE_PG_SKIP_UI=1.  Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from palace_pg import engine

from palace_pg.testing.chroma import copy_of
from palaces import generated

CHROMIUM = os.environ.get("PALACE_PG_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
RUNBOOK = Path(__file__).resolve().parents[1] / "runbooks" / "02_migrate.ipynb"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def _playwright_missing() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return True
    return False


pytestmark = [
    pytest.mark.notebooks,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.skipif(_playwright_missing(), reason="playwright is not installed (pip install playwright)"),
    pytest.mark.skipif(bool(os.environ.get("PALACE_PG_SKIP_UI")), reason="PALACE_PG_SKIP_UI is set"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _operator_notebook(folder: Path, palace: Path, dsn: str, evidence: Path) -> Path:
    """02_migrate with its parameters cell edited as an operator would: palace, DSN, evidence folder."""
    nb = nbformat.read(RUNBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {"palace": repr(str(palace)), "dsn": repr(dsn), "evidence_dir": repr(str(evidence))}
    lines = []
    for line in cell.source.splitlines():
        name = line.split(":", 1)[0]
        lines.append(f"{name}: Optional[str] = {values[name]}" if name in values else line)
    cell.source = "\n".join(lines)
    path = folder / "02_migrate.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on loopback serving ``tmp_path/lab``; yields (base url, token, folder)."""
    lab = tmp_path / "lab"
    lab.mkdir()
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
                             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={lab}",
                             "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("JupyterLab did not start: " + (tmp_path / "jupyterlab.log").read_text()[-2000:])
                time.sleep(0.5)
        yield base, token, lab
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # our own server's process group (its kernels included)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _menu(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=menu).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def _dismiss_dialogs(page) -> None:
    """JupyterLab 4.6 may ask for the kernel (the notebook's own is preselected) and about news."""
    select = page.locator(".jp-Dialog button", has_text="Select")
    try:
        select.first.wait_for(state="visible", timeout=15_000)
        select.first.click()
    except Exception:  # no dialog this time
        pass
    news = page.locator(".jp-Notification-Toast button, .jp-toast-button", has_text="No")
    if news.count():
        news.first.click()


def _shot(page, name: str, anchor) -> Path:
    """Scroll ``anchor`` into view, let JupyterLab's windowed notebook render, and keep a screenshot."""
    ARTIFACTS.mkdir(exist_ok=True)
    anchor.scroll_into_view_if_needed()
    page.wait_for_timeout(1500)
    anchor.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    path = ARTIFACTS / f"jupyterlab_02_migrate_{name}.png"
    page.screenshot(path=str(path))
    return path


def test_operator_runs_02_migrate_in_jupyterlab_and_presses_the_gate(jupyterlab, fresh_db, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, token, lab = jupyterlab
    palace = copy_of(generated(300, 7), tmp_path / "src")
    evidence = tmp_path / "ev"
    _operator_notebook(lab, palace, fresh_db, evidence)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"{base}/lab/tree/02_migrate.ipynb?token={token}")
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
            _dismiss_dialogs(page)
            expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_visible(timeout=60_000)

            # Run All stops at the write gate: the button is shown and the write cell refuses
            _menu(page, "Run", "Run All Cells")
            button = page.locator("button", has_text="Start migration")
            expect(button).to_be_visible(timeout=180_000)
            refusal = page.locator(".jp-Cell", has=page.locator(".jp-OutputArea-output", has_text="GateNotConfirmed"))
            expect(refusal.first).to_be_visible(timeout=60_000)
            assert engine.status(fresh_db)["checkpoints"] == []  # nothing written before the click
            _shot(page, "1_gate", button)

            # the operator presses the gate, then runs the refused cell and everything below it
            button.click()
            expect(page.locator("button", has_text="Confirmed")).to_be_visible(timeout=30_000)
            refusal.first.locator(".jp-InputPrompt").first.click()
            _menu(page, "Run", "Run Selected Cell and All Below")
            done = page.locator(".jp-OutputArea-output", has_text="migration done in")
            expect(done.first).to_be_visible(timeout=300_000)
            expect(page.locator("button", has_text="Cut over now")).to_be_visible(timeout=120_000)
            _shot(page, "3_cutover_gate", page.locator("button", has_text="Cut over now").first)
            _shot(page, "2_migrated", page.locator(".jp-OutputArea-output h4", has_text="Migration").first)
        finally:
            browser.close()

    status = engine.status(fresh_db)
    assert status["complete"], status["checkpoints"]
    gates = (evidence / "gates.jsonl").read_text()
    assert "button pressed by" in gates
    assert (palace / "chroma.sqlite3").is_file()  # the cutover gate was not pressed: the palace is untouched
