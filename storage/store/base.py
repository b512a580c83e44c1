"""Connection handling shared by every part of the campaign store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Float, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from llmco2.defaults import DEFAULT_DATABASE_URL
from llmco2.errors import DatabaseError
from storage.database import ensure_schema, make_engine, mask_url, parse_url, translate_errors
from storage.models import Base, Point
from storage.records import StoredPoint


class server_epoch(FunctionElement[float]):  # noqa: N801 (reads like the SQL function it is)
    """Seconds since the epoch on the database server's clock."""

    type = Float()
    inherit_cache = True


@compiles(server_epoch, "sqlite")
def _epoch_sqlite(_element: server_epoch, _compiler: Any, **_kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(server_epoch, "postgresql")
def _epoch_postgresql(_element: server_epoch, _compiler: Any, **_kw: Any) -> str:
    return "extract(epoch from clock_timestamp())"


#: The ``points`` columns a :class:`StoredPoint` holds, in its field order.
POINT_COLUMNS = tuple(StoredPoint.__dataclass_fields__)


def point_columns() -> list[Any]:
    """The ``points`` columns of :data:`POINT_COLUMNS`, for a SELECT or RETURNING."""
    return [getattr(Point, name) for name in POINT_COLUMNS]


def stored_point(row: Any) -> StoredPoint:
    """A :class:`StoredPoint` from a row selected with :func:`point_columns` first."""
    return StoredPoint(**{name: getattr(row, name) for name in POINT_COLUMNS})


class StoreBase:
    """The database a store talks to, and the one way each method opens a transaction.

    Args:
        url: SQLAlchemy URL (``sqlite:///llmco2.db`` by default).
        create: Create the schema in a database that has none of llmco2's tables.
    """

    def __init__(self, url: str | URL = DEFAULT_DATABASE_URL, *, create: bool = True) -> None:
        self._url: URL = parse_url(url) if isinstance(url, str) else url
        self._create = create
        self._engine: Engine | None = None

    @property
    def url(self) -> str:
        """The database URL with its password masked (for display)."""
        return mask_url(self._url)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, created and schema-checked on first use."""
        if self._engine is None:
            database = self._url.database
            if (
                not self._create
                and self.dialect == "sqlite"
                and database
                and database != ":memory:"
                and not Path(database).expanduser().exists()
            ):
                # A reader must not leave an empty file behind where the user mistyped a path.
                raise DatabaseError(f"database file {database!r} does not exist ({self.url})")
            engine = make_engine(self._url)
            try:
                ensure_schema(engine, create=self._create)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
        return self._engine

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._url.get_backend_name()

    def close(self) -> None:
        """Release the engine's connections (the store stays usable and reconnects)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __getstate__(self) -> dict[str, Any]:
        # Engines hold sockets and locks: a pickled store carries its URL and rebuilds.
        return {"url": self._url.render_as_string(hide_password=False), "create": self._create}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], create=state["create"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One read-write transaction (SQLite: ``BEGIN IMMEDIATE``), database errors translated.

        It commits when the block ends and rolls back when the block raises.
        """
        with translate_errors(self._url), self.engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def _reading(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A connection for reads, database errors translated.

        Args:
            snapshot: Read one consistent snapshot without taking SQLite's write lock, so that
                writers go on during a long read (an export).
        """
        with translate_errors(self._url), self.engine.connect() as connection:
            yield connection.execution_options(sqlite_immediate=False) if snapshot else connection

    def _insert(self, table: type[Base] | Table) -> Any:
        """The dialect's INSERT (it has ``on_conflict_do_nothing``) for ``table``."""
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return dialect_insert(table)

    def server_time(self) -> float:
        """Seconds since the epoch on the database server's clock."""
        with self._reading() as conn:
            return float(conn.execute(select(server_epoch())).scalar_one())
