"""Catch a migrated target up with its palace while MemPalace keeps running (``palace-pg sync``).

:mod:`.changes` finds the rows written since the last read (Chroma's seq_ids),
:mod:`.rows` and :mod:`.kg` write exactly those, :mod:`.run` puts it together
with the palace's small files and the bookkeeping.
"""
