"""SQL Server specifics: its value types, T-SQL lexical forms, TLS settings.
Runs whenever DBFLOW_TEST_MSSQL_URL is set; skipped with that reason otherwise."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import dbflow


@pytest.fixture
def mdb(env, mssql_test_url: str) -> Iterator[dbflow.DatabaseManager]:  # type: ignore[no-untyped-def]
    name = env.database(url=mssql_test_url, pool_release_grace=0)
    manager = env.manager(name)
    yield manager
    manager.dispose()


SERVER_VALUES: list[tuple[str, Any]] = [
    ("CAST(255 AS tinyint)", 255),
    ("CAST(-32768 AS smallint)", -32768),
    ("CAST(2147483647 AS int)", 2147483647),
    ("CAST(9223372036854775807 AS bigint)", 9223372036854775807),
    ("CAST(1 AS bit)", True),
    ("CAST(123.4500 AS decimal(10, 4))", Decimal("123.4500")),
    ("CAST(-0.000001 AS numeric(38, 6))", Decimal("-0.000001")),
    ("CAST(12.3456 AS money)", Decimal("12.3456")),
    ("CAST(-1.5 AS smallmoney)", Decimal("-1.5000")),
    ("CAST('922337203685477.5807' AS money)", Decimal("922337203685477.5807")),
    ("CAST('-922337203685477.5808' AS money)", Decimal("-922337203685477.5808")),
    ("CAST('214748.3647' AS smallmoney)", Decimal("214748.3647")),
    ("CAST('-214748.3648' AS smallmoney)", Decimal("-214748.3648")),
    ("CAST(0.1 AS real)", 0.1),
    ("CAST(2.25 AS float)", 2.25),
    ("CAST('ab' AS char(4))", "ab  "),
    ("CAST('abc' AS varchar(10))", "abc"),
    ("CAST(N'héllo' AS nchar(6))", "héllo "),
    ("CAST(N'wörld' AS nvarchar(max))", "wörld"),
    ("CAST('txt' AS text)", "txt"),
    ("CAST(N'ntxt' AS ntext)", "ntxt"),
    ("CAST(0x00FF AS binary(2))", b"\x00\xff"),
    ("CAST(0x0102 AS varbinary(max))", b"\x01\x02"),
    ("CAST(0x03 AS image)", b"\x03"),
    ("CAST('2024-02-29' AS date)", dt.date(2024, 2, 29)),
    ("CAST('2024-01-02T03:04:05.123' AS datetime)", dt.datetime(2024, 1, 2, 3, 4, 5, 123000)),
    (
        "CAST('2024-01-02T03:04:05.678901' AS datetime2(6))",
        dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
    ),
    ("CAST('2024-01-02T03:04:00' AS smalldatetime)", dt.datetime(2024, 1, 2, 3, 4)),
    (
        "CAST('2024-01-02T03:04:05.5+02:00' AS datetimeoffset(6))",
        dt.datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    ),
    (
        "CAST('2024-01-02T03:04:05-08:00' AS datetimeoffset)",
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-8))),
    ),
    (
        "CAST('2024-01-02T23:30:00+05:30' AS datetimeoffset(0))",
        dt.datetime(2024, 1, 2, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    ),
    (
        "CAST('12345678-1234-5678-1234-567812345678' AS uniqueidentifier)",
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
    ),
    ("CAST('<a>x</a>' AS xml)", "<a>x</a>"),
    ("CAST(NULL AS int)", None),
    ("CAST(NULL AS datetimeoffset)", None),
]


@pytest.mark.parametrize(("literal", "expected"), SERVER_VALUES, ids=[v[0] for v in SERVER_VALUES])
def test_server_values_decode(mdb: dbflow.DatabaseManager, literal: str, expected: Any) -> None:
    value = mdb.execute_query(f"SELECT {literal} AS v")[0]["v"]
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(expected, dt.datetime):
        assert value.utcoffset() == expected.utcoffset()


def test_time_with_100ns_digits_is_truncated_not_rounded(
    mdb: dbflow.DatabaseManager, mssql_server: tuple[str, str]
) -> None:
    got = mdb.execute_query(
        "SELECT CAST('13:14:15.1234567' AS time(7)) AS a, CAST('23:59:59.9999996' AS time(7)) AS b"
    )[0]
    if mssql_server[1] == "babelfish":
        # Babelfish stores time in PostgreSQL's microseconds: the server has
        # rounded before any client sees the value.
        assert got["a"] == dt.time(13, 14, 15, 123457)
    else:
        assert got == {"a": dt.time(13, 14, 15, 123456), "b": dt.time(23, 59, 59, 999999)}


def test_tsql_literals_and_brackets_are_left_alone(mdb: dbflow.DatabaseManager) -> None:
    rows = mdb.execute_query("SELECT N':not' AS [a:b], :yes AS [v] -- :comment", {"yes": 1})
    assert rows == [{"a:b": ":not", "v": 1}]


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        7,
        2**40,
        1.5,
        Decimal("12.3400"),
        "x" * 100_000,
        b"\x00" * 70_000,
        dt.date(2020, 1, 2),
        dt.time(1, 2, 3, 4),
        dt.datetime(2020, 1, 2, 3, 4, 5, 6),
        dt.datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        uuid.UUID(int=5),
    ],
    ids=lambda v: type(v).__name__,
)
def test_parameters_round_trip(mdb: dbflow.DatabaseManager, value: Any) -> None:
    got = mdb.execute_query("SELECT :v AS v", {"v": value})[0]["v"]
    assert got == value


def test_lists_travel_as_json_for_openjson(mdb: dbflow.DatabaseManager) -> None:
    rows = mdb.execute_query(
        "SELECT CAST([value] AS int) AS id FROM OPENJSON(:ids) ORDER BY id", {"ids": [3, 1, 2]}
    )
    assert rows == [{"id": 1}, {"id": 2}, {"id": 3}]


def test_unsupported_values_name_the_parameter(mdb: dbflow.DatabaseManager) -> None:
    with pytest.raises(dbflow.ParameterError, match=":span"):
        mdb.execute_query("SELECT :span", {"span": dt.timedelta(days=1)})


def test_integrity_numbers(mdb: dbflow.DatabaseManager, env) -> None:  # type: ignore[no-untyped-def]
    table = f"t_integrity_{uuid.uuid4().hex[:8]}"
    mdb.execute_query(f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL)")
    try:
        mdb.execute_query(f"INSERT INTO {table} VALUES (1, 1)")
        with pytest.raises(dbflow.IntegrityError) as dup:
            mdb.execute_query(f"INSERT INTO {table} VALUES (1, 1)")
        assert dup.value.error_number == 2627
        with pytest.raises(dbflow.IntegrityError) as null:
            mdb.execute_query(f"INSERT INTO {table} VALUES (2, NULL)")
        assert null.value.error_number == 515
    finally:
        mdb.execute_query(f"DROP TABLE {table}")


def test_wrong_password_names_the_login_problem(env, mssql_test_url: str) -> None:  # type: ignore[no-untyped-def]
    import urllib.parse

    parts = urllib.parse.urlsplit(mssql_test_url)
    netloc = f"{parts.username}:${{MSBAD_PW}}@{parts.hostname}:{parts.port or 1433}"
    env.set_raw("MSBAD_PW", "not-the-Password-1")
    env.set("MSBAD_CONNECTION_STRING", urllib.parse.urlunsplit(parts._replace(netloc=netloc)))
    db = env.manager("msbad")
    try:
        with pytest.raises(dbflow.DatabaseConnectionError) as info:
            db.execute_query("SELECT 1")
        assert "not-the-Password-1" not in str(info.value)
        assert "login failed" in str(info.value).lower()
        # Where the password came from: the variable and the file defining it.
        assert "${MSBAD_PW} from " in str(info.value)
        assert ".env.test" in str(info.value)
    finally:
        db.dispose()


# ---- NULLs, every type, every position ---------------------------------------

#: A column of each type of the values list in docs/sqlserver.md, and a value for it.
TYPED_COLUMNS: list[tuple[str, str, Any]] = [
    ("c_tinyint", "tinyint", 7),
    ("c_smallint", "smallint", -7),
    ("c_int", "int", 70000),
    ("c_bigint", "bigint", 2**40),
    ("c_bit", "bit", True),
    ("c_decimal", "decimal(10, 2)", Decimal("605813.35")),
    ("c_numeric", "numeric(38, 6)", Decimal("-12345678901234567890.123456")),
    ("c_money", "money", Decimal("922337203685477.5807")),
    ("c_smallmoney", "smallmoney", Decimal("-214748.3648")),
    ("c_real", "real", 0.5),
    ("c_float", "float", 2.25),
    ("c_char", "char(3)", "abc"),
    ("c_varchar", "varchar(20)", "plain"),
    ("c_nchar", "nchar(3)", "äöü"),
    ("c_nvarchar", "nvarchar(max)", "héllo wörld ✓"),
    ("c_binary", "binary(2)", b"\x00\xff"),
    ("c_varbinary", "varbinary(max)", b"\x00\x01" * 5000),
    ("c_date", "date", dt.date(2024, 2, 29)),
    ("c_time", "time(6)", dt.time(13, 14, 15, 123456)),
    ("c_datetime", "datetime", dt.datetime(2024, 1, 2, 3, 4, 5, 123000)),
    ("c_datetime2", "datetime2(6)", dt.datetime(2024, 1, 2, 3, 4, 5, 678901)),
    ("c_smalldatetime", "smalldatetime", dt.datetime(2024, 1, 2, 3, 4)),
    (
        "c_dto",
        "datetimeoffset(6)",
        dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    ),
    ("c_uuid", "uniqueidentifier", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("c_xml", "xml", "<a>x</a>"),
]


@pytest.fixture
def typed_table(mdb: dbflow.DatabaseManager) -> Iterator[str]:
    name = f"t_typed_{uuid.uuid4().hex[:8]}"
    columns = ", ".join(f"{c} {ty} NULL" for c, ty, _ in TYPED_COLUMNS)
    mdb.execute_query(f"CREATE TABLE {name} (id int PRIMARY KEY, {columns})")
    yield name
    mdb.execute_query(f"DROP TABLE {name}")


def test_none_binds_into_a_column_of_every_type(
    mdb: dbflow.DatabaseManager, typed_table: str
) -> None:
    names = [c for c, _, _ in TYPED_COLUMNS]
    row: dict[str, Any] = {"id": 1, **{c: None for c in names}}
    placeholders = ", ".join(f":{c}" for c in ["id", *names])
    mdb.execute_query(
        f"INSERT INTO {typed_table} (id, {', '.join(names)}) VALUES ({placeholders})", row
    )
    assert mdb.execute_query(f"SELECT * FROM {typed_table}") == [row]
    # Values in, then None again through UPDATE ... SET c = :v, column by column.
    for column, _, value in TYPED_COLUMNS:
        mdb.execute_query(
            f"UPDATE {typed_table} SET {column} = :v WHERE id = :id", {"v": value, "id": 1}
        )
        assert mdb.execute_query(f"SELECT {column} AS v FROM {typed_table}")[0]["v"] == value
        mdb.execute_query(
            f"UPDATE {typed_table} SET {column} = :v WHERE id = :id", {"v": None, "id": 1}
        )
        assert mdb.execute_query(f"SELECT {column} AS v FROM {typed_table}")[0]["v"] is None
    assert mdb.execute_query("SELECT :v AS v", {"v": None}) == [{"v": None}]
    # A statement whose every value is None still runs with its parameters
    # (in sp_executesql), and NULL comparisons keep SQL's meaning.
    assert mdb.execute_query(
        f"SELECT COUNT(*) AS n FROM {typed_table} WHERE c_int = :v OR :v IS NULL", {"v": None}
    ) == [{"n": 1}]


def test_execute_many_with_nones(mdb: dbflow.DatabaseManager, typed_table: str) -> None:
    names = [c for c, _, _ in TYPED_COLUMNS]
    rows = [
        {"id": i, **{c: (v if (i + k) % 2 else None) for k, (c, _, v) in enumerate(TYPED_COLUMNS)}}
        for i in range(1, 21)
    ]
    placeholders = ", ".join(f":{c}" for c in ["id", *names])
    sql = f"INSERT INTO {typed_table} (id, {', '.join(names)}) VALUES ({placeholders})"
    assert mdb.execute_many(sql, rows) == 20
    assert mdb.execute_query(f"SELECT * FROM {typed_table} ORDER BY id") == rows


def test_bulk_insert_stores_every_type_and_none(
    mdb: dbflow.DatabaseManager, typed_table: str
) -> None:
    names = [c for c, _, _ in TYPED_COLUMNS]
    full = {"id": 1, **{c: v for c, _, v in TYPED_COLUMNS}}
    empty = {"id": 2, **{c: None for c in names}}
    mixed = {"id": 3, **{c: (v if k % 2 else None) for k, (c, _, v) in enumerate(TYPED_COLUMNS)}}
    negative = {**full, "id": 4, "c_decimal": Decimal("-0.01"), "c_numeric": Decimal("0.000001")}
    assert mdb.bulk_insert(typed_table, [full, empty, mixed, negative]) == 4
    # Read back through the server, value by value: a garbage decimal would
    # fail here (or break the connection) rather than pass unseen.
    got = mdb.execute_query(f"SELECT * FROM {typed_table} ORDER BY id")
    assert got == [full, empty, mixed, negative]
    text = mdb.execute_query(
        f"SELECT CAST(c_decimal AS varchar(20)) AS d, CAST(c_money AS varchar(30)) AS m "
        f"FROM {typed_table} WHERE id = 1"
    )
    assert text == [{"d": "605813.35", "m": "922337203685477.5807"}]


def test_bulk_insert_refuses_a_value_its_column_cannot_take(
    mdb: dbflow.DatabaseManager, typed_table: str
) -> None:
    with pytest.raises(
        dbflow.ParameterError, match=r"row 1, column c_uuid: a Python float .*uniqueidentifier"
    ):
        mdb.bulk_insert(typed_table, [{"id": 1, "c_uuid": None}, {"id": 2, "c_uuid": 1.5}])
    assert mdb.execute_query(f"SELECT COUNT(*) AS n FROM {typed_table}") == [{"n": 0}]
    assert mdb.execute_query("SELECT 1 AS ok") == [{"ok": 1}]


# ---- datetimeoffset, both directions -------------------------------------------

OFFSETS = [
    dt.timedelta(0),
    dt.timedelta(hours=2),
    dt.timedelta(hours=-5),
    dt.timedelta(hours=5, minutes=30),
    dt.timedelta(hours=-8),
    dt.timedelta(hours=14),
    dt.timedelta(hours=-9, minutes=-30),
]


@pytest.mark.parametrize("offset", OFFSETS, ids=str)
def test_datetimeoffset_round_trips_as_instant_and_offset(
    mdb: dbflow.DatabaseManager, offset: dt.timedelta
) -> None:
    value = dt.datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=dt.timezone(offset))
    table = f"t_dto_{uuid.uuid4().hex[:8]}"
    mdb.execute_query(f"CREATE TABLE {table} (v datetimeoffset(6))")
    try:
        mdb.execute_query(f"INSERT INTO {table} (v) VALUES (:v)", {"v": value})
        # What the server stored, read by the server itself: the instant in
        # seconds from a fixed UTC point, and the offset in minutes.
        stored = mdb.execute_query(
            "SELECT DATEDIFF(second, CAST('2024-01-01T00:00:00+00:00' AS datetimeoffset), v) "
            f"AS s, DATEPART(tzoffset, v) AS m, v FROM {table}"
        )[0]
        epoch = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
        assert stored["s"] == int((value - epoch).total_seconds())
        assert stored["m"] == int(offset.total_seconds() // 60)
        got = stored["v"]
        assert got == value  # the same instant
        assert got.utcoffset() == offset  # and the same offset
        assert got.replace(tzinfo=None) == value.replace(tzinfo=None)  # wall time too
    finally:
        mdb.execute_query(f"DROP TABLE {table}")


def test_money_parameters_round_trip_at_the_extremes(mdb: dbflow.DatabaseManager) -> None:
    table = f"t_money_{uuid.uuid4().hex[:8]}"
    mdb.execute_query(f"CREATE TABLE {table} (id int, m money, s smallmoney)")
    extremes = [
        (1, Decimal("922337203685477.5807"), Decimal("214748.3647")),
        (2, Decimal("-922337203685477.5808"), Decimal("-214748.3648")),
        (3, Decimal("0.0001"), Decimal("-0.0001")),
    ]
    try:
        for i, m, s in extremes:
            mdb.execute_query(f"INSERT INTO {table} VALUES (:i, :m, :s)", {"i": i, "m": m, "s": s})
        got = mdb.execute_query(f"SELECT id, m, s FROM {table} ORDER BY id", as_tuples=True)
        assert got == extremes
        # The server's own text agrees (nothing was rounded on the way in).
        text = mdb.execute_query(f"SELECT CAST(m AS varchar(40)) AS t FROM {table} WHERE id = 1")
        assert text[0]["t"].startswith("922337203685477.58")
    finally:
        mdb.execute_query(f"DROP TABLE {table}")


def test_non_latin_text_survives_an_nvarchar_column(mdb: dbflow.DatabaseManager) -> None:
    table = f"t_text_{uuid.uuid4().hex[:8]}"
    mdb.execute_query(f"CREATE TABLE {table} (v nvarchar(100))")
    try:
        value = "日本語 ✓ ünïcödé"
        mdb.execute_query(f"INSERT INTO {table} VALUES (:v)", {"v": value})
        assert mdb.execute_query(f"SELECT v FROM {table}") == [{"v": value}]
    finally:
        mdb.execute_query(f"DROP TABLE {table}")


# ---- TLS as each driver's connection string means it ---------------------------


def _login(mssql_test_url: str) -> tuple[str, str, str, int, str]:
    parts = urllib.parse.urlsplit(mssql_test_url)
    return (
        urllib.parse.quote(parts.username or "", safe=""),
        urllib.parse.quote(parts.password or "", safe=""),
        parts.hostname or "127.0.0.1",
        parts.port or 1433,
        parts.path.lstrip("/"),
    )


def _connect(env, name: str, conn: str) -> tuple[list[dict[str, Any]] | None, Exception | None]:  # type: ignore[no-untyped-def]
    env.set(f"{name.upper()}_CONNECTION_STRING", conn)
    env.set(f"{name.upper()}_POOL_RELEASE_GRACE", 0)
    db = env.manager(name)
    try:
        return db.execute_query("SELECT 1 AS ok"), None
    except dbflow.DatabaseConnectionError as e:
        return None, e
    finally:
        db.dispose()


def test_login_only_tls_does_not_validate_the_certificate(env, mssql_test_url: str) -> None:  # type: ignore[no-untyped-def]
    user, pw, host, port, db = _login(mssql_test_url)
    for i, conn in enumerate(
        [
            # ODBC Driver 17 defaults (Encrypt=no): TLS for the login only, no validation.
            f"mssql+pyodbc://{user}:{pw}@{host}:{port}/{db}?driver=ODBC+Driver+17+for+SQL+Server",
            f"mssql://{user}:{pw}@{host}:{port}/{db}?encrypt=off",
            f"Server=tcp:{host},{port};Database={db};User Id={urllib.parse.unquote(user)};"
            f"Password={urllib.parse.unquote(pw)};Encrypt=False",
        ]
    ):
        rows, error = _connect(env, f"loginonly{i}", conn)
        assert error is None, f"{conn.split('@')[-1]}: {error}"
        assert rows == [{"ok": 1}]


def test_freetds_urls_encrypt_without_validation_and_say_so_once(
    env, mssql_test_url: str, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    user, pw, host, port, db = _login(mssql_test_url)
    env.set("PYMSSQL_CONNECTION_STRING", f"mssql+pymssql://{user}:{pw}@{host}:{port}/{db}")
    env.set("PYMSSQL_POOL_SIZE", 1)
    env.set("PYMSSQL_MAX_OVERFLOW", 2)
    with caplog.at_level(logging.DEBUG, logger="dbflow"):
        manager = env.manager("pymssql")
        try:
            with manager.transaction(), manager.transaction(), manager.transaction():
                pass  # three connections of one pool
            assert manager.execute_query("SELECT 1 AS ok") == [{"ok": 1}]
        finally:
            manager.dispose()
    notices = [r for r in caplog.records if "certificate verification" in r.getMessage()]
    assert len(notices) == 1 and notices[0].levelno == logging.INFO
    # Nothing the driver says about TLS or server errors climbs above DEBUG.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_validating_tls_explains_a_rejected_certificate_in_dbflow_words(
    env, mssql_test_url: str, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    user, pw, host, port, db = _login(mssql_test_url)
    odbc18 = f"mssql+pyodbc://{user}:{pw}@{host}:{port}/{db}?driver=ODBC+Driver+18+for+SQL+Server"
    rows, error = _connect(env, "odbc18", odbc18)
    if error is None:
        # This server's certificate is trusted by the system roots: nothing to explain.
        assert rows == [{"ok": 1}]
    else:
        message = str(error)
        assert "certificate" in message and "TrustServerCertificate=true" in message
        assert "ca_file=" in message and "encrypt=no" in message
        for driver_word in ("Config::", "trust_cert", "tiberius", "native-tls", "rustls"):
            assert driver_word not in message, message
        assert urllib.parse.unquote(pw) not in message
    # Trusting it explicitly connects, and says once per pool that the server
    # is not authenticated.
    with caplog.at_level(logging.DEBUG, logger="dbflow"):
        rows, error = _connect(env, "odbc18trust", odbc18 + "&TrustServerCertificate=yes")
    assert error is None and rows == [{"ok": 1}]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "TrustServerCertificate=true" in warnings[0].getMessage()


def test_server_errors_are_raised_not_logged_above_debug(
    mdb: dbflow.DatabaseManager, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="dbflow"):
        with pytest.raises(dbflow.QueryError):
            mdb.execute_query("SELECT * FROM no_such_table_here")
    assert not [r for r in caplog.records if r.levelno > logging.DEBUG]


# ---- errors that mean the same thing everywhere --------------------------------


def test_a_deadlock_victim_is_retried(
    env, mssql_test_url: str, mssql_server: tuple[str, str]
) -> None:  # type: ignore[no-untyped-def]
    sleep = "EXEC pg_sleep 1" if mssql_server[1] == "babelfish" else "WAITFOR DELAY '00:00:01'"
    name = env.database(url=mssql_test_url, pool_size=2, pool_release_grace=0)
    db = env.manager(name)
    table = f"t_deadlock_{uuid.uuid4().hex[:8]}"
    db.execute_query(f"CREATE TABLE {table} (id int PRIMARY KEY, v int)")
    db.execute_query(f"INSERT INTO {table} VALUES (1, 0), (2, 0)")

    def crosswise(first: int, second: int) -> str:
        return (
            f"BEGIN TRANSACTION; UPDATE {table} SET v = v + 1 WHERE id = {first}; {sleep}; "
            f"UPDATE {table} SET v = v + 1 WHERE id = {second}; COMMIT TRANSACTION"
        )

    outcomes: list[Any] = []

    def run(first: int, second: int) -> None:
        try:
            db.execute_query_with_retry(crosswise(first, second), min_delay=0.1, max_delay=0.3)
            outcomes.append("ok")
        except Exception as e:  # reported below
            outcomes.append(e)

    try:
        threads = [
            threading.Thread(target=run, args=(1, 2)),
            threading.Thread(target=run, args=(2, 1)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert outcomes == ["ok", "ok"], outcomes
        # Both transactions took effect exactly once: the victim's first try
        # was rolled back by the server, its retry committed.
        assert db.execute_query(f"SELECT v FROM {table} ORDER BY id") == [{"v": 2}, {"v": 2}]
        assert db.get_metrics()["retries"] >= 1
    finally:
        db.execute_query(f"DROP TABLE {table}")
        db.dispose()


def test_the_deadlock_number_is_sql_servers(
    env, mssql_test_url: str, mssql_server: tuple[str, str]
) -> None:  # type: ignore[no-untyped-def]
    sleep = "EXEC pg_sleep 1" if mssql_server[1] == "babelfish" else "WAITFOR DELAY '00:00:01'"
    name = env.database(url=mssql_test_url, pool_size=2, pool_release_grace=0)
    db = env.manager(name)
    table = f"t_deadlock_{uuid.uuid4().hex[:8]}"
    db.execute_query(f"CREATE TABLE {table} (id int PRIMARY KEY, v int)")
    db.execute_query(f"INSERT INTO {table} VALUES (1, 0), (2, 0)")
    errors: list[dbflow.DatabaseError] = []

    def run(first: int, second: int) -> None:
        try:
            with db.transaction() as tx:
                tx.execute_query(f"UPDATE {table} SET v = v + 1 WHERE id = {first}")
                tx.execute_query(sleep)
                tx.execute_query(f"UPDATE {table} SET v = v + 1 WHERE id = {second}")
        except dbflow.DatabaseError as e:
            errors.append(e)

    try:
        threads = [
            threading.Thread(target=run, args=(1, 2)),
            threading.Thread(target=run, args=(2, 1)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert [e.error_number for e in errors] == [1205], errors
        # The victim's transaction left nothing behind; the other committed.
        assert sorted(r["v"] for r in db.execute_query(f"SELECT v FROM {table}")) == [1, 1]
        assert db.get_pool_status()["checked_out"] == 0
    finally:
        db.execute_query(f"DROP TABLE {table}")
        db.dispose()
