"""Engines, URLs, schema versions and migrations.

``sqlite:///llmco2.db`` (the default) is an embedded file in WAL mode with a busy timeout, so
several processes on one machine can share it (one writer at a time, the others wait).
``postgresql+psycopg://user:password@host/db`` is for several drivers or a team. Passwords are
masked wherever a URL is shown.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.pool import NullPool

from llmco2.errors import DatabaseError, DatabaseUnreachableError, SchemaVersionError

#: How long a SQLite writer waits for the lock before giving up (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 60_000


#: SQLAlchemy's asyncio drivers: the store runs synchronous transactions.
_ASYNC_DRIVERS = frozenset(
    {"postgresql+asyncpg", "postgresql+psycopg_async", "sqlite+aiosqlite", "sqlite+pysqlite_async"}
)


def parse_url(url: str) -> URL:
    """Parse a SQLAlchemy URL, accepting ``postgresql://`` as psycopg 3.

    Raises:
        DatabaseError: When the URL is malformed or names an unsupported database.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"invalid database URL {mask_url(url)!r}: {exc}") from exc
    except ValueError:  # SQLAlchemy parses the port with int()
        raise DatabaseError(
            f"invalid database URL {mask_url(url)!r}: the port is not a number"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in _ASYNC_DRIVERS:
        raise DatabaseError(
            f"{parsed.drivername} in {mask_url(url)!r} is an asyncio driver; llmco2 needs a "
            "synchronous one: postgresql+psycopg://... or sqlite:///FILE"
        )
    port = parsed.port
    if port is not None and not 0 < port < 65536:
        raise DatabaseError(f"invalid database URL {mask_url(url)!r}: port {port} out of range")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(
            f"unsupported database {parsed.get_backend_name()!r} in "
            f"{mask_url(url)!r}: use sqlite:///FILE or postgresql+psycopg://..."
        )
    return parsed


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by :data:`llmco2.redact.MASK`.

    A URL SQLAlchemy cannot parse is masked by :func:`llmco2.redact.redact`, the helper every
    recorded command line goes through, so that its message still shows what was given.
    """
    from llmco2.redact import redact

    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except (ArgumentError, ValueError):
        return redact(str(url))
    return parsed.render_as_string(hide_password=True)  # SQLAlchemy masks with "***" too


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite defers BEGIN until the first write, which lets two writers both read and then
    # fail to upgrade their locks; llmco2 emits BEGIN itself (see _sqlite_begin).
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    # Writers take the lock at the start of the transaction (BEGIN IMMEDIATE), so concurrent
    # claims queue on the busy timeout instead of failing; readers (exports) opt out with the
    # execution option sqlite_immediate=False and read a WAL snapshot without blocking writers.
    immediate = connection.get_execution_options().get("sqlite_immediate", True)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url`` with llmco2's settings per back-end.

    Raises:
        DatabaseError: When the URL is invalid or its driver is not installed.
    """
    parsed = parse_url(url) if isinstance(url, str) else url
    try:
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database
            if database and database != ":memory:":
                folder = Path(database).expanduser().resolve().parent
                if not folder.is_dir():
                    raise DatabaseError(
                        f"cannot open database {mask_url(parsed)!r}: folder {str(folder)!r} "
                        "does not exist"
                    )
            # One connection per checkout: SQLite connections are cheap and must not cross
            # processes or threads; the busy timeout serialises writers.
            engine = create_engine(
                parsed,
                poolclass=NullPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            )
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "connect", _sqlite_manual_transactions)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        return create_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=2,
            max_overflow=4,
            connect_args={"connect_timeout": 10},
        )
    except NoSuchModuleError as exc:
        raise DatabaseError(f"no driver for {mask_url(parsed)!r}: {exc}") from exc
    except ImportError as exc:  # the dialect exists, its driver package is not installed
        missing = exc.name or str(exc)
        raise DatabaseUnreachableError(
            f"the driver of {mask_url(parsed)!r} is not installed (no module {missing!r}): "
            f"pip install {missing}, or use postgresql+psycopg://, which llmco2 installs"
        ) from exc


