"""`palace-pg make-palace`: a generated palace for demos and tests."""

from __future__ import annotations

import sys

from .present import print_json


def cmd_make_palace(args) -> int:
    from tqdm.auto import tqdm

    from ..synth import make_palace

    bar = tqdm(total=args.drawers, desc="drawers", unit="row", file=sys.stderr)

    def progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        facts = make_palace(args.out, drawers=args.drawers, seed=args.seed, progress=progress,
                            kg_entities=args.kg_entities, kg_triples=args.kg_triples, assets=not args.no_assets,
                            vectors=args.vectors, scratch=None if args.scratch == "none" else args.scratch)
    finally:
        bar.close()
    print_json(facts)
    return 0


def register(sub) -> None:
    mk = sub.add_parser("make-palace", help="write a deterministic MemPalace palace for demos and tests")
    mk.add_argument("out", help="a new folder for the palace; hallways.json and tunnels.json go beside it, "
                    "so give it its own parent (e.g. /tmp/demo/palace)")
    mk.add_argument("--drawers", type=int, default=1000, help="drawers to write (closets and assets follow)")
    mk.add_argument("--seed", type=int, default=0, help="the same seed writes the same palace")
    mk.add_argument("--kg-entities", type=int, default=None, help="default drawers/8, at most 20,000")
    mk.add_argument("--kg-triples", type=int, default=None, help="default drawers*0.625, at most 100,000")
    mk.add_argument("--no-assets", action="store_true", help="no mempalace_assets collection")
    mk.add_argument("--vectors", choices=["auto", "minilm", "synthetic"], default="auto",
                    help="real MiniLM embeddings when the model is installed (auto), or clustered synthetic ones")
    mk.add_argument("--scratch", default="auto",
                    help="where to build before copying into OUT: auto (/dev/shm when it has room), a folder, "
                         "or 'none' to build in place")
    mk.set_defaults(func=cmd_make_palace)
