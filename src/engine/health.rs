//! A database's health: connection, a query, migrations, within a deadline.

use std::time::{Duration, Instant};

use super::Database;
use crate::backend::Statement;
use crate::migrate::Migrator;
use crate::value::Value;

/// What a health check found about migrations.
#[derive(Debug, Clone)]
pub enum MigrationHealth {
    NotChecked,
    ReadOnly,
    Status {
        current_version: Option<String>,
        pending: Vec<String>,
    },
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub struct Health {
    pub status: &'static str,
    pub connection: bool,
    pub query_test: bool,
    pub migrations: MigrationHealth,
    pub response_time: Duration,
    pub error: Option<String>,
}

use crate::telemetry;

impl Database {
    /// Connection test, query test and migration status, reported within
    /// the health deadline whatever the server does. Never fails.
    pub async fn health(&self) -> Health {
        let about = telemetry::About::new(self.config(), "health_check", telemetry::Subject::None);
        let span = telemetry::span(&about);
        let health = tracing::Instrument::instrument(self.checked_health(), span.clone()).await;
        span.record("dbflow.health.status", health.status);
        health
    }

    async fn checked_health(&self) -> Health {
        let started = Instant::now();
        let deadline = self.config().health_timeout;
        let remaining = || deadline.saturating_sub(started.elapsed());
        let mut health = Health {
            status: "unhealthy",
            connection: false,
            query_test: false,
            migrations: MigrationHealth::NotChecked,
            response_time: Duration::ZERO,
            error: None,
        };
        let late = |what: &str| {
            format!(
                "no {what} within the health deadline of {:.1} s",
                deadline.as_secs_f64()
            )
        };
        match tokio::time::timeout(remaining(), self.checkout("health_check")).await {
            Err(_) => health.error = Some(late("connection")),
            Ok(Err(e)) => health.error = Some(self.fail(e, "health_check").to_string()),
            Ok(Ok(mut conn)) => {
                health.connection = true;
                let probe = Statement {
                    sql: crate::sql::parse("SELECT 1 AS health_check", self.dialect()),
                    values: Vec::new(),
                };
                match tokio::time::timeout(remaining(), conn.query(&probe)).await {
                    Err(_) => health.error = Some(late("answer to SELECT 1")),
                    Ok(Err(e)) => health.error = Some(self.fail(e, "health_check").to_string()),
                    Ok(Ok(rows)) => health.query_test = rows.values.first() == Some(&Value::Int(1)),
                }
            }
        }
        if health.query_test {
            health.migrations = match Migrator::if_present(self, self.migrations_root.as_deref()) {
                Err(e) => MigrationHealth::Unavailable(e.to_string()),
                Ok(m) if !m.has_migrations() => MigrationHealth::ReadOnly,
                Ok(m) => match tokio::time::timeout(remaining(), m.status()).await {
                    Err(_) => MigrationHealth::Unavailable(late("migration status")),
                    Ok(Err(e)) => MigrationHealth::Unavailable(e.to_string()),
                    Ok(Ok(status)) => MigrationHealth::Status {
                        current_version: status.current_version,
                        pending: status.pending.into_iter().map(|p| p.0).collect(),
                    },
                },
            };
        }
        health.response_time = started.elapsed();
        let slow = health.response_time > self.config().health_slow;
        let pending = matches!(&health.migrations, MigrationHealth::Status { pending, .. } if !pending.is_empty());
        health.status = match (health.connection && health.query_test, slow || pending) {
            (false, _) => "unhealthy",
            (true, true) => "degraded",
            (true, false) => "healthy",
        };
        if health.status == "degraded" && health.error.is_none() {
            health.error = Some(if pending {
                "migrations are pending".to_owned()
            } else {
                format!(
                    "slow: {:.0} ms, above the {:.0} ms threshold",
                    health.response_time.as_secs_f64() * 1000.0,
                    self.config().health_slow.as_secs_f64() * 1000.0
                )
            });
        }
        if let Some(e) = &health.error {
            // The report carries the error; whoever asked decides whether to log it.
            tracing::debug!(database = %self.name(), status = health.status, "health check: {e}");
        }
        health
    }
}
