"""The contestants of the Arrow benchmarks (benchmarks/arrow.py).

A contestant is a `Peer`: a name, the table it belongs to (`group`), what it
returns (`form`), and a function. Reads are `fn(ctx) -> result` (checked
outside the timed call); loads and transfers are `fn(ctx, table) -> None`
(the target table checked by the server afterwards). Each function does
what that library's user writes; where a library cannot take the rows as
they come, the conversion its user needs is inside the timed call and said
in `how` (it lands in the README and the results' footnotes).

Connections are opened once (`ctx.conn(...)`) and reused, as a pool would;
`polars.read_database_uri`, `polars.write_database` and ConnectorX take a
URI and connect per call: that is their API.
"""

from __future__ import annotations

import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import arrow_data as data

PARTITIONS = 4


@dataclass
class Peer:
    name: str
    group: str  # pg_read | ms_read | pg_load | transfer
    form: str  # what it returns or loads from
    fn: Callable[..., Any]
    needs: str = ""  # "dbflow": the installed dbflow; "dbflow-arrow": its Arrow API
    baseline: bool = False
    how: str = ""  # what the timed call does beyond the library call itself

    @property
    def key(self) -> str:
        return f"{self.group}: {self.name} ({self.form})"


@dataclass
class Ctx:
    """Everything the contestants share: URLs, the query, open connections,
    and the load's source rows in each form."""

    pg_url: str
    ms_url: str | None
    rows: int
    pg_source: str = "arrow_src"
    ms_source: str = "arrow_src"
    opened: dict[str, Any] = field(default_factory=dict)
    source: Any = None  # the pyarrow Table the loads start from
    source_polars: Any = None
    source_dicts: list[dict[str, Any]] | None = None

    @property
    def pg_sql(self) -> str:
        return data.SELECT.format(table=self.pg_source)

    @property
    def ms_sql(self) -> str:
        return data.SELECT.format(table=self.ms_source)

    def conn(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.opened:
            self.opened[key] = make()
        return self.opened[key]

    def close(self) -> None:
        for key, c in list(self.opened.items()):
            closer = getattr(c, "dispose", None) or getattr(c, "close", None)
            try:
                closer() if closer else None
            except Exception:
                pass
            del self.opened[key]


# ---- connections -------------------------------------------------------------------


def dbflow_manager(url: str, name: str = "bench") -> Any:
    """As benchmarks/run.py builds it: settings given in code, no migrations."""
    import dbflow

    settings = {"connection_string": url, "pool_size": 5, "max_overflow": 10}
    config = dbflow.ConfigManager("bench", envs_dir=tempfile.mkdtemp())
    return dbflow.DatabaseManager(
        name, config=config.with_settings(name, {**settings, "auto_migrate": "off"})
    )


def ms_parts(url: str) -> dict[str, Any]:
    u = urllib.parse.urlsplit(url)
    return {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 1433,
        "user": urllib.parse.unquote(u.username or ""),
        "password": urllib.parse.unquote(u.password or ""),
        "database": u.path.lstrip("/") or "master",
    }


def pyodbc_engine(url: str) -> Any:
    """SQLAlchemy over pyodbc on the FreeTDS ODBC driver, as mssql.py's replaced design."""
    from sqlalchemy import create_engine

    c = ms_parts(url)
    odbc = (
        f"DRIVER={{FreeTDS}};SERVER={c['host']};PORT={c['port']};DATABASE={c['database']};"
        f"UID={c['user']};PWD={c['password']};TDS_Version=7.4;ClientCharset=UTF-8"
    )
    return create_engine("mssql+pyodbc:///?odbc_connect=" + urllib.parse.quote_plus(odbc))


def pymssql_connect(url: str) -> Any:
    import pymssql

    c = ms_parts(url)
    return pymssql.connect(
        server=c["host"], port=c["port"], user=c["user"], password=c["password"],
        database=c["database"],
    )  # fmt: skip


def adbc_pg(ctx: Ctx) -> Any:
    import adbc_driver_postgresql.dbapi as adbc

    return ctx.conn("adbc", lambda: adbc.connect(ctx.pg_url))


def dbflow_pg(ctx: Ctx) -> Any:
    return ctx.conn("dbflow-pg", lambda: dbflow_manager(ctx.pg_url))


def dbflow_ms(ctx: Ctx) -> Any:
    assert ctx.ms_url
    return ctx.conn("dbflow-ms", lambda: dbflow_manager(ctx.ms_url, "msbench"))


def cx_ms_url(ctx: Ctx) -> str:
    assert ctx.ms_url
    return ctx.ms_url if "encrypt=" in ctx.ms_url else ctx.ms_url + "?encrypt=off"


# ---- reads -------------------------------------------------------------------------


def _pandas_sqlalchemy_pg(ctx: Ctx) -> Any:
    import pandas as pd
    from sqlalchemy import create_engine

    url = ctx.pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    return pd.read_sql(ctx.pg_sql, ctx.conn("sa-pg", lambda: create_engine(url)))


def _cx(url: Callable[[Ctx], str], sql: str, form: str, parts: int) -> Callable[[Ctx], Any]:
    def read(ctx: Ctx) -> Any:
        import connectorx as cx

        extra = {"partition_on": "id", "partition_num": parts} if parts > 1 else {}
        return cx.read_sql(url(ctx), getattr(ctx, sql), return_type=form, **extra)

    return read


def _adbc_arrow(ctx: Ctx) -> Any:
    with adbc_pg(ctx).cursor() as cur:
        cur.execute(ctx.pg_sql)
        return cur.fetch_arrow_table()


def _polars_uri(engine: str) -> Callable[[Ctx], Any]:
    def read(ctx: Ctx) -> Any:
        import polars as pl

        return pl.read_database_uri(ctx.pg_sql, ctx.pg_url, engine=engine)  # type: ignore[arg-type]

    return read


def _polars_uri_ms(ctx: Ctx) -> Any:
    import polars as pl

    return pl.read_database_uri(ctx.ms_sql, cx_ms_url(ctx), engine="connectorx")


def _dbflow_read(which: Callable[[Ctx], Any], method: str, sql: str, parts: int = 0) -> Callable:
    def read(ctx: Ctx) -> Any:
        extra = {"partition_on": "id", "partitions": parts} if parts else {}
        return getattr(which(ctx), method)(getattr(ctx, sql), **extra)

    return read


def _pandas_pyodbc(ctx: Ctx) -> Any:
    import pandas as pd

    assert ctx.ms_url
    return pd.read_sql(ctx.ms_sql, ctx.conn("sa-pyodbc", lambda: pyodbc_engine(ctx.ms_url)))


def _pandas_pymssql(ctx: Ctx) -> Any:
    import warnings

    import pandas as pd

    assert ctx.ms_url
    conn = ctx.conn("pymssql", lambda: pymssql_connect(ctx.ms_url))
    with warnings.catch_warnings():  # pandas warns that it only tests SQLAlchemy and sqlite3
        warnings.simplefilter("ignore", UserWarning)
        return pd.read_sql(ctx.ms_sql, conn)


def _pandas_sqlalchemy_pymssql(ctx: Ctx) -> Any:
    import pandas as pd
    from sqlalchemy import create_engine

    assert ctx.ms_url
    c = ms_parts(ctx.ms_url)
    url = f"mssql+pymssql://{c['user']}:{c['password']}@{c['host']}:{c['port']}/{c['database']}"
    return pd.read_sql(ctx.ms_sql, ctx.conn("sa-pymssql", lambda: create_engine(url)))


def _pg_reads() -> list[Peer]:
    g, pg = "pg_read", lambda ctx: ctx.pg_url
    return [
        Peer("pandas.read_sql (SQLAlchemy + psycopg2)", g, "pandas", _pandas_sqlalchemy_pg,
             baseline=True),
        Peer("dbflow fetch_arrow", g, "Arrow", _dbflow_read(dbflow_pg, "fetch_arrow", "pg_sql"),
             needs="dbflow-arrow"),
        Peer(f"dbflow fetch_arrow, {PARTITIONS} partitions", g, "Arrow",
             _dbflow_read(dbflow_pg, "fetch_arrow", "pg_sql", PARTITIONS), needs="dbflow-arrow"),
        Peer("dbflow fetch_polars", g, "Polars", _dbflow_read(dbflow_pg, "fetch_polars", "pg_sql"),
             needs="dbflow-arrow"),
        Peer("dbflow fetch_pandas (numpy_nullable)", g, "pandas",
             _dbflow_read(dbflow_pg, "fetch_pandas", "pg_sql"), needs="dbflow-arrow"),
        Peer("ConnectorX, 1 partition", g, "Arrow", _cx(pg, "pg_sql", "arrow", 1)),
        Peer(f"ConnectorX, {PARTITIONS} partitions on id", g, "Arrow",
             _cx(pg, "pg_sql", "arrow", PARTITIONS)),
        Peer("ConnectorX, 1 partition", g, "Polars", _cx(pg, "pg_sql", "polars", 1)),
        Peer(f"ConnectorX, {PARTITIONS} partitions on id", g, "Polars",
             _cx(pg, "pg_sql", "polars", PARTITIONS)),
        Peer("ADBC PostgreSQL, fetch_arrow_table()", g, "Arrow", _adbc_arrow),
        Peer("polars.read_database_uri, engine=connectorx", g, "Polars", _polars_uri("connectorx")),
        Peer("polars.read_database_uri, engine=adbc", g, "Polars", _polars_uri("adbc")),
    ]  # fmt: skip


def _ms_reads() -> list[Peer]:
    g = "ms_read"
    return [
        Peer("pandas.read_sql (SQLAlchemy + pyodbc, FreeTDS)", g, "pandas", _pandas_pyodbc,
             baseline=True),
        Peer("dbflow fetch_arrow", g, "Arrow", _dbflow_read(dbflow_ms, "fetch_arrow", "ms_sql"),
             needs="dbflow-arrow"),
        Peer(f"dbflow fetch_arrow, {PARTITIONS} partitions", g, "Arrow",
             _dbflow_read(dbflow_ms, "fetch_arrow", "ms_sql", PARTITIONS), needs="dbflow-arrow"),
        Peer("dbflow fetch_polars", g, "Polars", _dbflow_read(dbflow_ms, "fetch_polars", "ms_sql"),
             needs="dbflow-arrow"),
        Peer("dbflow fetch_pandas (numpy_nullable)", g, "pandas",
             _dbflow_read(dbflow_ms, "fetch_pandas", "ms_sql"), needs="dbflow-arrow"),
        Peer("ConnectorX mssql://, 1 partition", g, "Arrow", _cx(cx_ms_url, "ms_sql", "arrow", 1)),
        Peer(f"ConnectorX mssql://, {PARTITIONS} partitions on id", g, "Arrow",
             _cx(cx_ms_url, "ms_sql", "arrow", PARTITIONS)),
        Peer("ConnectorX mssql://, 1 partition", g, "Polars", _cx(cx_ms_url, "ms_sql", "polars", 1)),
        Peer("polars.read_database_uri, engine=connectorx", g, "Polars", _polars_uri_ms),
        Peer("pandas.read_sql (pymssql connection)", g, "pandas", _pandas_pymssql,
             how="a DB-API connection given to pandas (it warns that it only tests SQLAlchemy)"),
        Peer("pandas.read_sql (SQLAlchemy + pymssql)", g, "pandas", _pandas_sqlalchemy_pymssql),
    ]  # fmt: skip


# ---- loads into PostgreSQL ------------------------------------------------------------

PG_TYPES = ["int4", "int8", "numeric", "text", "timestamptz", "date", "bool", "uuid", "jsonb",
            "float8"]  # fmt: skip


def _adbc_ingest(ctx: Ctx, table: str) -> None:
    import pyarrow as pa

    src = ctx.source
    # jsonb from a plain string column is refused ("unsupported jsonb version
    # number 123"): the user marks the column as arrow.json (no copy).
    i = src.schema.get_field_index("payload")
    src = src.set_column(i, "payload", src.column("payload").cast(pa.json_()))
    conn = adbc_pg(ctx)
    with conn.cursor() as cur:
        cur.adbc_ingest(table, src, mode="append")
    conn.commit()


def _polars_write(engine: str) -> Callable[[Ctx, str], None]:
    def load(ctx: Ctx, table: str) -> None:
        import polars as pl

        df = ctx.source_polars
        url = ctx.pg_url
        if engine == "sqlalchemy":
            # psycopg2 sends Polars' Binary uuid as bytea (refused for a uuid
            # column): the user sends it as hex text instead.
            df = df.with_columns(pl.col("ref").bin.encode("hex"))
            url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
        df.write_database(table, url, engine=engine, if_table_exists="append")  # type: ignore[arg-type]

    return load


def _psycopg_copy(ctx: Ctx, table: str) -> None:
    import psycopg

    def connect() -> Any:
        from psycopg.types.json import set_json_dumps

        conn = psycopg.connect(ctx.pg_url)
        # The payload column holds JSON text. psycopg's jsonb dumper would
        # json.dumps() it again and store a JSON *string* (caught by the
        # checksums); the user passes the text through as it is.
        set_json_dumps(lambda v: v, context=conn)
        return conn

    conn = ctx.conn("psycopg", connect)
    columns = [c.to_pylist() for c in ctx.source.columns]  # Arrow → Python values, per column
    with conn.cursor() as cur:
        sql = f"COPY {table} ({', '.join(data.NAMES)}) FROM STDIN (FORMAT BINARY)"
        with cur.copy(sql) as copy:
            copy.set_types(PG_TYPES)
            for row in zip(*columns, strict=True):
                copy.write_row(row)
    conn.commit()


def _dbflow_load(source: str) -> Callable[[Ctx, str], None]:
    def load(ctx: Ctx, table: str) -> None:
        dbflow_pg(ctx).bulk_insert(table, getattr(ctx, source))

    return load


def _pg_loads() -> list[Peer]:
    g = "pg_load"
    return [
        Peer("dbflow bulk_insert, list of dicts", g, "dicts", _dbflow_load("source_dicts"),
             needs="dbflow", baseline=True,
             how="the dicts are built before the timed call (`Table.to_pylist()`)"),
        Peer("dbflow bulk_insert(pyarrow Table)", g, "Arrow", _dbflow_load("source"),
             needs="dbflow-arrow"),
        Peer("dbflow bulk_insert(Polars DataFrame)", g, "Polars", _dbflow_load("source_polars"),
             needs="dbflow-arrow"),
        Peer("ADBC adbc_ingest(mode='append')", g, "Arrow", _adbc_ingest,
             how="`payload` re-typed as `arrow.json` (zero-copy) so that jsonb accepts it"),
        Peer("polars.write_database, engine=adbc", g, "Polars", _polars_write("adbc")),
        Peer("polars.write_database, engine=sqlalchemy (psycopg2)", g, "Polars",
             _polars_write("sqlalchemy"), how="`ref` sent as hex text (`bin.encode('hex')`)"),
        Peer("psycopg 3 binary COPY, write_row", g, "Arrow", _psycopg_copy,
             how="columns to Python with `to_pylist()`, rows zipped, `set_types`; "
             "`set_json_dumps(lambda v: v)` on the connection, or the JSON text is stored as a "
             "JSON string (double-encoded: the checksums caught it)"),
    ]  # fmt: skip


# ---- SQL Server → PostgreSQL ----------------------------------------------------------


def _cx_adbc(ctx: Ctx, table: str) -> None:
    import connectorx as cx
    import pyarrow as pa

    t = cx.read_sql(cx_ms_url(ctx), ctx.ms_sql, return_type="arrow")
    # ConnectorX returns int as int64, decimal as decimal128(38,10), the
    # uniqueidentifier as text; ADBC's COPY needs the target's types
    # ("incorrect binary data format" otherwise): cast, UUID text → 16 bytes
    # (vectorised, the peer's best case), payload as arrow.json for jsonb.
    target = pa.schema([
        ("id", pa.int32()), ("qty", pa.int64()), ("amount", pa.decimal128(12, 2)),
        ("label", pa.string()), ("created_at", pa.timestamp("us")), ("day", pa.date32()),
        ("active", pa.bool_()), ("ref", pa.string()), ("payload", pa.string()),
        ("score", pa.float64()),
    ])  # fmt: skip
    t = t.rename_columns([n.lower() for n in t.column_names]).cast(target)
    t = t.set_column(7, "ref", data.uuid_from_text(t.column("ref")))
    t = t.set_column(8, "payload", t.column("payload").cast(pa.json_()))
    conn = adbc_pg(ctx)
    with conn.cursor() as cur:
        cur.adbc_ingest(table, t, mode="append")
    conn.commit()


def _dbflow_transfer(ctx: Ctx, table: str) -> None:
    dbflow_pg(ctx).bulk_insert(table, dbflow_ms(ctx).iter_arrow(ctx.ms_sql))


def _transfers() -> list[Peer]:
    g = "transfer"
    return [
        Peer("ConnectorX read (mssql) + ADBC adbc_ingest", g, "Arrow", _cx_adbc, baseline=True,
             how="cast to the target's Arrow types, UUID text → bytes, payload → arrow.json"),
        Peer("dbflow bulk_insert(iter_arrow(...)), streamed", g, "Arrow batches",
             _dbflow_transfer, needs="dbflow-arrow"),
    ]  # fmt: skip


def all_peers() -> list[Peer]:
    return _pg_reads() + _ms_reads() + _pg_loads() + _transfers()


GROUPS = {
    "pg_read": "PostgreSQL → DataFrame: {n:,} rows × 10 columns",
    "ms_read": "SQL Server (Babelfish) → DataFrame: {n:,} rows × 10 columns",
    "pg_load": "bulk load into PostgreSQL: {n:,} rows from Arrow / Polars",
    "transfer": "SQL Server → PostgreSQL: {n:,} rows",
}
