"""`palace-pg make-palace`: a generated palace for demos and tests."""

from __future__ import annotations

import sys
import time

from .present import print_json


class _Bar:
    """One tqdm bar over all rows; its label is the stage being written (drawers, closets, assets, kg)."""

    def __init__(self, stream) -> None:
        self.stream, self.bar = stream, None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=stage, unit="row", unit_scale=False, file=self.stream, dynamic_ncols=True)
        if stage != self.bar.desc:
            self.bar.set_description_str(stage, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Lines:
    """Plain lines for a stderr that is not a terminal (a log, a CI job): no cursor escapes."""

    def __init__(self, stream) -> None:
        self.stream, self.stage, self.decile, self.started = stream, None, 0, time.monotonic()
        self.done = self.total = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.done, self.total = done, total
        decile = done * 10 // total if total else 10
        if stage != self.stage or (decile > self.decile and done < total):
            self.stage, self.decile = stage, decile
            self._line(f"{stage} (rows {done:,}/{total:,})")

    def close(self) -> None:
        if self.stage is not None:
            self._line(f"done (rows {self.done:,}/{self.total:,}) in {time.monotonic() - self.started:.1f} s")

    def _line(self, text: str) -> None:
        print(f"make-palace: {text}", file=self.stream, flush=True)


def _make_text_palace(args, progress):
    """``--text local``: real local text, real MiniLM vectors (the only vectors real text can have)."""
    from ..errors import PalacePgError
    from ..realtext import make_text_palace

    if args.vectors == "synthetic":
        raise PalacePgError("--text local embeds real text with MiniLM: --vectors synthetic does not apply",
                            "drop --vectors or use --vectors minilm")
    return make_text_palace(args.out, drawers=args.drawers, seed=args.seed, progress=progress,
                            embed_budget_s=args.embed_budget)


def cmd_make_palace(args) -> int:
    from ..synth import make_palace

    progress = _Bar(sys.stderr) if sys.stderr.isatty() else _Lines(sys.stderr)
    try:
        if args.text == "local":
            facts = _make_text_palace(args, progress)
        else:
            facts = make_palace(args.out, drawers=args.drawers, seed=args.seed, progress=progress,
                                kg_entities=args.kg_entities, kg_triples=args.kg_triples, assets=not args.no_assets,
                                vectors=args.vectors, scratch=None if args.scratch == "none" else args.scratch)
    finally:
        progress.close()
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
    mk.add_argument("--text", choices=["synthetic", "local"], default="synthetic",
                    help="generated text of every MemPalace writer kind (synthetic), or this machine's own man pages, "
                         "Python standard library, /usr/share/doc and installed packages, mined as MemPalace's miner "
                         "chunks them and embedded with the real MiniLM (local; needs the ONNX model)")
    mk.add_argument("--embed-budget", type=float, default=None, metavar="SECONDS",
                    help="with --text local: stop taking new files once embedding has taken this long")
    mk.set_defaults(func=cmd_make_palace)
