//! One fake "server": the committed data every connection to the same host
//! shares, its session locks, its sessions, and the faults a test injects.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::Notify;

use super::exec::Data;
use super::parse::Stmt;
use crate::error::{Error, Result};
use crate::value::Value;

/// A fault a test arms for statements whose text contains a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The connection was reset before the request left: no byte is
    /// written, nothing runs (the seam must call it `not_sent`).
    ResetBeforeSend,
    /// The request was written and ran (committed in autocommit), then the
    /// connection was reset before the answer: the seam must call it
    /// `maybe_executed`.
    ResetAfterRun,
    /// The request was written and the server never answers.
    Hang,
    /// The server refuses to run a statement prepared before a DDL change
    /// ("cached plan must not change result type"), before running it.
    StalePlan,
}

struct Armed {
    pattern: String,
    fault: Fault,
    times: u32,
}

#[derive(Default)]
pub(super) struct State {
    pub data: Data,
    /// Session lock name → (holding session, depth).
    locks: HashMap<String, (u64, u32)>,
    next_session: u64,
    open: usize,
    max_open: usize,
    connects: u64,
    fail_connects: u32,
    armed: Vec<Armed>,
    killed: HashSet<u64>,
    /// Every request that reached the server, as sent.
    log: Vec<String>,
}

/// A fake database server, shared by every connection to its host.
pub struct Server {
    state: Mutex<State>,
    lock_freed: Notify,
}

/// The server for `host` (created on first use), process-wide.
pub fn server(host: &str) -> Arc<Server> {
    static SERVERS: OnceLock<Mutex<HashMap<String, Arc<Server>>>> = OnceLock::new();
    let servers = SERVERS.get_or_init(Default::default);
    let mut servers = servers.lock().unwrap_or_else(|p| p.into_inner());
    servers
        .entry(host.to_owned())
        .or_insert_with(|| {
            Arc::new(Server {
                state: Mutex::new(State::default()),
                lock_freed: Notify::new(),
            })
        })
        .clone()
}

impl Server {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ----- what tests arm and read -----

    /// The next `n` connection attempts are refused.
    pub fn fail_connects(&self, n: u32) {
        self.state().fail_connects = n;
    }

    /// The next `times` requests whose text contains `pattern` meet `fault`.
    pub fn arm(&self, pattern: &str, fault: Fault, times: u32) {
        self.state().armed.push(Armed {
            pattern: pattern.to_owned(),
            fault,
            times,
        });
    }

    /// Every open session is reset by the server (a restart, a failover):
    /// each one's next request fails before anything is written.
    pub fn kill_sessions(&self) {
        let mut st = self.state();
        let all: Vec<u64> = (0..st.next_session).collect();
        st.killed.extend(all);
    }

    /// How many requests containing `pattern` reached the server.
    pub fn executed(&self, pattern: &str) -> usize {
        self.state()
            .log
            .iter()
            .filter(|s| s.contains(pattern))
            .count()
    }

    /// Sessions open now, and the most ever open at once.
    pub fn sessions(&self) -> (usize, usize) {
        let st = self.state();
        (st.open, st.max_open)
    }

    /// Successful connection attempts so far.
    pub fn connects(&self) -> u64 {
        self.state().connects
    }

    /// The committed rows of `table` (`None`: no such table).
    pub fn rows(&self, table: &str) -> Option<Vec<Vec<Value>>> {
        self.state().data.tables.get(table).map(|t| t.rows.clone())
    }

    /// Whether `table` exists in the committed data.
    pub fn has_table(&self, table: &str) -> bool {
        self.state().data.tables.contains_key(table)
    }

    // ----- what connections do -----

    pub(super) fn open_session(&self) -> Result<u64> {
        let mut st = self.state();
        if st.fail_connects > 0 {
            st.fail_connects -= 1;
            return Err(Error::connection(
                "connection refused (a fault the test armed)",
            ));
        }
        let id = st.next_session;
        st.next_session += 1;
        st.connects += 1;
        st.open += 1;
        st.max_open = st.max_open.max(st.open);
        Ok(id)
    }

    pub(super) fn close_session(&self, id: u64) {
        let mut st = self.state();
        st.open -= 1;
        st.killed.remove(&id);
        st.locks.retain(|_, (holder, _)| *holder != id);
        drop(st);
        self.lock_freed.notify_waiters();
    }

    pub(super) fn killed(&self, id: u64) -> bool {
        self.state().killed.contains(&id)
    }

    /// The fault armed for `text`, used up once.
    pub(super) fn fault_for(&self, text: &str) -> Option<Fault> {
        let mut st = self.state();
        let at = st
            .armed
            .iter()
            .position(|a| a.times > 0 && text.contains(&a.pattern))?;
        st.armed[at].times -= 1;
        let fault = st.armed[at].fault;
        if st.armed[at].times == 0 {
            st.armed.remove(at);
        }
        Some(fault)
    }

    pub(super) fn record(&self, text: &str) {
        self.state().log.push(text.to_owned());
    }

    /// Replay a committed transaction's writes on the server's data, all or
    /// none (a conflict with a transaction committed meanwhile fails it).
    pub(super) fn commit(&self, log: &[(Stmt, Vec<Value>)]) -> Result<()> {
        let mut st = self.state();
        let mut data = st.data.clone();
        for (stmt, params) in log {
            if let Err(mut e) = data.run(stmt, params) {
                e.message = format!("could not serialize access: {}", e.message);
                e.sqlstate = Some("40001".to_owned());
                e.transient = true;
                return Err(e);
            }
        }
        st.data = data;
        Ok(())
    }

    /// Take the session lock `name` for session `id`, waiting while another
    /// session holds it (re-entrant, as `pg_advisory_lock` is).
    pub(super) async fn lock(&self, id: u64, name: &str) {
        loop {
            let freed = self.lock_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut st = self.state();
                match st.locks.get_mut(name) {
                    None => {
                        st.locks.insert(name.to_owned(), (id, 1));
                        return;
                    }
                    Some((holder, depth)) if *holder == id => {
                        *depth += 1;
                        return;
                    }
                    Some(_) => {}
                }
            }
            freed.await;
        }
    }

    /// Release one level of `name`; false when this session did not hold it.
    pub(super) fn unlock(&self, id: u64, name: &str) -> bool {
        let mut st = self.state();
        let held = match st.locks.get_mut(name) {
            Some((holder, depth)) if *holder == id => {
                *depth -= 1;
                if *depth == 0 {
                    st.locks.remove(name);
                }
                true
            }
            _ => false,
        };
        drop(st);
        self.lock_freed.notify_waiters();
        held
    }
}
