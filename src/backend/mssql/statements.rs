//! Statements prepared on one SQL Server connection, by text and
//! parameter declarations, so a repeated statement runs by its handle
//! (`sp_execute`) instead of sending and parsing its text again
//! (`sp_executesql`). Measured on Babelfish 4.2, a single-row INSERT costs
//! the server about 185 µs through `sp_executesql` and 14 µs by handle
//! (issue #29); SQL Server skips its plan-cache lookup by text. The first
//! run prepares and runs in one request (`sp_prepexec`), as Microsoft's
//! JDBC driver does by default.

use std::collections::HashMap;

/// At most this many statements stay prepared per connection; the least
/// recently used beyond it are unprepared.
pub(super) const CAPACITY: usize = 256;

pub(super) struct Handles {
    enabled: bool,
    capacity: usize,
    /// key -> (handle, last use).
    prepared: HashMap<String, (i32, u64)>,
    clock: u64,
    /// Handles dropped from the map, to unprepare on the server.
    evicted: Vec<i32>,
}

impl Handles {
    pub(super) fn new(enabled: bool, capacity: usize) -> Handles {
        Handles {
            enabled,
            capacity,
            prepared: HashMap::new(),
            clock: 0,
            evicted: Vec::new(),
        }
    }

    /// Whether statements are prepared at all (`PREPARED_STATEMENTS`).
    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The key of a statement: its text and the declarations of the values
    /// it is sent with (a handle prepared for `nvarchar(4000)` must not
    /// receive an `nvarchar(max)`).
    pub(super) fn key(sql: &str, declared: &str) -> String {
        let mut key = String::with_capacity(sql.len() + declared.len() + 1);
        key.push_str(declared);
        key.push('\0');
        key.push_str(sql);
        key
    }

    /// The handle of a prepared statement (marks it used).
    pub(super) fn get(&mut self, key: &str) -> Option<i32> {
        self.clock += 1;
        let now = self.clock;
        self.prepared.get_mut(key).map(|(handle, used)| {
            *used = now;
            *handle
        })
    }

    /// Keep a new handle; the least recently used one goes when full.
    pub(super) fn insert(&mut self, key: String, handle: i32) {
        self.clock += 1;
        if let Some((old, _)) = self.prepared.insert(key, (handle, self.clock)) {
            self.evicted.push(old);
        }
        if self.prepared.len() > self.capacity {
            let oldest = self
                .prepared
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some((handle, _)) = oldest.and_then(|k| self.prepared.remove(&k)) {
                self.evicted.push(handle);
            }
        }
    }

    /// A handle prepared but never kept: to unprepare.
    pub(super) fn evict(&mut self, handle: i32) {
        self.evicted.push(handle);
    }

    /// The T-SQL that unprepares the evicted handles, if any (taken).
    pub(super) fn unprepare_sql(&mut self) -> Option<String> {
        if self.evicted.is_empty() {
            return None;
        }
        let sql = self
            .evicted
            .drain(..)
            .map(|h| format!("EXEC sp_unprepare {h};"))
            .collect::<Vec<_>>()
            .join(" ");
        Some(sql)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.prepared.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_found_by_its_text_and_declarations() {
        let mut handles = Handles::new(true, 4);
        let int = Handles::key("SELECT @P1", "@P1 int");
        let text = Handles::key("SELECT @P1", "@P1 nvarchar(4000)");
        handles.insert(int.clone(), 1);
        assert_eq!(handles.get(&int), Some(1));
        assert_eq!(
            handles.get(&text),
            None,
            "other declarations, other statement"
        );
        assert_eq!(handles.unprepare_sql(), None);
    }

    #[test]
    fn the_least_recently_used_is_unprepared_when_full() {
        let mut handles = Handles::new(true, 2);
        let (a, b, c) = (
            Handles::key("a", ""),
            Handles::key("b", ""),
            Handles::key("c", ""),
        );
        handles.insert(a.clone(), 1);
        handles.insert(b.clone(), 2);
        assert_eq!(handles.get(&a), Some(1)); // b is now the oldest use
        handles.insert(c.clone(), 3);
        assert_eq!(handles.len(), 2);
        assert_eq!(handles.get(&b), None);
        assert_eq!(handles.get(&a), Some(1));
        assert_eq!(
            handles.unprepare_sql().as_deref(),
            Some("EXEC sp_unprepare 2;")
        );
        assert_eq!(handles.unprepare_sql(), None, "taken once");
    }

    #[test]
    fn a_handle_prepared_again_and_an_orphan_are_unprepared() {
        let mut handles = Handles::new(true, 8);
        handles.insert(Handles::key("a", ""), 1);
        handles.insert(Handles::key("a", ""), 5); // prepared again: 1 goes
        handles.evict(9); // prepared, never kept
        assert_eq!(handles.len(), 1);
        assert_eq!(handles.get(&Handles::key("a", "")), Some(5));
        assert_eq!(
            handles.unprepare_sql().as_deref(),
            Some("EXEC sp_unprepare 1; EXEC sp_unprepare 9;")
        );
    }
}
