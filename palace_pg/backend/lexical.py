"""BM25 lexical search in one SQL statement, shaped like Chroma's.

Chroma (mempalace/backends/chroma.py) finds candidates in its FTS5 index (OR
of the query tokens of 3+ characters, best 500 first, all of them when a
filter is given) and scores them with Okapi BM25 (k1 1.5, b 0.75) whose IDF
and average length come from the candidate window, over MemPalace's
tokenizer ``\\w{2,}`` lower-cased.  This does the same in PostgreSQL:

* candidates through the GIN index on ``to_tsvector('simple', document)``:
  each query token as a prefix lexeme (Chroma's trigram index also finds
  words that only contain a token; only whole-word hits score, so those
  never survive either), the metadata filter in the same WHERE;
* the window is the ``lexical_window`` candidates ranked by ``ts_rank``;
  ranking reads at most ``_PREWINDOW`` matches (a stored tsvector column
  would lift that cap);
* BM25 over the window, tokenised with the same ``\\w{2,}`` in SQL.

With no token of 3+ characters, Chroma scores its most recent 500 rows;
this scores the 500 highest ``seq``.  Only hits with a positive score return.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from ..target_db.schema import qualified
from .filters import Predicate

TOKEN_RE = re.compile(r"\w{2,}", re.UNICODE)
K1 = 1.5
B = 0.75
_PREWINDOW = 5000
_MAX_TERMS = 64


def query_terms(query: str) -> list[str]:
    seen: dict[str, None] = {}
    for token in TOKEN_RE.findall((query or "").lower()):
        seen.setdefault(token)
    return list(seen)[:_MAX_TERMS]


def tsquery_text(terms: list[str]) -> str:
    """An OR of prefix lexemes for to_tsquery('simple', …); '' when no term has 3+ characters.

    Tokens are \\w+ only (no quotes or operators); an underscore splits a
    token into a phrase, as PostgreSQL's parser splits the document.
    """
    alternatives = []
    for term in terms:
        if len(term) < 3:
            continue
        parts = [p for p in term.split("_") if p]
        if not parts:
            continue
        lexemes = [f"'{p}'" for p in parts]
        lexemes[-1] += ":*"
        alternatives.append(" <-> ".join(lexemes) if len(lexemes) > 1 else lexemes[0])
    return " | ".join(alternatives)


def search(conn: psycopg.Connection, table: str, query: str, n_results: int, pred: Predicate,
           window: int) -> list[tuple]:
    """Rows ``(id, document, metadata, score)``, best first."""
    terms = query_terms(query)
    if not terms or n_results <= 0:
        return []
    tsq = tsquery_text(terms)
    window = max(window, n_results)
    t = qualified(table)
    tsv = sql.SQL("to_tsvector('simple', coalesce(document, ''))")
    if tsq:
        candidates = sql.SQL(
            "SELECT id, document, metadata, seq FROM ("
            "  SELECT id, document, metadata, seq FROM {t} WHERE {tsv} @@ to_tsquery('simple', %s) AND ({f}) LIMIT %s"
            ") pre ORDER BY ts_rank({tsv}, to_tsquery('simple', %s)) DESC, seq LIMIT %s"
        ).format(t=t, tsv=tsv, f=pred.sql)
        params = [tsq, *pred.params, _PREWINDOW, tsq, window]
    else:
        candidates = sql.SQL("SELECT id, document, metadata, seq FROM {t} WHERE {f} ORDER BY seq DESC LIMIT %s").format(
            t=t, f=pred.sql)
        params = [*pred.params, window]
    stmt = sql.SQL(
        "WITH cand AS MATERIALIZED ({candidates}), "
        "toks AS (SELECT c.id, m[1] AS tok FROM cand c "
        "         CROSS JOIN LATERAL regexp_matches(lower(coalesce(c.document, '')), '\\w{{2,}}', 'g') AS m), "
        "dl AS (SELECT c.id, count(x.tok)::float8 AS len FROM cand c LEFT JOIN toks x ON x.id = c.id GROUP BY c.id), "
        "tf AS (SELECT id, tok, count(*)::float8 AS f FROM toks WHERE tok = ANY(%s) GROUP BY id, tok), "
        "df AS (SELECT tok, count(*)::float8 AS n FROM tf GROUP BY tok), "
        "corpus AS (SELECT count(*)::float8 AS docs, avg(len) AS avgdl FROM dl), "
        "scored AS ("
        "  SELECT tf.id, sum(ln((corpus.docs - df.n + 0.5) / (df.n + 0.5) + 1.0) * tf.f * (%s + 1.0)"
        "         / (tf.f + %s * (1.0 - %s + %s * dl.len / greatest(corpus.avgdl, 1e-9)))) AS score"
        "  FROM tf JOIN df USING (tok) JOIN dl USING (id) CROSS JOIN corpus GROUP BY tf.id) "
        "SELECT c.id, c.document, c.metadata, s.score FROM scored s JOIN cand c USING (id) "
        "WHERE s.score > 0 ORDER BY s.score DESC, c.seq LIMIT %s"
    ).format(candidates=candidates)
    return conn.execute(stmt, [*params, terms, K1, K1, B, B, n_results]).fetchall()
