"""Hostile strings: quotes, dollar quotes, Cypher and SQL fragments, placeholders, control characters.

Used as KG names, types, properties and predicates and as drawer ids, documents
and metadata; each must round-trip exactly and never change the graph's shape
(tests/test_kg_injection.py, benchmarks/reliability_report.py).
"""

HOSTILE = [
    "it's",
    'say "hi"',
    "$$",
    "a$$b$$c",
    "$cy$ x $cy$",
    "back\\slash",
    "trailing\\",
    "}) DETACH DELETE n //",
    "'}) MATCH (m) DETACH DELETE m //",
    "x'); DROP TABLE mempalace_kg.\"Entity\"; --",
    "%s",
    "%(x)s",
    "100%",
    "$name",
    "::vertex",
    "line\nbreak\r\ttab",
    "\u2028sep",
    "知识图谱",
    "emoji 🧠🏰",
    "\x01ctl",
]
