"""The migration's phases, in order: schema, drawers, collections, indexes, kg, verify, done.

Preflight (phase 0) runs before them on every run and writes nothing; see :mod:`.preflight`.
"""
