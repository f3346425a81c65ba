"""Helpers for palace_pg's tests and benchmarks (as alembic ships ``alembic.testing``).

Nothing here is used by the migration or the backend; pytest fixtures stay in
``tests/conftest.py`` and ``tests/palaces.py`` and call these.

* :mod:`.backend`: a migrated-looking palace built straight into the tables
  (``synthetic_drawers``, ``create_collection_table``, ``copy_rows``,
  ``build_indexes``, ``claim_palace``, ``build_palace``);
* :mod:`.chroma`: a Chroma palace written with chromadb itself from explicit
  rows (``build_palace``, ``unit_vectors``, ``copy_of``);
* :mod:`.injection`: the hostile strings SQL, Cypher and the KG must keep as data;
* :mod:`.runbooks`: the canary password and the quick runbook settings.

Generated MemPalace palaces come from :func:`palace_pg.synth.make_palace`.
"""
