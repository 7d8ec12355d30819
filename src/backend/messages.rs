//! The server's messages to the caller (SQL Server's `PRINT` and
//! `RAISERROR` up to severity 10, PostgreSQL's `RAISE NOTICE`): each
//! backend's driver keeps them; the seam takes them after every operation,
//! logs them through the `dbflow` logger with the database's name, and
//! keeps them for the operation that returns them (`call_procedure`,
//! `execute_query_sets`) or for the error that ends it.

/// One message as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    pub text: String,
    /// PostgreSQL's `WARNING` (logged as a warning, not as information).
    pub warning: bool,
}

/// At most this many messages of one operation are logged; the rest are
/// counted in one line (they are all in the result or the error).
pub const LOGGED_PER_OPERATION: usize = 50;

/// At most this many messages of one operation are kept (a procedure that
/// prints in a loop must not exhaust memory); the drivers keep as many.
pub const KEPT_PER_OPERATION: usize = 10_000;

/// One operation's messages.
#[derive(Debug, Default)]
pub struct Messages {
    kept: Vec<String>,
    /// Beyond [`KEPT_PER_OPERATION`], counted only.
    dropped: u64,
    logged: usize,
}

impl Messages {
    /// A new operation begins.
    pub fn clear(&mut self) {
        self.kept.clear();
        self.dropped = 0;
        self.logged = 0;
    }

    /// Take what a driver kept (`dropped`: how many it could not), logging
    /// up to the cap.
    pub fn add(&mut self, database: &str, taken: Vec<ServerMessage>, dropped: u64) {
        for message in taken {
            if self.logged < LOGGED_PER_OPERATION {
                log(database, &message);
            }
            self.logged += 1;
            if self.kept.len() < KEPT_PER_OPERATION {
                self.kept.push(message.text);
            } else {
                self.dropped += 1;
            }
        }
        self.dropped += dropped;
        self.logged += dropped as usize;
    }

    /// The operation ended: one line for what was not logged, and the
    /// messages kept (with a last one saying how many were not).
    pub fn finish(&mut self, database: &str) -> Vec<String> {
        if self.logged > LOGGED_PER_OPERATION {
            tracing::info!(
                target: "dbflow::server",
                "[{database}] ... and {} more server messages not logged \
                 (ProcedureResult.messages and the error's .messages have them all)",
                self.logged - LOGGED_PER_OPERATION
            );
        }
        self.logged = 0;
        let mut kept = std::mem::take(&mut self.kept);
        if self.dropped > 0 {
            kept.push(format!(
                "... and {} more server messages not kept (at most {KEPT_PER_OPERATION} are)",
                self.dropped
            ));
            self.dropped = 0;
        }
        kept
    }
}

fn log(database: &str, message: &ServerMessage) {
    if message.warning {
        tracing::warn!(target: "dbflow::server", "[{database}] {}", message.text);
    } else {
        tracing::info!(target: "dbflow::server", "[{database}] {}", message.text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(n: usize) -> Vec<ServerMessage> {
        (0..n)
            .map(|i| ServerMessage {
                text: format!("line {i}"),
                warning: false,
            })
            .collect()
    }

    #[test]
    fn all_are_kept_up_to_the_bound_and_the_rest_are_counted() {
        let mut m = Messages::default();
        m.add("db", messages(KEPT_PER_OPERATION + 5), 7);
        let kept = m.finish("db");
        assert_eq!(kept.len(), KEPT_PER_OPERATION + 1);
        assert_eq!(kept[0], "line 0");
        assert!(kept
            .last()
            .unwrap()
            .contains("12 more server messages not kept"));
        assert!(m.finish("db").is_empty());
    }

    #[test]
    fn clear_starts_a_new_operation() {
        let mut m = Messages::default();
        m.add("db", messages(3), 0);
        m.clear();
        m.add("db", messages(1), 0);
        assert_eq!(m.finish("db"), ["line 0"]);
    }
}
