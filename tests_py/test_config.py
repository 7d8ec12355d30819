"""Configuration: env files, lookup order, type detection, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

import dbflow
from dbflow import ConfigManager, ConfigurationError


def write_env(tmp_path: Path, text: str, environment: str = "development") -> Path:
    (tmp_path / f".env.{environment}").write_text(text)
    return tmp_path


def test_lookup_order_flow_beats_global_and_process_env_beats_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env(
        tmp_path,
        "DEVELOPMENT_GLOBAL_RPA_DB_POOL_SIZE=3\n"
        "DEVELOPMENT_RPA1_RPA_DB_POOL_SIZE=4\n"
        "DEVELOPMENT_GLOBAL_DATABASE_TIMEOUT=30\n",
    )
    monkeypatch.setenv("DEVELOPMENT_GLOBAL_DATABASE_TIMEOUT", "60")
    plain = ConfigManager(envs_dir=tmp_path)
    flow = ConfigManager(flow_name="rpa1", envs_dir=tmp_path)
    assert plain.get_variable("rpa_db_pool_size") == "3"
    assert flow.get_variable("rpa_db_pool_size") == "4"
    assert plain.get_variable("database_timeout") == "60"
    assert plain.get_variable("nope", "fallback") == "fallback"
    assert flow.candidate_keys("x") == ["DEVELOPMENT_RPA1_X", "DEVELOPMENT_GLOBAL_X"]


def test_environment_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBFLOW_ENVIRONMENT", raising=False)
    monkeypatch.setenv("PREFECT_ENVIRONMENT", "Production")
    assert ConfigManager(envs_dir=tmp_path).environment == "production"
    monkeypatch.setenv("DBFLOW_ENVIRONMENT", "staging")
    assert ConfigManager(envs_dir=tmp_path).environment == "staging"
    assert ConfigManager("test", envs_dir=tmp_path).environment == "test"
    monkeypatch.delenv("DBFLOW_ENVIRONMENT")
    monkeypatch.delenv("PREFECT_ENVIRONMENT")
    assert ConfigManager(envs_dir=tmp_path).environment == "development"


def test_default_envs_dirs_core_envs_then_envs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DBFLOW_ENVS_DIR", raising=False)
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / ".env.development").write_text("DEVELOPMENT_GLOBAL_A=from_envs\n")
    assert ConfigManager("development").get_variable("a") == "from_envs"
    (tmp_path / "core" / "envs").mkdir(parents=True)
    (tmp_path / "core" / "envs" / ".env.development").write_text("DEVELOPMENT_GLOBAL_A=from_core\n")
    assert ConfigManager("development").get_variable("a") == "from_core"


def test_interpolation_and_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPA_DB_PASSWORD", "pa:ss@word")
    write_env(
        tmp_path,
        "DEVELOPMENT_GLOBAL_RPA_DB_CONNECTION_STRING=postgresql://u:${RPA_DB_PASSWORD}@h:5432/rpa_db\n",
    )
    cfg = ConfigManager(envs_dir=tmp_path)
    assert cfg.get_secret("rpa_db_connection_string") == "postgresql://u:pa:ss@word@h:5432/rpa_db"
    resolved = cfg.database_config("rpa_db")
    assert resolved["connection_string"] == "postgresql://u:***@h:5432/rpa_db"
    assert "pa:ss@word" not in repr(resolved)
    assert "pa:ss@word" not in repr(cfg)


def test_unset_interpolation_variable_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MISSING_PW", raising=False)
    write_env(tmp_path, "DEVELOPMENT_GLOBAL_X_CONNECTION_STRING=postgresql://u:${MISSING_PW}@h/x\n")
    with pytest.raises(ConfigurationError, match="MISSING_PW"):
        dbflow.DatabaseManager("x", config=ConfigManager(envs_dir=tmp_path))


def test_missing_connection_string_raised_by_constructor(tmp_path: Path) -> None:
    write_env(tmp_path, "")
    with pytest.raises(ConfigurationError) as info:
        dbflow.DatabaseManager(
            "SurveyHub", config=ConfigManager(flow_name="rpa1", envs_dir=tmp_path)
        )
    message = str(info.value)
    assert "DEVELOPMENT_GLOBAL_SURVEYHUB_CONNECTION_STRING" in message
    assert "DEVELOPMENT_RPA1_SURVEYHUB_CONNECTION_STRING" in message
    assert str(tmp_path / ".env.development") in message
    assert info.value.database == "SurveyHub"


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql"),
        ("postgres://u:p@h/db", "postgresql"),
        ("postgresql+psycopg2://u:p@h/db?sslmode=require&connect_timeout=5", "postgresql"),
        ("postgresql:///db?host=/var/run/postgresql", "postgresql"),
    ],
)
def test_type_detected_from_connection_string(tmp_path: Path, conn: str, expected: str) -> None:
    write_env(tmp_path, f"DEVELOPMENT_GLOBAL_X_CONNECTION_STRING={conn}\n")
    cfg = ConfigManager(envs_dir=tmp_path)
    assert cfg.database_config("x")["database_type"] == expected
    # Constructing a manager does no network I/O, even for unreachable hosts.
    manager = dbflow.DatabaseManager("x", config=cfg)
    assert manager.database_type == expected
    assert manager.get_pool_status()["connections_opened"] == 0
    manager.dispose()


def test_contradictory_type_names_the_key(tmp_path: Path) -> None:
    write_env(
        tmp_path,
        "DEVELOPMENT_GLOBAL_X_TYPE=sqlserver\nDEVELOPMENT_GLOBAL_X_CONNECTION_STRING=postgresql://h/x\n",
    )
    with pytest.raises(ConfigurationError, match="DEVELOPMENT_GLOBAL_X_TYPE"):
        dbflow.DatabaseManager("x", config=ConfigManager(envs_dir=tmp_path))


def test_undetectable_type_asks_for_the_type_key(tmp_path: Path) -> None:
    write_env(tmp_path, "DEVELOPMENT_GLOBAL_X_CONNECTION_STRING=mysql://h/x\n")
    with pytest.raises(ConfigurationError, match="DEVELOPMENT_GLOBAL_X_TYPE"):
        dbflow.DatabaseManager("x", config=ConfigManager(envs_dir=tmp_path))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("X_POOL_SIZE", "many"),
        ("X_POOL_SIZE", "0"),
        ("X_MAX_OVERFLOW", "-1"),
        ("X_POOL_TIMEOUT", "soon"),
        ("X_POOL_PRE_PING", "maybe"),
        ("X_AUTO_MIGRATE", "sometimes"),
        ("X_PREPARED_STATEMENTS", "sometimes"),
    ],
)
def test_bad_settings_name_their_key(tmp_path: Path, key: str, value: str) -> None:
    write_env(
        tmp_path,
        f"DEVELOPMENT_GLOBAL_X_CONNECTION_STRING=postgresql://h/x\nDEVELOPMENT_GLOBAL_{key}={value}\n",
    )
    with pytest.raises(ConfigurationError, match=f"DEVELOPMENT_GLOBAL_{key}"):
        dbflow.DatabaseManager("x", config=ConfigManager(envs_dir=tmp_path))


def test_unknown_url_option_is_rejected_by_name(tmp_path: Path) -> None:
    write_env(tmp_path, "DEVELOPMENT_GLOBAL_X_CONNECTION_STRING=postgresql://h/x?sslmdoe=require\n")
    with pytest.raises(ConfigurationError, match="sslmdoe"):
        dbflow.DatabaseManager("x", config=ConfigManager(envs_dir=tmp_path))


def test_pool_settings_resolved(tmp_path: Path) -> None:
    write_env(
        tmp_path,
        "DEVELOPMENT_GLOBAL_X_CONNECTION_STRING=postgresql://h/x\n"
        "DEVELOPMENT_GLOBAL_CONNECTION_POOL_SIZE=3\n"
        "DEVELOPMENT_GLOBAL_X_MAX_OVERFLOW=2\n"
        "DEVELOPMENT_GLOBAL_X_POOL_TIMEOUT=7.5\n"
        "DEVELOPMENT_GLOBAL_X_POOL_PRE_PING=false\n"
        "DEVELOPMENT_GLOBAL_X_POOL_RECYCLE=600\n",
    )
    c = ConfigManager(envs_dir=tmp_path).database_config("x")
    assert (c["pool_size"], c["max_overflow"], c["pool_timeout"]) == (3, 2, 7.5)
    assert c["pool_pre_ping"] is False
    assert c["pool_recycle"] == 600
    assert c["database_timeout"] == 30


def test_password_never_in_repr(tmp_path: Path) -> None:
    write_env(tmp_path, "DEVELOPMENT_GLOBAL_X_CONNECTION_STRING=postgresql://u:hunter2secret@h/x\n")
    manager = dbflow.DatabaseManager("x", config=ConfigManager(envs_dir=tmp_path))
    assert "hunter2secret" not in repr(manager)
    assert "hunter2secret" not in str(manager)
    assert "hunter2secret" not in manager.connection_string
    manager.dispose()


def test_config_and_environment_must_agree(tmp_path: Path) -> None:
    write_env(tmp_path, "DEVELOPMENT_GLOBAL_X_CONNECTION_STRING=postgresql://h/x\n")
    with pytest.raises(ConfigurationError, match="contradict"):
        dbflow.DatabaseManager(
            "x", environment="production", config=ConfigManager(envs_dir=tmp_path)
        )


def test_variables_defined_in_the_same_file_fill_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHOP_DB_PASSWORD", raising=False)
    monkeypatch.delenv("SHOP_HOST", raising=False)
    write_env(
        tmp_path,
        "SHOP_HOST=db.internal\n"
        "SHOP_DB_PASSWORD=file-pw\n"
        "SHOP_URL=postgresql://u:${SHOP_DB_PASSWORD}@${SHOP_HOST}/shop\n"
        "DEVELOPMENT_GLOBAL_SHOP_CONNECTION_STRING=${SHOP_URL}\n",
    )
    cfg = ConfigManager(envs_dir=tmp_path)
    assert cfg.get_secret("shop_connection_string") == "postgresql://u:file-pw@db.internal/shop"
    # The process environment still wins, as with python-dotenv.
    monkeypatch.setenv("SHOP_DB_PASSWORD", "process-pw")
    cfg = ConfigManager(envs_dir=tmp_path)
    assert cfg.get_secret("shop_connection_string") == "postgresql://u:process-pw@db.internal/shop"


def test_a_reference_cycle_and_an_undefined_variable_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("A", raising=False)
    monkeypatch.delenv("B", raising=False)
    monkeypatch.delenv("NOWHERE", raising=False)
    write_env(
        tmp_path,
        "A=${B}\nB=${A}\n"
        "DEVELOPMENT_GLOBAL_LOOP_CONNECTION_STRING=postgresql://u:${A}@h/x\n"
        "DEVELOPMENT_GLOBAL_GONE_CONNECTION_STRING=postgresql://u:${NOWHERE}@h/x\n",
    )
    cfg = ConfigManager(envs_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="refers back to itself"):
        cfg.database_config("loop")
    with pytest.raises(ConfigurationError) as info:
        cfg.database_config("gone")
    assert "NOWHERE" in str(info.value)
    assert str(tmp_path / ".env.development") in str(info.value)


def test_misspelt_settings_are_warned_about_with_the_key_meant(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_env(
        tmp_path,
        "DEVELOPMENT_GLOBAL_SHOP_CONNECTION_STRING=postgresql://u:p@127.0.0.1:1/shop\n"
        "DEVELOPMENT_GLOBAL_SHOP_QUERY_TIMOUT=1\n",
    )
    with caplog.at_level("WARNING", logger="dbflow"):
        db = dbflow.DatabaseManager("shop", config=ConfigManager(envs_dir=tmp_path))
        db.close()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(
        "DEVELOPMENT_GLOBAL_SHOP_QUERY_TIMOUT" in m
        and "did you mean DEVELOPMENT_GLOBAL_SHOP_QUERY_TIMEOUT?" in m
        for m in warned
    ), warned
    assert ConfigManager(envs_dir=tmp_path).unknown_keys() == [
        "DEVELOPMENT_GLOBAL_SHOP_QUERY_TIMOUT is not a dbflow setting; "
        "did you mean DEVELOPMENT_GLOBAL_SHOP_QUERY_TIMEOUT?"
    ]


def test_a_misspelt_connection_key_is_named_when_the_database_is_missing(tmp_path: Path) -> None:
    write_env(tmp_path, "DEVELOPMENT_GLOBAL_SHOP_CONECTION_STRING=postgresql://u:p@h/shop\n")
    with pytest.raises(ConfigurationError) as info:
        dbflow.DatabaseManager("shop", config=ConfigManager(envs_dir=tmp_path))
    assert "did you mean DEVELOPMENT_GLOBAL_SHOP_CONNECTION_STRING?" in str(info.value)


def test_process_environment_keys_of_other_programs_are_not_suspects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env(tmp_path, "")
    monkeypatch.setenv("DEVELOPMENT_TOOLS_HOME", "/opt/x")
    monkeypatch.setenv("DEVELOPMENT_GLOBAL_SHOP_POOL_SIZ", "3")
    assert ConfigManager(envs_dir=tmp_path).unknown_keys() == [
        "DEVELOPMENT_GLOBAL_SHOP_POOL_SIZ is not a dbflow setting; "
        "did you mean DEVELOPMENT_GLOBAL_SHOP_POOL_SIZE?"
    ]


def test_paths_in_messages_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default env dirs are relative to the working directory: say which."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DBFLOW_ENVS_DIR", raising=False)
    with pytest.raises(ConfigurationError) as info:
        dbflow.DatabaseManager("nowhere_db", environment="development")
    assert str(tmp_path / "core" / "envs" / ".env.development") in str(info.value)
    assert str(tmp_path / "envs" / ".env.development") in str(info.value)


def test_a_misspelt_database_name_is_met_with_the_one_meant(env) -> None:  # type: ignore[no-untyped-def]
    env.database("rpa_db")
    with pytest.raises(dbflow.ConfigurationError, match="did you mean 'rpa_db'") as info:
        env.manager("rpa_bd")
    assert "TEST_GLOBAL_RPA_BD_CONNECTION_STRING" in str(info.value)
    with pytest.raises(dbflow.ConfigurationError, match="configured here: rpa_db"):
        env.manager("crm")
