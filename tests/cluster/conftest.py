"""The throwaway PostgreSQL 15 server of ``tests/pg.py`` for every cluster test."""

from tests.pg import pg_cluster, pg_dsn  # noqa: F401  (fixtures)
