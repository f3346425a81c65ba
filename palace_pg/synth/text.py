"""The generated text: sentences drawn from a unit's wing and cluster vocabulary, naming its entities and topics."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Sequence

from .units import Cluster, Unit
from .vocab import COMMON, WING_VOCAB


def word_population(unit: Unit, clusters: list[Cluster]) -> list[str]:
    """Words to draw from: common words, the wing's vocabulary, the cluster's keywords (weighted up)."""
    cluster = clusters[unit.cluster]
    return list(COMMON) + list(WING_VOCAB[cluster.wing]) * 3 + list(cluster.keywords) * 6


def prose(rng: random.Random, population: list[str], n_chars: int, lead: Sequence[str] = (), line_every: int = 0) -> str:
    """Sentences of words from ``population``, at most ``n_chars`` long; ``lead`` sentences come first.

    ``line_every`` > 0 puts a newline after every that many sentences (mined files have lines).
    """
    words = rng.choices(population, k=n_chars // 5 + 16)
    sentences = list(lead)
    length = sum(len(s) + 1 for s in sentences)
    position = 0
    while length < n_chars and position < len(words):
        count = rng.randint(6, 14)
        sentence = " ".join(words[position : position + count]).capitalize() + "."
        position += count
        sentences.append(sentence)
        length += len(sentence) + 1
    if line_every:
        lines = [" ".join(sentences[i : i + line_every]) for i in range(0, len(sentences), line_every)]
        text = "\n".join(lines)
    else:
        text = " ".join(sentences)
    if len(text) > n_chars:
        text = text[:n_chars].rsplit(" ", 1)[0]
    return text


def lead_sentences(unit: Unit, rng: random.Random) -> list[str]:
    """Sentences that name the unit's entities and topics, so metadata and closets match the text."""
    lead = [f"{topic.capitalize()}." for topic in unit.topics[:2]]
    for name in unit.entities:
        lead.append(f"{name} {rng.choice(('reviewed', 'suggested', 'owns', 'asked about'))} this.")
        lead.append(f"Thanks to {name} for the notes.")  # entities appear at least twice, as extraction needs
    return lead


def unit_content_date(unit: Unit) -> str:
    return (unit.start - timedelta(days=unit.extra["content_days_before"])).date().isoformat()


def chunk_lengths(size: int, doc_chars: int, rng: random.Random) -> list[int]:
    """Chunk lengths of a mined file: full chunks near ``doc_chars``, a shorter tail."""
    lengths = [int(doc_chars * rng.uniform(0.85, 1.0)) for _ in range(size)]
    lengths[-1] = max(60, int(doc_chars * rng.uniform(0.2, 0.95)))
    return lengths


