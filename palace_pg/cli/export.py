"""`palace-pg export`: write the palace a target holds as a MemPalace Chroma palace, verified."""

from __future__ import annotations

from .migration import progress_for
from .present import add_target, print_json


def cmd_export(args) -> int:
    from ..export import export_palace, verify_export
    from ..export.verify import CHROMADB_SAMPLE

    sample = None if args.chromadb_read_back == "all" else CHROMADB_SAMPLE

    with progress_for(args) as lines:
        if args.verify_only:
            result = verify_export(args.dsn, args.to, strict_vectors=args.strict_vectors, progress=lines,
                                   chromadb_sample=sample)
        else:
            result = export_palace(args.dsn, args.to, progress=lines, strict_vectors=args.strict_vectors,
                                   chromadb_sample=sample)
    print_json(result)
    return 0


def register(sub) -> None:
    ex = sub.add_parser("export", help="export the target's palace to a new Chroma palace (read-only on the target)",
                        description="Writes a MemPalace 3.11 palace at --to (collections, KG, small files) from one "
                                    "read-only snapshot of the target, reads it back directly and through chromadb, "
                                    "and compares every row, vector bit and KG column.  Exit 4 on any difference "
                                    "(the palace then stays in TO.partial).")
    add_target(ex)
    ex.add_argument("--to", required=True, help="the new palace folder (must not exist)")
    ex.add_argument("--strict-vectors", action="store_true",
                    help="fail on vectors Chroma still renormalises (a last-bit change; vectors are written as "
                         "pre-images so Chroma returns the database's bits where it can), instead of predicting and "
                         "reporting them")
    ex.add_argument("--chromadb-read-back", choices=("sample", "all"), default="sample",
                    help="through chromadb, compare every id and a spread sample of rows in full (default), or every "
                         "row (~2K rows/s); the direct read-back compares every row and vector bit either way")
    ex.add_argument("--verify-only", action="store_true", help="compare an existing export at --to with the target")
    ex.add_argument("--no-progress", action="store_true")
    ex.set_defaults(func=cmd_export)