def describe_db_error(exc: BaseException, url: str | URL) -> str:
    """One line saying what went wrong with the database, the password masked."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(original).strip().splitlines()
    reason = text[0] if text else type(original).__name__
    for line in text[1:]:
        if "FATAL" in line or "refused" in line or "password" in line:
            reason = line.strip()
            break
    password = url.password if isinstance(url, URL) else None
    if password:
        reason = reason.replace(str(password), "***")
    return f"database {mask_url(url)!r}: {reason}"


@contextlib.contextmanager
def translate_errors(url: str | URL) -> Iterator[None]:
    """Turn SQLAlchemy errors into one-line :class:`DatabaseError` messages."""
    try:
        yield
    except OperationalError as exc:  # cannot connect, cannot open the file, locked too long
        raise DatabaseUnreachableError(describe_db_error(exc, url)) from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(describe_db_error(exc, url)) from exc


# Schema versions ---------------------------------------------------------------------------


#: llmco2's own Alembic version table: a study of Optuna (which keeps its schema revision in
#: Alembic's default ``alembic_version``) can then live in the same database.
VERSION_TABLE = "llmco2_alembic_version"
_LEGACY_VERSION_TABLE = "alembic_version"


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("storage").joinpath("migrations"))
    )
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def known_revisions() -> list[str]:
    """Every revision of the shipped migrations, oldest first."""
    script = ScriptDirectory.from_config(_alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def _adopt_legacy_version_table(connection: Connection) -> str | None:
    """Move a revision of llmco2's from ``alembic_version`` (databases before 0.2) to ours."""
    if _LEGACY_VERSION_TABLE not in inspect(connection).get_table_names():
        return None
    legacy = MigrationContext.configure(connection).get_current_revision()
    if legacy is None or legacy not in known_revisions():
        return None  # another tool's revision (e.g. Optuna's): not ours to move
    ours = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    ours.stamp(ScriptDirectory.from_config(_alembic_config()), legacy)
    connection.execute(text(f"DROP TABLE {_LEGACY_VERSION_TABLE}"))
    return legacy


#: Key of the PostgreSQL advisory lock that serialises llmco2's schema changes (any 64-bit
#: number no other tool uses: the first 8 bytes of sha256("llmco2 schema")).
SCHEMA_LOCK_KEY = int.from_bytes(hashlib.sha256(b"llmco2 schema").digest()[:8], "big", signed=True)


@contextlib.contextmanager
def schema_lock(engine: Engine) -> Iterator[Connection]:
    """One transaction holding llmco2's schema lock: creations and migrations queue on it.

    Processes that open a new database at the same moment would otherwise all see no schema
    and all create it. On PostgreSQL the lock is a transaction-level advisory lock; on SQLite the
    transaction's ``BEGIN IMMEDIATE`` (see :func:`make_engine`) already holds the write lock.
    """
    with translate_errors(engine.url), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        yield connection


def _revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    revision = context.get_current_revision()
    if revision is None:
        revision = _adopt_legacy_version_table(connection)
    return revision


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for a database without llmco2 tables."""
    with translate_errors(engine.url), engine.begin() as connection:
        return _revision(connection)


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database to ``revision``, under the schema lock; returns (before, after).

    Raises:
        SchemaVersionError: When the database is newer than this code.
        DatabaseError: When the database cannot be reached.
    """
    with schema_lock(engine) as connection:
        before = _revision(connection)
        if before is not None and before not in known_revisions():
            raise _newer_schema(before, engine)
        command.upgrade(_alembic_config(connection), revision)
        after = _revision(connection)
    assert after is not None
    return before, after


def _newer_schema(revision: str, engine: Engine) -> SchemaVersionError:
    return SchemaVersionError(
        f"database {mask_url(engine.url)!r} has schema revision {revision}, newer than this "
        f"llmco2 knows (head {head_revision()}): upgrade llmco2"
    )


def ensure_schema(engine: Engine, create: bool = True) -> None:
    """Check the database is at the head revision; create the schema in an empty database.

    Args:
        engine: The database.
        create: Create the tables when the database has none of llmco2's (a new file or an
            empty PostgreSQL database). An older schema is never upgraded silently.

    Raises:
        SchemaVersionError: When the schema is older (run ``llmco2 db upgrade``) or newer.
        DatabaseError: When the database cannot be reached, or is empty and ``create`` is off.
    """
    head = head_revision()
    if current_revision(engine) == head:
        return
    # Decided again under the lock: another process may be creating the schema right now.
    with schema_lock(engine) as connection:
        revision = _revision(connection)
        if revision == head:
            return
        if revision is None:
            tables = set(inspect(connection).get_table_names())
            if tables & {"campaigns", "points"}:
                raise SchemaVersionError(
                    f"database {mask_url(engine.url)!r} has llmco2 tables but no schema revision"
                )
            if not create:
                raise DatabaseError(f"database {mask_url(engine.url)!r} holds no llmco2 campaigns")
            command.upgrade(_alembic_config(connection), "head")
            return
    if revision not in known_revisions():
        raise _newer_schema(revision, engine)
    raise SchemaVersionError(
        f"database {mask_url(engine.url)!r} has schema revision {revision}, older than this "
        f"llmco2 needs ({head}): run `llmco2 db upgrade --db {mask_url(engine.url)}`"
    )


def probe(engine: Engine) -> None:
    """Open and close one connection, raising a one-line error if the database is unreachable."""
    with translate_errors(engine.url), engine.connect():
        pass
