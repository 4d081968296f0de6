"""What a hall's store holds, read on the side, the same way for both stores: every
table the migrations made, its rows in primary-key order as {column: value}, read
with sqlite3 from the SQLite file or with psycopg from the PostgreSQL database
(`[store] url`). Values are as each database keeps them: SQLite's 0/1 priority and
JSON text, PostgreSQL's boolean and decoded jsonb. The tests compare a store with
itself (before and after a refused action) or with their own model, never one
store's bytes with the other's.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
from psycopg.rows import dict_row

from kioskd.config import Config
from kioskd.store import store_file

Rows = list[dict[str, Any]]

# The stores' own bookkeeping, not the hall's: SQLite's AUTOINCREMENT counters and
# PostgreSQL's schema version (SQLite keeps it in PRAGMA user_version).
_NOT_THE_HALLS = ("sqlite_sequence", "kioskd_schema")

_PG_TABLES = ("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
              "ORDER BY tablename")
_PG_KEY = ("SELECT a.attname FROM pg_index i JOIN pg_attribute a "
           "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
           "WHERE i.indrelid = %s::regclass AND i.indisprimary "
           "ORDER BY array_position(i.indkey, a.attnum)")


class StoreReader:
    """A side connection to the hall's store, for reading what it holds. SQLite: a
    read-only connection per read (it never holds a snapshot the store waits on);
    PostgreSQL: one autocommit connection, each statement at the latest commit."""

    def __init__(self, config: Config):
        self.url = config.store.url
        self.db = store_file(config.hall.data_dir)
        self._pg: psycopg.Connection | None = None
        self._order: dict[str, str] = {}       # table -> its ORDER BY

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def rows(self, table: str) -> Rows:
        """Every row of `table`, in primary-key order."""
        return self.dump((table,))[table]

    def dump(self, tables: tuple[str, ...] | None = None) -> dict[str, Rows]:
        """Every row of each of `tables` (all the hall's tables when None), by table."""
        if self.url is None:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
            conn.row_factory = sqlite3.Row
            try:
                return self._read(tables, lambda sql, params=(): [
                    dict(r) for r in conn.execute(sql.replace("%s", "?"), params).fetchall()])
            finally:
                conn.close()
        if self._pg is None:
            self._pg = psycopg.connect(self.url, autocommit=True, row_factory=dict_row)
        pg = self._pg
        return self._read(tables, lambda sql, params=(): pg.execute(sql, params).fetchall())

    def _read(self, tables: tuple[str, ...] | None, query) -> dict[str, Rows]:
        if not self._order:
            self._order = self._orders(query)
        return {t: query(f'SELECT * FROM "{t}" ORDER BY {self._order[t]}')
                for t in (tables or tuple(self._order))}

    def _orders(self, query) -> dict[str, str]:
        """Each of the hall's tables and its primary key, read from the schema."""
        if self.url is None:
            names = [r["name"] for r in query(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            keys = {t: [r["name"] for r in sorted(query(f'PRAGMA table_info("{t}")'),
                                                   key=lambda r: r["pk"]) if r["pk"]]
                    for t in names}
        else:
            names = [r["tablename"] for r in query(_PG_TABLES)]
            keys = {t: [r["attname"] for r in query(_PG_KEY, (f'"{t}"',))] for t in names}
        missing = [t for t in names if t not in _NOT_THE_HALLS and not keys[t]]
        assert not missing, f"tables without a primary key to order them by: {missing}"
        return {t: ", ".join(f'"{k}"' for k in keys[t]) for t in names
                if t not in _NOT_THE_HALLS}


def dump(config: Config, tables: tuple[str, ...] | None = None) -> dict[str, Rows]:
    """Every row of the hall's tables (or of `tables`), read once on the side."""
    with StoreReader(config) as reader:
        return reader.dump(tables)
