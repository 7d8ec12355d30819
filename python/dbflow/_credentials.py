"""The built-in token sources of ``<DB>_AUTH``, each an optional extra.

``builtin()`` is called once when a manager is made; the callable it returns
is called by the native core for every new connection (on a blocking thread,
with a deadline: ``<DB>_CREDENTIAL_TIMEOUT``) with the connection's host,
port and user, and returns the secret (``str``) or ``(secret, expires_on)``
with ``expires_on`` in epoch seconds, which the core reuses until five
minutes before it lapses.

- ``rds-iam`` (``pip install 'dbflow[rds-iam]'``): boto3's
  ``generate_db_auth_token`` for the connection's host, port and user, signed
  with the AWS credentials boto3 finds (environment, profile, instance role);
  the region is ``<DB>_AUTH_REGION``, else boto3's own (``AWS_REGION``). A
  token lasts 15 minutes and is made for every new connection (signing is
  local: no network call).
- ``entra`` (``pip install 'dbflow[entra]'``): azure-identity's
  ``DefaultAzureCredential``; on SQL Server the token goes in the login as
  TDS's federated-authentication token, on Azure Database for PostgreSQL it is
  the password.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dbflow.exceptions import ConfigurationError

#: The scopes Entra tokens are asked for, by database type.
ENTRA_SCOPES = {
    "sqlserver": "https://database.windows.net/.default",
    "postgresql": "https://ossrdbms-aad.database.windows.net/.default",
}
#: The port a token is signed for when the connection string names none.
DEFAULT_PORTS = {"postgresql": 5432, "sqlserver": 1433}

Source = Callable[[str | None, int | None, str | None], Any]


def builtin(auth: str, database_type: str, region: str | None, auth_key: str) -> Source:
    """The token source ``<DB>_AUTH`` names (``auth_key`` is that key, for messages)."""
    if auth == "rds-iam":
        return _rds_iam(database_type, region, auth_key)
    if auth == "entra":
        return _entra(database_type, auth_key)
    raise ConfigurationError(f"{auth_key}={auth} has no built-in token source")


def _rds_iam(database_type: str, region: str | None, auth_key: str) -> Source:
    if database_type != "postgresql":
        raise ConfigurationError(
            f"{auth_key}=rds-iam is for PostgreSQL on Amazon RDS or Aurora; RDS for SQL "
            "Server has no IAM login"
        )
    try:
        import boto3
    except ImportError:
        raise ConfigurationError(
            f"{auth_key}=rds-iam needs boto3: pip install 'dbflow[rds-iam]'"
        ) from None
    from botocore.exceptions import NoRegionError

    try:
        client = boto3.client("rds", region_name=region)
    except NoRegionError:
        raise ConfigurationError(
            f"{auth_key}=rds-iam needs the database's AWS region: set {auth_key}_REGION "
            "(or AWS_REGION)"
        ) from None
    port = DEFAULT_PORTS[database_type]

    def token(host: str | None, given_port: int | None, user: str | None) -> str:
        if not host or not user:
            raise ConfigurationError(
                "an RDS IAM token is signed for a host and a user: name both in the "
                "connection string"
            )
        return str(
            client.generate_db_auth_token(DBHostname=host, Port=given_port or port, DBUsername=user)
        )

    return token


def _entra(database_type: str, auth_key: str) -> Source:
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise ConfigurationError(
            f"{auth_key}=entra needs azure-identity: pip install 'dbflow[entra]'"
        ) from None
    credential = DefaultAzureCredential()
    scope = ENTRA_SCOPES[database_type]

    def token(host: str | None, port: int | None, user: str | None) -> tuple[str, float]:
        got = credential.get_token(scope)
        return got.token, float(got.expires_on)

    return token
