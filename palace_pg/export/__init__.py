"""Export a palace from PostgreSQL back to MemPalace's Chroma + sqlite format (the lossless way back).

- :mod:`.snapshot`: the target database read in one REPEATABLE READ READ ONLY transaction;
- :mod:`.chroma_out` / :mod:`.kg_out` / :mod:`.files_out`: writers through chromadb and mempalace;
- :mod:`.digests`: the per-row digests both directions compare;
- :mod:`.verify`: the exported palace read back (direct reader and chromadb) against the database;
- :mod:`.run`: ``export_palace``, which ties them together (OUT.partial, renamed at the end).
"""

from __future__ import annotations

from .run import export_palace
from .verify import verify_export

__all__ = ["export_palace", "verify_export"]
