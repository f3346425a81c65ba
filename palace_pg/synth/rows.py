"""Drawer rows: the exact ids and metadata each MemPalace writer gives them (miners, MCP, diary, sweeper,
and the tricky rows of :data:`~palace_pg.synth.spec.TRICKY_ROWS`).
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any

from .spec import STREAM_TEXT, inode_for, iso, sha, sub_seed
from .text import (
    chunk_lengths,
    lead_sentences,
    prose,
    unit_content_date,
    word_population,
)
from .units import Cluster, Unit, uuid
from .vocab import DATE_SOURCES, GENERAL_MEMORY_TYPES, HALL_WEIGHTS, HALLS


@dataclass(slots=True)
class Row:
    id: str
    document: str
    metadata: dict
    cluster: int
    unit: int
    probe: bool = False


class RowWriter:
    """Turns planned units into drawer rows, exactly as each MemPalace writer shapes them."""

    def __init__(self, seed: int, clusters: list[Cluster], doc_chars: int, long_doc_chars: int) -> None:
        from mempalace.ids import ID_RECIPE
        from mempalace.palace import CONVO_CHUNKER_VERSION, NORMALIZE_VERSION

        self.seed = seed
        self.clusters = clusters
        self.doc_chars = doc_chars
        self.long_doc_chars = long_doc_chars
        self.normalize_version = NORMALIZE_VERSION
        self.chunker_version = CONVO_CHUNKER_VERSION
        self.id_recipe = ID_RECIPE

    def rows(self, unit: Unit) -> list[Row]:
        rng = random.Random(sub_seed(self.seed, STREAM_TEXT, unit.index))
        build = getattr(self, f"_{unit.kind}")
        built = build(unit, rng)
        return [Row(i, d, m, unit.cluster, unit.index, probe=unit.tricky == "vector_probe") for i, d, m in built]

    # ── shared pieces

    def _filed(self, unit: Unit, k: int) -> str:
        return iso(unit.start + timedelta(microseconds=137 * k))

    def _hall(self, rng: random.Random) -> str:
        return rng.choices(HALLS, weights=HALL_WEIGHTS)[0]

    def _mtime(self, unit: Unit, rng: random.Random) -> float:
        return round(unit.start.replace(tzinfo=timezone.utc).timestamp() - rng.uniform(60, 86_400 * 30), 6)

    # ── project miner (miner._build_drawer_metadata)

    def _project_chunk(self, unit: Unit, rng: random.Random):
        from mempalace.ids import make_drawer_id_from_chunk

        population = word_population(unit, self.clusters)
        mtime = self._mtime(unit, rng)
        content_date = unit_content_date(unit)
        date_source = rng.choice(DATE_SOURCES)
        has_inode = rng.random() > 0.08
        entities = ";".join(unit.entities)
        line = 1
        out = []
        for index, length in enumerate(chunk_lengths(unit.size, self.doc_chars, rng)):
            lead = lead_sentences(unit, rng) if index == 0 else ()
            text = prose(rng, population, length, lead, line_every=rng.randint(1, 2))
            lines = text.count("\n") + 1
            meta: dict[str, Any] = {
                "wing": unit.wing,
                "room": unit.room,
                "source_file": unit.source_file,
                "chunk_index": index,
                "added_by": unit.agent,
                "filed_at": self._filed(unit, index),
                "normalize_version": self.normalize_version,
                "id_recipe": self.id_recipe,
                "source_mtime": mtime,
            }
            if not unit.legacy:
                meta |= {"line_start": line, "line_end": line + lines - 1}
                meta |= {"content_date": content_date, "content_date_source": date_source}
            meta["chunk_total"] = unit.size
            if has_inode:
                meta["source_dir_ino"] = inode_for(os.path.dirname(unit.source_file))
            meta["hall"] = self._hall(rng)
            if entities:
                meta["entities"] = entities
            line += lines
            out.append((make_drawer_id_from_chunk(unit.wing, unit.room, unit.source_file, index), text, meta))
        return out

    # ── format miner sentinel (format_miner._register_file)

    def _format_sentinel(self, unit: Unit, rng: random.Random):
        meta = {
            "wing": unit.wing,
            "room": "documents",
            "source_file": unit.source_file,
            "chunk_index": -1,
            "added_by": unit.agent,
            "filed_at": self._filed(unit, 0),
            "ingest_mode": "extract",
            "extract_mode": "format",
            "normalize_version": self.normalize_version,
            "is_sentinel": True,
            "source_dir_ino": inode_for(os.path.dirname(unit.source_file)),
        }
        return [(f"sentinel_{unit.wing}_{sha(unit.source_file, 24)}", "[empty]", meta)]

    # ── convo miner (convo_miner.mine_convos, _register_file)

    def _transcript(self, unit: Unit, rng: random.Random) -> list[str]:
        population = word_population(unit, self.clusters)
        turns = []
        for index, length in enumerate(chunk_lengths(unit.size, self.doc_chars, rng)):
            question = prose(rng, population, rng.randint(40, 140)).rstrip(".") + "?"
            answer = prose(rng, population, max(30, length - len(question) - 4), lead_sentences(unit, rng) if index == 0 else ())
            turns.append(f"> {question}\n{answer}")
        return turns

    def _convo(self, unit: Unit, rng: random.Random, extract_mode: str):
        from mempalace.ids import make_convo_drawer_id

        mtime = self._mtime(unit, rng)
        authored_at = iso(unit.start - timedelta(hours=rng.randint(1, 72)))
        inode = inode_for(os.path.dirname(unit.source_file))
        content_hash = hashlib.sha256(f"transcript {unit.index}".encode()).hexdigest()
        filed_at = self._filed(unit, 0)  # one stamp per transcript, as mine_convos takes it once
        out = []
        for index, text in enumerate(self._transcript(unit, rng)):
            room = rng.choice(GENERAL_MEMORY_TYPES) if extract_mode == "general" else unit.room
            meta: dict[str, Any] = {
                "wing": unit.wing,
                "room": room,
                "hall": "emotions" if room == "emotional" else self._hall(rng),
                "source_file": unit.source_file,
                "chunk_index": index,
                "added_by": unit.agent,
                "filed_at": filed_at,
                "entities": ";".join(unit.entities),
                "authored_at": authored_at,
                "ingest_mode": "convos",
                "extract_mode": extract_mode,
                "normalize_version": self.normalize_version,
                "id_recipe": self.id_recipe,
                "chunk_total": unit.size,
            }
            if extract_mode == "exchange":
                meta["convo_chunker_version"] = self.chunker_version
            meta["source_mtime"] = mtime
            meta["source_dir_ino"] = inode
            if index == 0:
                meta["content_hash"] = content_hash
            out.append((make_convo_drawer_id(unit.wing, room, unit.source_file, extract_mode, index), text, meta))
        return out

    def _convo_exchange(self, unit: Unit, rng: random.Random):
        return self._convo(unit, rng, "exchange")

    def _convo_general(self, unit: Unit, rng: random.Random):
        return self._convo(unit, rng, "general")

    def _registry_sentinel(self, unit: Unit, rng: random.Random):
        from mempalace.ids import make_convo_sentinel_id

        extract_mode = unit.extra["extract_mode"]
        meta: dict[str, Any] = {
            "wing": unit.wing,
            "room": "_registry",
            "source_file": unit.source_file,
            "added_by": unit.agent,
            "filed_at": self._filed(unit, 0),
            "ingest_mode": "registry",
            "extract_mode": extract_mode,
            "normalize_version": self.normalize_version,
            "id_recipe": self.id_recipe,
        }
        if extract_mode == "exchange":
            meta["convo_chunker_version"] = self.chunker_version
        meta["source_mtime"] = self._mtime(unit, rng)
        if rng.random() < 0.5:  # a content-duplicate of an already-mined transcript
            meta["content_hash"] = hashlib.sha256(f"duplicate {unit.index}".encode()).hexdigest()
        sentinel_id = make_convo_sentinel_id(unit.source_file, extract_mode)
        return [(sentinel_id, f"[registry] {unit.source_file}", meta)]

    # ── live exchange (convo_miner.file_conversation_exchange), also the tricky rows

    def _live_exchange(self, unit: Unit, rng: random.Random, text: str | None = None, extra: dict | None = None):
        from mempalace.ids import make_exchange_drawer_id

        if text is None:
            population = word_population(unit, self.clusters)
            question = prose(rng, population, rng.randint(40, 120)).rstrip(".") + "?"
            text = f"> {question}\n{prose(rng, population, rng.randint(150, 500), lead_sentences(unit, rng))}"
        filed_at = self._filed(unit, 0)
        meta: dict[str, Any] = {
            "wing": unit.wing,
            "room": unit.room,
            "hall": self._hall(rng),
            "source_file": unit.source_file,
            "chunk_index": 0,
            "added_by": unit.agent,
            "filed_at": filed_at,
            "entities": ";".join(unit.entities),
            "authored_at": filed_at,
            "ingest_mode": "convos",
            "extract_mode": "exchange",
            "normalize_version": self.normalize_version,
            "convo_chunker_version": self.chunker_version,
            "id_recipe": self.id_recipe,
            "source_dir_ino": inode_for(os.path.dirname(unit.source_file)),
        }
        for key, value in (extra or {}).items():
            meta.setdefault(key, value)
        return [(make_exchange_drawer_id(unit.wing, unit.room, unit.source_file, filed_at, text), text, meta)]

    # ── MCP add_drawer (mcp_server/tools_write.tool_add_drawer)

    def _mcp_meta(self, unit: Unit) -> dict:
        meta: dict[str, Any] = {
            "wing": unit.wing,
            "room": unit.room,
            "source_file": unit.source_file,
            "added_by": unit.agent,
            "filed_at": self._filed(unit, 0),
            "id_recipe": self.id_recipe,
        }
        if unit.source_file:
            meta["source_dir_ino"] = inode_for(os.path.dirname(unit.source_file))
        meta["last_modified"] = meta["filed_at"]
        return meta

    def _mcp_drawer(self, unit: Unit, rng: random.Random, content: str | None = None):
        from mempalace.ids import make_drawer_id_from_content

        if content is None:
            population = word_population(unit, self.clusters)
            content = prose(rng, population, rng.randint(80, self.doc_chars), lead_sentences(unit, rng))
        meta = self._mcp_meta(unit) | {"chunk_index": 0}
        return [(make_drawer_id_from_content(unit.wing, unit.room, content), content, meta)]

    def _long_content(self, unit: Unit, rng: random.Random, length: int) -> str:
        """Exactly ``length`` characters (the writers split by character count, mid-word included)."""
        text = prose(rng, word_population(unit, self.clusters), length + 400, lead_sentences(unit, rng))
        while len(text) < length:
            text += " " + text
        return text[:length]

    def _mcp_chunked(self, unit: Unit, rng: random.Random):
        from mempalace.ids import make_drawer_id_from_content

        chunk = self.doc_chars
        content = self._long_content(unit, rng, (unit.size - 1) * chunk + rng.randint(1, chunk))
        drawer_id = make_drawer_id_from_content(unit.wing, unit.room, content)
        base = self._mcp_meta(unit)
        return [
            (f"{drawer_id}_chunk_{i // chunk:06d}", content[i : i + chunk], {**base, "chunk_index": i // chunk, "parent_drawer_id": drawer_id})
            for i in range(0, len(content), chunk)
        ]

    # ── MCP diary (mcp_server/tools_diary.tool_diary_write): no source_file

    def _diary_entry(self, unit: Unit, rng: random.Random, length: int) -> tuple[str, str, dict]:
        entry = self._long_content(unit, rng, length)
        moment = unit.start
        entry_id = f"diary_{unit.wing}_{moment.strftime('%Y%m%d_%H%M%S%f')}_{hashlib.sha256(entry.encode()).hexdigest()[:12]}"
        base = {
            "wing": unit.wing,
            "room": "diary",
            "hall": "hall_diary",
            "topic": unit.extra["topic"],
            "type": "diary_entry",
            "agent": unit.agent,
            "filed_at": iso(moment),
            "date": moment.strftime("%Y-%m-%d"),
        }
        return entry_id, entry, base

    def _diary(self, unit: Unit, rng: random.Random):
        entry_id, entry, base = self._diary_entry(unit, rng, rng.randint(60, self.doc_chars))
        return [(entry_id, entry, {**base, "chunk_index": 0})]

    def _diary_chunked(self, unit: Unit, rng: random.Random):
        chunk = self.doc_chars
        entry_id, entry, base = self._diary_entry(unit, rng, (unit.size - 1) * chunk + rng.randint(1, chunk))
        return [
            (
                f"{entry_id}_chunk_{i // chunk:06d}",
                entry[i : i + chunk],
                {**base, "chunk_index": i // chunk, "parent_entry_id": entry_id, "parent_drawer_id": entry_id},
            )
            for i in range(0, len(entry), chunk)
        ]

    # ── sweeper (sweeper.py): no wing, room, hall or chunk_index

    def _sweep(self, unit: Unit, rng: random.Random):
        population = word_population(unit, self.clusters)
        session = unit.extra["session_id"]
        inode = inode_for(os.path.dirname(unit.source_file))
        out = []
        for k in range(unit.size):
            role = "user" if k % 2 == 0 else "assistant"
            message_uuid = uuid(rng)
            moment = unit.start + timedelta(seconds=7 * k, milliseconds=rng.randint(0, 999))
            meta = {
                "session_id": session,
                "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
                "message_uuid": message_uuid,
                "role": role,
                "source_file": unit.source_file,
                "filed_at": self._filed(unit, k),
                "ingest_mode": "sweep",
                "source_dir_ino": inode,
            }
            text = f"{role.upper()}: {prose(rng, population, rng.randint(40, 600))}"
            out.append((f"sweep_{session}_{message_uuid}", text, meta))
        return out

    # ── tricky rows

    def _tricky(self, unit: Unit, rng: random.Random):
        name = unit.tricky
        extras: dict[str, dict] = {
            "priority_int": {"priority": 1},
            "priority_float": {"priority": 1.0},
            "priority_bool": {"priority": True},
            "int64_max": {"counter": 2**63 - 1},
            "int64_min": {"counter": -(2**63), "counter_neg": -(2**63 - 1)},
            "odd_key": {'label "quoted" $$dollar$$': 'it\'s "quoted" and costs $$'},
            "float_extremes": {"tiny": 5e-324, "neg_tiny": -5e-324, "huge": 1.7976931348623157e308},
            "unicode": {"topic": "launch 🚀\u2028retro 🎉\u2029done"},
            "vector_probe": {"probe": "subnormal and signed zeros in the vector"},
        }
        if name == "long_document":
            return self._mcp_drawer(unit, rng, self._long_content(unit, rng, self.long_doc_chars))
        if name == "empty_strings":
            return self._live_exchange(unit, rng, extra={"note": ""})
        text = None
        if name == "unicode":
            text = "> Did the launch go well? 🚀\nYes 🎉 — first line\u2028second line after LS\u2029new paragraph, Zoë ✓ 日本語."
        return self._live_exchange(unit, rng, text=text, extra=extras[name])


