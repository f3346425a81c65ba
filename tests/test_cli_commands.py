"""The cutover and verify commands: cutover refuses a target holding another palace; verify reports every collection."""

from __future__ import annotations

import pytest

from palace_pg import engine
from palace_pg.cutover import cutover
from palace_pg.errors import PalacePgError
from palace_pg.phases.base import MigrationOptions
from palace_pg.source.snapshot import hash_palace
from palace_pg.testing.chroma import copy_of
from palaces import generated


def test_cutover_against_a_database_holding_another_palace_is_refused(tmp_path, fresh_db):
    migrated = copy_of(generated(300, 7), tmp_path / "a")
    other = copy_of(generated(300, 8), tmp_path / "b")
    engine.migrate(MigrationOptions(palace=migrated, dsn=fresh_db, work_dir=tmp_path / "w", recall_queries=10))
    before = hash_palace(other)
    with pytest.raises(PalacePgError) as err:
        cutover(other, fresh_db)
    assert "another palace" in err.value.problem and "--dsn" in err.value.fix
    assert hash_palace(other) == before and (other / "chroma.sqlite3").is_file()


def test_the_verify_command_reports_every_collection_and_exits_0(tmp_path, fresh_db, capsys):
    from palace_pg.cli import main

    palace = copy_of(generated(300, 7), tmp_path / "src")
    engine.migrate(MigrationOptions(palace=palace, dsn=fresh_db, work_dir=tmp_path / "w", recall_queries=10))
    assert main(["verify", "--palace", str(palace), "--dsn", fresh_db, "--work-dir", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "mempalace_drawers" in out and "verified: 0 difference(s)" in out
