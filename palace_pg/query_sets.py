"""Query vectors that look like real searches, for every place recall is measured.

A stored drawer vector (even nudged) sits inside its cluster, where any index
finds its neighbours: recall on such queries says little about what a user's
question gets.  Two kinds of query replace it, each labelled with its kind:

* ``text``: held-out question strings (never stored documents) embedded with
  the real all-MiniLM-L6-v2, for palaces whose vectors are MiniLM's (checked
  by re-embedding a few stored documents: a palace of synthetic vectors gets
  no text queries, whatever its sidecar says);
* ``mixture``: off-distribution vectors, each a random convex mix of stored
  vectors from different parts of the palace plus isotropic noise: they fall
  between clusters, the hard case for a graph index.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

TEXT = "text"
MIXTURE = "mixture"

#: Questions of the kind a MemPalace user asks its MCP server; none of them is a stored document.
QUESTIONS = (
    "what did we decide about the database migration",
    "where are the knowledge graph triples stored",
    "how do I rotate the api tokens",
    "why was the deploy rolled back last week",
    "which tests are flaky in the ci pipeline",
    "what is the plan for the mobile offline sync",
    "notes from the meeting about pricing",
    "how does the search rank results",
    "who owns the payments service",
    "what went wrong during the outage",
    "how to configure the kubernetes cluster autoscaler",
    "ideas for the weekend trip",
    "what recipe did I want to try",
    "summary of the paper on retrieval augmented generation",
    "how do we handle rate limiting on the gateway",
    "which embedding model does the palace use",
    "what are the steps to restore a backup",
    "open questions about the data warehouse schema",
    "how did the experiment baseline compare",
    "what did the reviewer say about the proof",
    "remind me about the dentist appointment",
    "how is the frontend bundle split",
    "what changed in the latest release",
    "how do I add a new wing to the palace",
    "why is the query slow with a filter",
    "what is the onboarding checklist for new engineers",
    "how does the cache invalidation work",
    "which vendor contract expires soon",
    "what were the results of the load test",
    "what books am I reading right now",
    "how to fix the crash on android startup",
    "how did we set up monitoring alerts",
    "what does the glossary say about closets",
    "why did we choose postgres over chroma",
    "how should the tokenizer handle long documents",
    "where is the runbook for the pager rotation",
    "what feedback did users give about the app",
    "how do we partition the events table",
    "what is the budget for next quarter",
    "how to write a good changelog entry",
    "what did I learn from the morning walks",
    "which endpoints need pagination",
    "how does the hybrid bm25 re-rank work",
    "what is the timeline for the research project",
    "how are secrets kept out of the logs",
    "what is the gradient clipping value we used",
    "how do I migrate the palace to a new machine",
    "what was the root cause of the memory leak",
)


@dataclass
class QuerySet:
    kind: str  # TEXT or MIXTURE
    vectors: np.ndarray  # float32, L2-normalised

    @property
    def label(self) -> str:
        return {TEXT: "held-out questions, real MiniLM", MIXTURE: "off-distribution mixtures + noise"}[self.kind]


def mixtures(sample: np.ndarray, n: int, rng: np.random.Generator, *, parts: int = 3,
             noise: float = 0.5) -> QuerySet:
    """``n`` mixes of ``parts`` random rows of ``sample`` (Dirichlet weights) plus isotropic noise.

    ``noise`` is the noise vector's length relative to the (unit) mix: 0.5
    puts a query ~27° off the plane of its parts, away from every cluster.
    """
    sample = np.asarray(sample, dtype=np.float32)
    sample = sample / np.maximum(np.linalg.norm(sample, axis=1, keepdims=True), 1e-12)
    picks = rng.integers(0, len(sample), size=(n, parts))
    weights = rng.dirichlet(np.ones(parts), size=n).astype(np.float32)
    mixed = np.einsum("np,npd->nd", weights, sample[picks])
    mixed /= np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)
    jitter = rng.standard_normal(mixed.shape).astype(np.float32)
    jitter *= noise / np.linalg.norm(jitter, axis=1, keepdims=True)
    out = mixed + jitter
    return QuerySet(MIXTURE, (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32))


def minilm_function():
    """MemPalace's MiniLM function when the model is complete offline, else None (never downloads)."""
    from .source import minilm

    if not minilm.model_available():
        return None
    try:
        return minilm.embedding_function()
    except Exception as exc:  # noqa: BLE001 - no MiniLM means no text queries, not a failed measurement
        log.info("MiniLM unavailable (%s): no text queries", exc)
        return None


def vectors_are_minilm(documents: Sequence[str], vectors: np.ndarray, function=None) -> bool:
    """True when re-embedding stored documents gives their stored vectors (cosine ≥ 0.99)."""
    from .source import minilm

    function = function or minilm_function()
    pairs = [(d, v) for d, v in zip(documents, vectors) if d]
    if function is None or not pairs:
        return False
    got = minilm.embed([d for d, _ in pairs], function)
    want = np.stack([np.asarray(v, dtype=np.float32) for _, v in pairs])
    cos = (got * want).sum(axis=1) / np.maximum(np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1), 1e-12)
    return bool(np.all(cos >= 0.99))


def text_queries(n: int | None = None, function=None) -> QuerySet | None:
    """The held-out questions (the first ``n``) embedded with MiniLM; None when the model is missing."""
    from .source import minilm

    function = function or minilm_function()
    if function is None:
        return None
    questions = list(QUESTIONS[: n or len(QUESTIONS)])
    return QuerySet(TEXT, minilm.embed(questions, function))


def for_palace(documents: Sequence[str], vectors: np.ndarray, n: int, seed: int,
               *, sample: np.ndarray | None = None) -> list[QuerySet]:
    """The query sets a palace's recall is measured on: text (if its vectors are MiniLM's), then mixtures.

    ``documents``/``vectors``: a few stored rows to test for MiniLM; ``sample``:
    stored vectors to mix (default ``vectors``).
    """
    rng = np.random.default_rng(seed)
    sets = []
    function = minilm_function()
    if function is not None and vectors_are_minilm(documents[:3], vectors[:3], function):
        sets.append(text_queries(min(n, len(QUESTIONS)), function))
    sets.append(mixtures(vectors if sample is None else sample, n, rng))
    return sets
