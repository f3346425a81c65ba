"""Another local OS user (``nobody``) tries every door of the embedded server (issue 15.1).

Shared by tests/test_server.py and benchmarks/reliability_report.py: TCP as ``postgres`` with no
password, TCP with the owner's URL (its ``passfile=`` is unreadable to another user), the Unix
socket, and TCP with a guessed password.  Acting as another user needs root and ``runuser``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ..server import EmbeddedServer

OUTSIDER = "nobody"


def can_act_as_outsider() -> bool:
    return os.geteuid() == 0 and shutil.which("runuser") is not None


def as_outsider(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", OUTSIDER, "--", *cmd], capture_output=True, text=True, timeout=30,
                          check=False)


def outsider_attempts(server: EmbeddedServer) -> dict[str, subprocess.CompletedProcess]:
    """{door: the outsider's psql} for each way in; a door held when psql fails and printed no 'IN'."""
    psql = server._bin("psql")
    base = ["-X", "-w", "-tA", "-c", "SELECT 'IN'"]
    attempts = {
        "tcp": [psql, "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-d", "postgres", *base],
        "tcp with the url": [psql, server.url("postgres"), *base],
        "socket": [psql, "-h", str(server.run_dir), "-p", str(server.port), "-U", "postgres", "-d", "postgres",
                   *base],
        "tcp, guessed password": ["env", "PGPASSWORD=postgres", psql, "-h", "127.0.0.1", "-p", str(server.port),
                                  "-U", "postgres", "-d", "postgres", *base],
    }
    return {name: as_outsider(*cmd) for name, cmd in attempts.items()}


def got_in(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode == 0 or "IN" in proc.stdout.split()
