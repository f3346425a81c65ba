"""A palace of real local text with real all-MiniLM-L6-v2 vectors (``palace-pg make-palace --text local``).

:mod:`.corpus` finds the text (man pages, the Python standard library,
/usr/share/doc, installed packages), :mod:`.embedder` embeds it at each
chunk's own length, :mod:`.build` mines it with MemPalace's own miner pieces.
"""

from .build import make_text_palace
from .embedder import LengthBatchedMiniLM

__all__ = ["LengthBatchedMiniLM", "make_text_palace"]
