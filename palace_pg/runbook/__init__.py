"""The runbooks' helpers: parameters, gates, displays, measurements and the evidence archive.

The notebooks in ``runbooks/`` hold parameters, calls, tables and plots; every
decision and computation they show lives here or in the engine.

- :mod:`.params`: the known parameters; a misspelt one fails instead of keeping its default
- :mod:`.demo`: the generated demo palace and database the defaults run on
- :mod:`.display`: checks, checkpoints, parity tables, figures, evidence records
- :mod:`.board`: the live progress board (snapshot, preflight, every phase and the collections it handles)
- :mod:`.gate`: confirmation gates (a button in JupyterLab, a parameter under papermill)
- :mod:`.steps`: cells that combine several library calls
- :mod:`.catch_up`: 02_migrate's online path: syncs, the catch-up cutover and its downtime
- :mod:`.measure`, :mod:`.kgparity`, :mod:`.plots`: what 03_verify measures and plots
- :mod:`.evidence`: ``run_runbooks``: 01 → 03 under papermill, archived with a manifest
"""
