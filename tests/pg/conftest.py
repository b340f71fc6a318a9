"""The throwaway PostgreSQL 15 server of ``tests/pg.py`` (one per session, a database per test) for tests/pg."""

from tests.pg import pg_cluster, pg_dsn  # noqa: F401  (fixtures)
