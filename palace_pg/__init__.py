"""palace_pg: move a MemPalace palace onto one PostgreSQL (pgvector + Apache AGE)."""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
