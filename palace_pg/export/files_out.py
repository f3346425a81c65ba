"""The palace's small files, as the migration carried them into ``mempalace.files``.

``palace/<rel>`` goes inside the palace folder (embedder sidecar, .mempalace/origin.json,
marker files); ``beside/<name>`` goes next to it (hallways.json, tunnels.json:
MemPalace keeps them in the palace's parent folder so they survive a rebuild).
A file already beside the destination is left alone and reported: it belongs
to whatever palace lives there (after a cutover, MemPalace on PostgreSQL kept
writing tunnels.json there, so it is newer than the migration's copy).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import PalacePgError

PALACE_PREFIX = "palace/"
BESIDE_PREFIX = "beside/"


def _safe_join(root: Path, rel: str) -> Path:
    dest = (root / rel).resolve()
    if root.resolve() not in dest.parents:
        raise PalacePgError(f"mempalace.files holds a path outside the palace: {rel!r}",
                            "remove that row from mempalace.files; nothing was written outside OUT")
    return dest


def write_inside(palace: Path, files: list[tuple[str, bytes, str]]) -> list[str]:
    written = []
    for rel, content, _sha in files:
        if rel.startswith(PALACE_PREFIX):
            dest = _safe_join(palace, rel.removeprefix(PALACE_PREFIX))
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(content)
            written.append(rel)
    return written


def write_beside(palace: Path, files: list[tuple[str, bytes, str]]) -> dict:
    """Write ``beside/`` files into the palace's parent unless one is there; returns what happened to each."""
    out = {}
    for rel, content, sha in files:
        if not rel.startswith(BESIDE_PREFIX):
            continue
        dest = _safe_join(palace.parent, rel.removeprefix(BESIDE_PREFIX))
        if dest.exists():
            same = hashlib.sha256(dest.read_bytes()).hexdigest() == sha
            out[rel] = "already there, identical" if same else "already there, kept (differs from the migration's copy)"
            continue
        tmp = dest.with_name(dest.name + ".palace_pg-partial")
        tmp.write_bytes(content)
        tmp.replace(dest)
        out[rel] = "written"
    return out
