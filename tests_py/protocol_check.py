"""Type-checked (not run): the real manager and the mock must both satisfy
DatabaseManagerProtocol. mypy, in the test command, fails if either drifts."""

from __future__ import annotations

from dbflow import DatabaseManager, DatabaseManagerProtocol, TransactionProtocol
from dbflow.testing import MockDatabaseManager, MockTransaction


def real(db: DatabaseManager) -> DatabaseManagerProtocol:
    return db


def mock(db: MockDatabaseManager) -> DatabaseManagerProtocol:
    return db


def real_transaction(db: DatabaseManager) -> TransactionProtocol:
    return db.transaction()


def mock_transaction(tx: MockTransaction) -> TransactionProtocol:
    return tx
