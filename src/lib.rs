//! dbflow: pooled, migrated, monitored PostgreSQL and SQL Server access for
//! Prefect flows. Everything below `python` is plain Rust and tested with
//! `cargo test`; `python` converts at the edge.

pub mod arrow;
pub mod backend;
pub mod config;
pub mod engine;
pub mod error;
pub mod feed;
pub mod metrics;
pub mod migrate;
pub mod pool;
pub mod procedure;
pub mod retry;
pub mod runtime;
pub mod sql;
pub mod telemetry;
pub mod value;
pub mod wait;

mod python;
