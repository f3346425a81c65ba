"""The generator's vocabulary: words per wing, rooms, halls, agents, entity names and KG predicates.

Kept small: the text only has to look like notes and code talk.
"""

from __future__ import annotations

COMMON = (
    "the a an and or but so then when while after before because if not with without for from "
    "into onto over under about between across through during again more most less least very "
    "we they it this that these those our their its there here now later today tomorrow soon "
    "is was are were be been has have had do did does can could should would will may might must "
    "make made take took keep kept move moved need needed want wanted try tried check checked "
    "note notes idea ideas plan plans step steps change changes issue issues fix fixes test tests "
    "build builds run runs time times day week month part parts way ways case cases point points "
    "small large fast slow new old first last next other same different simple clear open closed "
    "good better best bad worse real actual main whole half each every some many few all both"
).split()

WING_VOCAB: dict[str, tuple[str, ...]] = {
    "atlas_api": tuple("endpoint request response handler router middleware auth token session "
                       "schema payload pagination ratelimit gateway latency retry timeout json".split()),
    "borealis_web": tuple("component render layout stylesheet browser hydration router bundle "
                          "webpack vite accessibility form modal button navbar theme cache".split()),
    "cinder_ml": tuple("model training epoch gradient embedding tokenizer dataset loss optimizer "
                       "checkpoint inference batch tensor feature label accuracy recall".split()),
    "delta_infra": tuple("cluster node kubernetes terraform deploy container image registry "
                         "network firewall volume backup replica failover monitoring alert".split()),
    "ember_mobile": tuple("android ios swift kotlin screen gesture notification offline sync "
                          "battery permission camera widget release store crash".split()),
    "fjord_data": tuple("pipeline warehouse table column partition etl query index join "
                        "parquet stream kafka schema lineage snapshot vacuum".split()),
    "garnet_docs": tuple("guide tutorial chapter section reference glossary example diagram "
                         "changelog readme outline draft review style heading link".split()),
    "harbor_ops": tuple("incident oncall runbook pager outage postmortem escalation ticket "
                        "rotation handoff capacity budget vendor contract audit".split()),
    "iris_research": tuple("paper hypothesis experiment baseline ablation citation survey metric "
                           "benchmark result figure appendix reviewer proof lemma".split()),
    "juniper_notes": tuple("journal reflection habit goal reading garden recipe travel family "
                           "weekend music walk memory gratitude morning".split()),
}

PROJECT_ROOMS = ("backend", "frontend", "docs", "tests", "ops", "design", "planning", "research")
CONVO_ROOMS = ("conversations", "decisions", "planning", "support")
GENERAL_MEMORY_TYPES = ("decision", "preference", "milestone", "problem", "emotional")
HALLS = ("technical", "memory", "identity", "creative", "emotions", "consciousness", "family", "general")
HALL_WEIGHTS = (40, 12, 6, 8, 6, 3, 5, 20)
TOPIC_VERBS = ("built", "fixed", "wrote", "added", "tested", "decided", "migrated", "reviewed",
               "deployed", "configured", "removed", "updated")
AGENTS = ("mempalace", "mempalace", "research-bot", "claude")
DIARY_AGENTS = ("claude", "research-bot", "scribe")
CODE_EXTS = ("py", "md", "ts", "go", "rs", "txt", "sql", "yaml")
DOC_EXTS = ("pdf", "docx", "pptx", "rtf")
DATE_SOURCES = ("filename", "frontmatter", "body", "mtime")

FIRST = ("Ada Alan Grace Linus Barbara Edsger Margaret Ken Dennis Radia Frances Tim Guido Bjarne "
         "Donald Leslie Niklaus John Sophie Karen Hedy Jean Katherine Mary Anita Shafi Whitfield "
         "Tony Robin Fernando Zoë Amara Bao Chiara Dmitri Elif Farid Greta Hiro Ines Jonas Kavya "
         "Luca Mei Nadia Omar Priya Quinn Rafael Sven Tamar Ugo Vera Wen Ximena Yara Zane").split()
LAST = ("Lovelace Turing Hopper Torvalds Liskov Dijkstra Hamilton Thompson Ritchie Perlman Allen "
        "Berners Rossum Stroustrup Knuth Lamport Wirth McCarthy Wilson Jones Lamarr Sammet Johnson "
        "Kenner Borg Goldwasser Diffie Hoare Milner Corbató Okafor Nguyen Rossi Petrov Yilmaz Haddad "
        "Lind Tanaka Moreau Weber Iyer Bianchi Chen Karimi Farouk Shah O'Connor Duarte Nilsson "
        "Cohen Ferri Novak Zhang Ortega Haddon Müller").split()
ADJ = ("Amber Bright Cobalt Distant Eager Fallow Golden Hidden Ivory Jade Keen Lunar Misty Noble "
       "Opal Quiet Rapid Silent Tidal Umber Vivid Wild Young Zesty North South Eastern Western").split()
NOUN = ("Falcon Harbor Lantern Meadow Nimbus Orchard Pillar Quarry Raven Summit Thicket Valley "
        "Willow Beacon Canyon Delta Ember Fjord Glacier Horizon Island Juniper Kestrel Lagoon").split()
ORG_SUFFIX = ("Labs", "Systems", "Collective", "Foundation", "Works", "Studio", "Partners")
PLACE_NOUN = ("Harbor", "Ridge", "Station", "Quarter", "Campus", "Point", "Bay")
CONCEPTS = ("vector search", "temporal graph", "memory palace", "recall parity", "hybrid ranking",
            "closet boost", "entity linking", "schema migration", "write ahead log", "cosine distance",
            "knowledge graph", "incremental sync", "cold start", "rate limiting", "feature flag")
TOOL_PARTS = ("pg", "vector", "graph", "chroma", "age", "onnx", "mini", "lm", "kafka", "redis",
              "tokio", "rust", "py", "node", "lite", "fast", "hnsw", "ivf")
ADAPTERS = ("claude_code", "hermes", "chatgpt_export", "slack_export")

ENTITY_TYPES = ("person", "project", "tool", "concept", "organization", "place")
ENTITY_TYPE_WEIGHTS = (35, 15, 20, 15, 10, 5)
#: (predicate, subject types, object types)
PREDICATES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("works_on", ("person",), ("project",)),
    ("uses", ("person", "project"), ("tool",)),
    ("prefers", ("person",), ("tool", "concept")),
    ("owns", ("person", "organization"), ("project",)),
    ("reviewed", ("person",), ("project", "tool")),
    ("knows", ("person",), ("person",)),
    ("reports_to", ("person",), ("person",)),
    ("member_of", ("person",), ("organization",)),
    ("located_in", ("person", "organization"), ("place",)),
    ("depends_on", ("project",), ("project", "tool")),
    ("embeds_with", ("project",), ("tool",)),
    ("stores_kg_in", ("project",), ("tool",)),
    ("implements", ("tool", "project"), ("concept",)),
    ("maintained_by", ("tool",), ("organization", "person")),
    ("mentions", ("project", "person"), ("concept", "person")),
)


