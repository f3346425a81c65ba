"""Real local text for a palace: Debian man pages, the Python standard library, /usr/share/doc, and the
installed Python packages; each file read as MemPalace's miner would read it, with its wing and room taken
from where it sits in the source tree.

Man pages and gzipped docs are not files the miner reads (it takes ``.txt``,
``.md``, ``.py`` …), so they are turned into the plain text an operator would
mine: the gzip is opened and troff requests are reduced to their words.  The
drawer still names the real file (``source_file``, ``source_mtime``), as a
mined export of it would.  Files whose text repeats one already taken (the
many identical GPL ``copyright`` files) are skipped: a palace of a thousand
copies of one licence is not real text.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import re
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: Files larger than this are left out: one 2 MB changelog would crowd a small palace.
MAX_FILE_BYTES = 400_000


@dataclass(frozen=True)
class SourceFile:
    wing: str
    room: str
    path: Path
    read: Callable[[Path], str]


@dataclass(frozen=True)
class Source:
    """One tree of local text: the wing it becomes, its share of the drawers, and how to list its files."""

    wing: str
    share: float
    list_files: Callable[[], list[SourceFile]]


_FONT = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)")
_ESCAPE = re.compile(r"\\(?:\(..|\[[^\]]*\]|[*n]\(..|[*n].|s[-+]?\d+|[&|^%:])")


def troff_to_text(source: str) -> str:
    """A man page's troff reduced to its words: requests dropped, macro arguments kept, escapes resolved."""
    out = []
    for line in source.splitlines():
        if line.startswith(('.\\"', "'\\\"", '.\\#')):
            continue
        if line.startswith((".", "'")):
            request, _, rest = line[1:].partition(" ")
            if request in ("SH", "SS"):
                out.append("")
                out.append(rest.strip('"').upper() if request == "SH" else rest.strip('"'))
                continue
            if request in ("PP", "LP", "P", "sp", "br", "TP", "IP", "RS", "RE", "nf", "fi"):
                if request in ("PP", "LP", "P", "sp"):
                    out.append("")
                if request == "IP" and rest:
                    out.append(rest.split('"')[1] if rest.startswith('"') and rest.count('"') >= 2 else rest.split(" ")[0])
                continue
            if not rest:
                continue
            line = rest.replace('"', "")
        line = _FONT.sub("", line)
        line = line.replace("\\-", "-").replace("\\e", "\\").replace("\\ ", " ").replace("\\(em", "—")
        out.append(_ESCAPE.sub("", line))
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text)


def _read_plain(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _read_gzip(path: Path) -> str:
    with gzip.open(path, "rb") as handle:
        return handle.read(MAX_FILE_BYTES * 4).decode("utf-8", errors="replace")


def _read_man(path: Path) -> str:
    raw = _read_gzip(path) if path.suffix == ".gz" else _read_plain(path)
    return troff_to_text(raw)


def _small(path: Path) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and 0 < path.stat().st_size <= MAX_FILE_BYTES
    except OSError:
        return False


def man_pages(root: Path = Path("/usr/share/man")) -> list[SourceFile]:
    """English man pages, one room per section (man1, man3, …)."""
    files = []
    for section in sorted(root.glob("man*")):
        for path in sorted(section.iterdir()):
            if _small(path) and not path.name.endswith(".so"):
                files.append(SourceFile("man_pages", section.name, path, _read_man))
    return files


def python_stdlib(root: Path | None = None) -> list[SourceFile]:
    """The standard library's sources; a room per top-level package (``modules`` for top-level files)."""
    root = root or Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[0] in ("site-packages", "dist-packages", "test", "idlelib", "lib2to3") or "tests" in parts:
            continue
        if _small(path):
            files.append(SourceFile("python_stdlib", parts[0] if len(parts) > 1 else "modules", path, _read_plain))
    return files


def python_packages(root: Path | None = None) -> list[SourceFile]:
    """Installed third-party packages' sources and docs; a room per distribution's top-level folder."""
    root = root or Path(sysconfig.get_paths()["purelib"])
    files = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".py", ".md", ".txt", ".rst") or "tests" in path.parts or "test" in path.parts:
            continue
        parts = path.relative_to(root).parts
        if len(parts) < 2 or parts[0].endswith((".dist-info", ".egg-info")) or parts[0].startswith(("_", ".")):
            continue
        if _small(path):
            files.append(SourceFile("python_packages", parts[0].lower(), path, _read_plain))
    return files


def debian_docs(root: Path = Path("/usr/share/doc")) -> list[SourceFile]:
    """Package documentation: a room per kind of file (readme, changelog, news, copyright, examples, other)."""
    files = []
    for path in sorted(root.rglob("*")):
        name = path.name.lower()
        if not _small(path) or path.suffix in (".html", ".png", ".svg", ".js", ".css", ".pdf", ".jpg"):
            continue
        if name.startswith("copyright"):
            room = "copyright"
        elif name.startswith(("changelog", "history")):
            room = "changelog"
        elif name.startswith(("news", "release")):
            room = "news"
        elif name.startswith("readme"):
            room = "readme"
        elif "examples" in path.parts:
            room = "examples"
        elif path.suffix in (".gz", ".txt", ".md", ".rst", "") or name.isupper():
            room = "other"
        else:
            continue
        files.append(SourceFile("debian_docs", room, path, _read_gzip if path.suffix == ".gz" else _read_plain))
    return files


#: The default mix: wing, share of the drawers, lister.
SOURCES = (
    Source("python_stdlib", 0.35, python_stdlib),
    Source("man_pages", 0.30, man_pages),
    Source("debian_docs", 0.20, debian_docs),
    Source("python_packages", 0.15, python_packages),
)


def _looks_textual(text: str) -> bool:
    sample = text[:4000]
    return bool(sample) and sample.count("\ufffd") + sample.count("\x00") < len(sample) / 100


def shuffled(source: Source, seed: int) -> Iterator[tuple[SourceFile, str]]:
    """A source's files in a seeded random order, read, textual, each distinct text once."""
    files = source.list_files()
    random.Random(f"{seed}:{source.wing}").shuffle(files)
    seen: set[str] = set()
    for item in files:
        try:
            text = item.read(item.path)
        except (OSError, EOFError, gzip.BadGzipFile, ValueError):
            continue
        digest = hashlib.sha256(text.strip().encode("utf-8", "surrogatepass")).hexdigest()
        if digest in seen or not _looks_textual(text):
            continue
        seen.add(digest)
        yield item, text


def available(sources=SOURCES) -> dict[str, int]:
    """Files each source would offer on this machine (before reading them)."""
    return {s.wing: len(s.list_files()) for s in sources}


if __name__ == "__main__":  # pragma: no cover - a quick look at what this machine offers
    print(available(), file=sys.stderr)
