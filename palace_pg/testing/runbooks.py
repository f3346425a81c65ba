"""Settings the runbook tests and the reliability report share."""

#: A password that must never appear in a notebook, log, result or manifest.
CANARY = "canary-Pw-7f3e9b21"
#: Small measurement settings: the tests check the wiring, the demo run checks the figures.
FAST = {"recall_queries": 15, "latency_queries": 15, "filtered_queries": 4, "kg_queries": 4,
        "ef_search_grid": [10, 40]}
