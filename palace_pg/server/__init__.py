"""The embedded PostgreSQL 18.6 + AGE 1.7.0 + pgvector 0.8.6 server."""

from .embedded import EmbeddedServer, default_home

__all__ = ["EmbeddedServer", "default_home"]
