"""A frozen, hashed copy of the source palace: the only thing palace_pg ever opens.

chromadb's client writes into a palace when it opens it, and a long-lived
palace can crash it (chroma-core/chroma#6949, #7238).  So palace_pg never
opens the source: it copies every file (WAL sidecars included) into a work
folder and reads the copy.  The copy is the kernel's (``shutil.copyfile``:
copy_file_range/sendfile) while another thread hashes the same file, about
3x faster than hashing the bytes on their way through Python.  The source stays
byte-identical; the hashes give the palace's fingerprint, which binds every
checkpoint to exactly this content.

A file that changes while it is copied means a live writer: the copy is
refused rather than read half-written, unless the copy is ``online`` (MemPalace
keeps running; ``palace-pg sync`` catches up later): then what changed is
copied again until one pass sees the whole palace still.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SourceChanged, SourceError

log = logging.getLogger(__name__)

_CHUNK = 4 << 20
# online copies: how many passes before giving up, and the pause between them (grows each pass)
ONLINE_ATTEMPTS = 20
ONLINE_SETTLE_SECONDS = 0.05
# Files beside the palace folder that belong to it (mempalace.md §1.2).
BESIDE_PALACE = ("hallways.json", "tunnels.json")


@dataclass
class FileEntry:
    relpath: str  # relative to the snapshot root: "palace/…", "beside/…" or "kg/…"
    source: str
    size: int
    sha256: str


@dataclass
class Snapshot:
    root: Path
    palace: Path  # the copy of the palace folder
    kg_path: Path | None  # the copy of the knowledge graph, if there is one
    files: list[FileEntry] = field(default_factory=list)
    passes: int = 1  # copy passes it took (more than one only online, while MemPalace wrote)

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for entry in sorted(self.files, key=lambda e: e.relpath):
            digest.update(f"{entry.relpath}\0{entry.size}\0{entry.sha256}\n".encode())
        return digest.hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.files)

    def manifest(self) -> dict:
        return {"fingerprint": self.fingerprint,
                "files": {e.relpath: {"size": e.size, "sha256": e.sha256} for e in self.files}}

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _stat_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fin:
        for chunk in iter(lambda: fin.read(_CHUNK), b""):
            digest.update(chunk)  # releases the GIL: runs beside the copy
    return digest.hexdigest()


def source_files(palace: Path, kg_path: Path | None) -> list[tuple[str, Path]]:
    """(relpath in snapshot, source path) for everything that belongs to the palace."""
    palace = Path(palace)
    found: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(palace):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                found.append(("palace/" + path.relative_to(palace).as_posix(), path))
    for name in BESIDE_PALACE:
        path = palace.parent / name
        if path.is_file():
            found.append((f"beside/{name}", path))
    if kg_path is not None and not _is_inside(kg_path, palace):
        for suffix in ("", "-wal", "-shm"):
            path = Path(str(kg_path) + suffix)
            if path.is_file():
                found.append((f"kg/{path.name}", path))
    return found


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def hash_palace(palace: Path, kg_path: Path | None = None, *, settled: dict[str, tuple] | None = None,
                known: dict[str, str] | None = None) -> dict[str, str]:
    """relpath → sha256 of every file of the palace, without copying (for 'source untouched' checks).

    A file whose ``settled`` status (:func:`settled_files`, taken before ``known`` was hashed) is
    unchanged keeps its ``known`` hash instead of being read again.
    """
    settled, known = settled or {}, known or {}
    return {rel: known[rel] if rel in known and rel in settled and _full_stat(path) == settled[rel]
            else _sha256_of(path) for rel, path in source_files(palace, kg_path)}


#: Timestamps tick coarser than a nanosecond: a file changed this recently may still change within
#: the same tick without its status showing it (git's "racy" files), so it is never taken as settled.
RACY_SECONDS = 2.0


def _full_stat(path: Path) -> tuple[int, int, int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


def settled_files(palace: Path, kg_path: Path | None = None) -> dict[str, tuple]:
    """relpath → (size, mtime, ctime, inode, device) of every file not changed for RACY_SECONDS.

    Every write changes a file's ctime, which no program can set back, so a file whose status is
    still the same later was not written in between: what was hashed after this call still holds.
    """
    limit = time.time_ns() - int(RACY_SECONDS * 1e9)
    out = {}
    for rel, path in source_files(palace, kg_path):
        key = _full_stat(path)
        if key[1] < limit and key[2] < limit:
            out[rel] = key
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_snapshots(work_dir: Path, *, including_own: bool = False) -> list[Path]:
    """Delete ``snapshot-<pid>`` folders whose process is gone (a killed run's copy of a palace),
    and this process's own with ``including_own`` (a copy kept past its run, as the cutover does)."""
    removed = []
    for folder in Path(work_dir).glob("snapshot-*"):
        pid = folder.name.removeprefix("snapshot-")
        if not (folder.is_dir() and pid.isdigit()):
            continue
        if (including_own and int(pid) == os.getpid()) or (int(pid) != os.getpid() and not _pid_alive(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            log.info("removed the snapshot %s (of process %s)", folder, pid)
    return removed


def _copy_and_hash(listing: list[tuple[str, Path]], root: Path, stats: dict,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, FileEntry]:
    """Copy every file into ``root`` (the kernel's copy beside a hashing thread), reporting bytes done."""
    out = {}
    total, done = sum(stats[rel][0] for rel, _ in listing), 0
    if progress:
        progress(0, total)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="palace_pg-snapshot") as pool:
        jobs = []
        for rel, path in listing:
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((rel, path, pool.submit(shutil.copyfile, path, dst), pool.submit(_sha256_of, path)))
        for rel, path, copied, hashed in jobs:
            copied.result()
            out[rel] = FileEntry(rel, str(path), stats[rel][0], hashed.result())
            done += stats[rel][0]
            if progress:
                progress(done, total)
    return out


def _stats(listing: list[tuple[str, Path]]) -> dict[str, tuple[int, int]]:
    return {rel: _stat_key(path) for rel, path in listing}


def take_snapshot(palace: Path, work_dir: Path, kg_path: Path | None = None,
                  progress: Callable[[int, int], None] | None = None, *, online: bool = False,
                  attempts: int = ONLINE_ATTEMPTS) -> Snapshot:
    """Copy and hash the palace into ``work_dir/snapshot-<pid>``.

    Offline (the default), a file changing meanwhile means a live writer: refused.  ``online``
    (MemPalace may be writing): the files that changed during a pass are copied again until one
    whole pass sees no file change (size, mtime to the nanosecond), so the copy is the palace at
    one instant, never a half-written file; after ``attempts`` passes it gives up (SourceChanged).
    ``progress(bytes_done, bytes_total)`` is called as each file of the first pass is copied and hashed.
    """
    palace = Path(palace)
    if not palace.is_dir():
        raise SourceError(f"the palace folder {palace} does not exist", "pass --palace with the palace's path")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_snapshots(work_dir)  # a killed run cannot clean up after itself; the next one does
    root = work_dir / f"snapshot-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    snap = Snapshot(root=root, palace=root / "palace", kg_path=None)
    passes = 0
    try:
        listing = source_files(palace, kg_path)
        before = _stats(listing)
        # a change to a file while it is copied and hashed shows in the stat comparison below
        entries = _copy_and_hash(listing, root, before, progress)
        while True:
            passes += 1
            after_listing = source_files(palace, kg_path)
            after = _stats(after_listing)
            if after == before or not online or passes >= attempts:
                break
            # online: copy again what changed, appeared or vanished, then look once more
            for rel in set(before) - set(after):
                entries.pop(rel, None)
                (root / rel).unlink(missing_ok=True)
            changed = [(rel, path) for rel, path in after_listing if before.get(rel) != after[rel]]
            before = after
            entries.update(_copy_and_hash(changed, root, after))
            time.sleep(ONLINE_SETTLE_SECONDS * passes)
    except FileNotFoundError as exc:
        snap.remove()
        if online and passes < attempts:
            return take_snapshot(palace, work_dir, kg_path, online=True, attempts=attempts - passes - 1)
        raise SourceChanged(f"a file of the palace vanished while it was read: {exc.filename}",
                            "stop every MemPalace process (MCP server, daemon, miners) and rerun") from None
    except BaseException:
        snap.remove()
        raise
    if after != before:
        changed = sorted(set(before.items()) ^ set(after.items()))
        snap.remove()
        if online:
            raise SourceChanged(
                f"the palace kept changing through {passes} copies ({len(changed)} file(s), e.g. {changed[0][0]})",
                "rerun when MemPalace is quieter, or stop its writers for the few seconds of the copy",
                changed=[c[0] for c in changed])
        raise SourceChanged(
            f"the palace changed while it was read ({len(changed)} file(s), e.g. {changed[0][0]}): a live writer",
            "stop every MemPalace process (MCP server, daemon, miners, hooks) and rerun, "
            "or migrate with --online and catch up with `palace-pg sync`",
            changed=[c[0] for c in changed],
        )
    snap.files = [entries[rel] for rel, _ in source_files(palace, kg_path) if rel in entries]
    snap.passes = passes
    snap.palace.mkdir(parents=True, exist_ok=True)
    if kg_path is not None:
        snap.kg_path = (snap.palace / Path(kg_path).resolve().relative_to(palace.resolve())) if _is_inside(kg_path, palace) \
            else root / "kg" / Path(kg_path).name
        if not snap.kg_path.is_file():
            snap.kg_path = None
    (root / "manifest.json").write_text(json.dumps(snap.manifest(), indent=1))
    log.info("snapshot of %s: %d files, %.1f MB, fingerprint %s", palace, len(snap.files),
             snap.total_bytes / 1e6, snap.fingerprint[:16])
    return snap
