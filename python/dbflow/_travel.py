"""Managers that travel: a pickled ``DatabaseManager`` is what it is — the
database name, environment, flow name, env-file directory, migrations root
and a reference to its credentials block — never a connection or a secret.
Unpickled in another process (a Dask or Ray worker, another Prefect worker)
it attaches to that process's pool, created on first use, and resolves its
password there again from the environment, the env file or the block.

Prefect's default cache policy hashes task inputs by pickling them, so the
ticket is also what is hashed: the same manager gives the same key, and no
password is part of it. A credentials block travels by its saved name
(``DatabaseCredentials.load(name)`` where it lands); an unsaved block stays in
the process that made it, and a manager carrying one that arrives elsewhere
raises ``ConfigurationError`` saying to save the block. Settings given in
code (``ConfigManager.with_settings``) stay behind the same way: in another
process the manager would otherwise quietly use whatever that process's env
files say.
"""

from __future__ import annotations

import importlib
import itertools
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbflow.exceptions import ConfigurationError

# Unsaved credentials blocks, configs with settings given in code and
# password providers, of this process, by ticket (never pickled).
_LOCAL_BLOCKS: dict[str, Any] = {}
_LOCAL_IDS: dict[int, str] = {}
_LOCK = threading.Lock()
_COUNTER = itertools.count(1)


@dataclass(frozen=True)
class Ticket:
    database_name: str
    environment: str
    flow_name: str | None
    envs_dir: str | None
    migrations_dir: str | None
    #: ("saved", module, class, name) or ("local", pid, key) or None.
    credentials: tuple[Any, ...] | None
    #: A ConfigManager with settings given in code: ("local", pid, key, the
    #: settings' names) — it stays in this process, like an unsaved block.
    config: tuple[Any, ...] | None = None
    #: A ``password_provider`` callable: ("local", pid, key) — it stays in
    #: this process (it may close over a secret or a client).
    password_provider: tuple[Any, ...] | None = None

    @staticmethod
    def of(
        manager: Any, config: Any, migrations_dir: Any, credentials: Any, provider: Any = None
    ) -> Ticket:
        env_file = getattr(config, "env_file", None) if config is not None else None
        in_code = config.settings_in_code() if config is not None else []
        return Ticket(
            database_name=manager.database_name,
            environment=manager.environment,
            flow_name=manager.flow_name,
            envs_dir=str(Path(env_file).resolve().parent) if env_file else None,
            migrations_dir=str(Path(migrations_dir).resolve()) if migrations_dir else None,
            credentials=_reference(credentials),
            config=(*_local(config), tuple(in_code)) if in_code else None,
            password_provider=_local(provider) if provider is not None else None,
        )


def _reference(block: Any) -> tuple[Any, ...] | None:
    if block is None:
        return None
    name = getattr(block, "_block_document_name", None)
    if name and not getattr(block, "_is_anonymous", False):
        kind = type(block)
        return ("saved", kind.__module__, kind.__qualname__, name)
    return _local(block)


def _local(thing: Any) -> tuple[Any, ...]:
    """A reference to `thing` valid in this process only."""
    with _LOCK:
        key = _LOCAL_IDS.get(id(thing))
        if key is None:
            key = f"local-{next(_COUNTER)}"
            _LOCAL_IDS[id(thing)] = key
            _LOCAL_BLOCKS[key] = thing
    return ("local", os.getpid(), key)


def _credentials(ticket: Ticket) -> Any:
    ref = ticket.credentials
    if ref is None:
        return None
    if ref[0] == "saved":
        _, module, qualname, name = ref
        kind = getattr(importlib.import_module(module), qualname)
        return kind.load(name)
    return _here(
        ticket,
        ref,
        "with an unsaved credentials block, which does not travel (it holds the password); "
        "save the block (DatabaseCredentials(...).save('name')) and create the manager from "
        "DatabaseCredentials.load('name')",
    )


def _here(ticket: Ticket, ref: tuple[Any, ...], why: str) -> Any:
    """The thing `ref` names if it was made in this process, else the
    ConfigurationError saying `why` it stayed behind."""
    pid, key = ref[1], ref[2]
    thing = _LOCAL_BLOCKS.get(key) if pid == os.getpid() else None
    if thing is None:
        raise ConfigurationError(
            f"[{ticket.database_name}] DatabaseManager() failed: this manager was made in "
            f"another process {why}",
            database=ticket.database_name,
            operation="DatabaseManager()",
        )
    return thing


def _config_in_code(ticket: Ticket, ref: tuple[Any, ...]) -> Any:
    return _here(
        ticket,
        ref,
        "from settings given in code (ConfigManager.with_settings: "
        f"{', '.join(ref[3])}), which do not travel (they may hold a password); put them "
        "in the env file or environment of the process that runs this, or use a saved "
        "DatabaseCredentials block",
    )


def _provider(ticket: Ticket) -> Any:
    ref = ticket.password_provider
    if ref is None:
        return None
    return _here(
        ticket,
        ref,
        "with password_provider=, which does not travel (a callable may hold a secret or a "
        "client); set the database's PASSWORD_COMMAND or AUTH in the env file or environment "
        "of the process that runs this, or make the manager there",
    )


def arrive(kind: type, ticket: Ticket) -> Any:
    """Rebuild a pickled manager in this process (attached to its pool)."""
    from dbflow import ConfigManager

    config = None
    if ticket.config is not None:
        config = _config_in_code(ticket, ticket.config)
    elif ticket.envs_dir is not None and Path(ticket.envs_dir).is_dir():
        config = ConfigManager(ticket.environment, ticket.flow_name, ticket.envs_dir)
    return kind(
        ticket.database_name,
        environment=None if config is not None else ticket.environment,
        flow_name=None if config is not None else ticket.flow_name,
        config=config,
        migrations_dir=ticket.migrations_dir,
        credentials=_credentials(ticket),
        password_provider=_provider(ticket),
    )
