"""Type-checked (not run): the real managers and the mocks must satisfy
DatabaseManagerProtocol and AsyncDatabaseManagerProtocol. mypy, in the test
command, fails if any of them drifts."""

from __future__ import annotations

from dbflow import (
    AsyncDatabaseManager,
    AsyncDatabaseManagerProtocol,
    AsyncTransactionProtocol,
    DatabaseManager,
    DatabaseManagerProtocol,
    TransactionProtocol,
)
from dbflow.testing import AsyncMockDatabaseManager, MockDatabaseManager, MockTransaction


def real(db: DatabaseManager) -> DatabaseManagerProtocol:
    return db


def mock(db: MockDatabaseManager) -> DatabaseManagerProtocol:
    return db


def real_transaction(db: DatabaseManager) -> TransactionProtocol:
    return db.transaction()


def mock_transaction(tx: MockTransaction) -> TransactionProtocol:
    return tx


def real_async(db: AsyncDatabaseManager) -> AsyncDatabaseManagerProtocol:
    return db


def mock_async(db: AsyncMockDatabaseManager) -> AsyncDatabaseManagerProtocol:
    return db


def real_async_transaction(db: AsyncDatabaseManager) -> AsyncTransactionProtocol:
    return db.transaction()


def mock_async_transaction(db: AsyncMockDatabaseManager) -> AsyncTransactionProtocol:
    return db.transaction()
