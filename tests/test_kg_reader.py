"""palace_pg finds the same knowledge graph that mempalace itself would."""

from __future__ import annotations

from pathlib import Path

import pytest

from palace_pg.source import kg_reader


@pytest.mark.parametrize("layout", ["local", "default-palace-legacy-kg", "default-palace-local-kg", "elsewhere-none"])
def test_the_kg_path_matches_mempalaces_own_rule(tmp_path, monkeypatch, layout):
    import mempalace.config
    import mempalace.knowledge_graph
    from mempalace.palace_audit import resolve_kg_path as mempalace_resolve

    home = tmp_path / "home" / ".mempalace"
    default_palace = home / "palace"
    default_palace.mkdir(parents=True)
    legacy_kg = home / "knowledge_graph.sqlite3"
    legacy_kg.write_bytes(b"")
    monkeypatch.setattr(mempalace.config, "DEFAULT_PALACE_PATH", str(default_palace))
    monkeypatch.setattr(mempalace.knowledge_graph, "DEFAULT_KG_PATH", str(legacy_kg))
    palace = {"local": tmp_path / "p1", "elsewhere-none": tmp_path / "p2"}.get(layout, default_palace)
    palace.mkdir(parents=True, exist_ok=True)
    if layout in ("local", "default-palace-local-kg"):
        (palace / "knowledge_graph.sqlite3").write_bytes(b"")
    theirs = Path(mempalace_resolve(str(palace)))
    ours = kg_reader.resolve_kg_path(palace)
    assert ours == (theirs if theirs.is_file() else None)
