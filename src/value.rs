//! The values that cross the seam between Python and a backend, in both
//! directions. Backends decode rows into these without the GIL; the binding
//! layer turns them into Python objects in one pass.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Canonical decimal text (`"-12.50"`, `"NaN"`, `"Infinity"`), so any
    /// precision survives; becomes `decimal.Decimal`.
    Decimal(String),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    /// Time of day with a UTC offset in seconds (PostgreSQL `timetz`).
    TimeTz(NaiveTime, i32),
    DateTime(NaiveDateTime),
    /// An aware timestamp; PostgreSQL sends UTC, SQL Server its own offset.
    DateTimeTz(DateTime<FixedOffset>),
    /// `timedelta` semantics: months are counted as 30 days (as psycopg2 does).
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    Uuid(uuid::Uuid),
    Json(serde_json::Value),
    /// JSON text as a server sent it (results only): turned into Python
    /// objects straight from the text, with no tree in between.
    JsonText(String),
    Array(Vec<Value>),
    /// A table-valued parameter (parameters only): rows for a server-side
    /// table type. SQL Server sends it as one; PostgreSQL refuses it.
    Table(std::sync::Arc<TableArg>),
}

/// The rows of a table-valued parameter and the table type they fill.
#[derive(Debug, Clone, PartialEq)]
pub struct TableArg {
    /// The table type, as the caller wrote it (`dbo.IdList`).
    pub type_name: String,
    /// Column names, when the rows were dicts (matched to the type's
    /// columns by name); `None`: rows are in the type's column order.
    pub columns: Option<Vec<String>>,
    pub rows: Vec<Vec<Value>>,
}

impl Value {
    pub fn utc(dt: DateTime<Utc>) -> Value {
        Value::DateTimeTz(dt.fixed_offset())
    }

    /// Short type name for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Decimal(_) => "Decimal",
            Value::Text(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Date(_) => "date",
            Value::Time(_) | Value::TimeTz(..) => "time",
            Value::DateTime(_) | Value::DateTimeTz(_) => "datetime",
            Value::Interval { .. } => "timedelta",
            Value::Uuid(_) => "UUID",
            Value::Json(_) | Value::JsonText(_) => "dict",
            Value::Array(_) => "list",
            Value::Table(_) => "TableValue",
        }
    }

    /// The value as JSON (for a list or dict bound to a json/jsonb target).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Decimal(d) => d
                .parse::<serde_json::Number>()
                .map(J::Number)
                .unwrap_or_else(|_| J::String(d.clone())),
            Value::Json(j) => j.clone(),
            Value::JsonText(t) => serde_json::from_str(t).unwrap_or_else(|_| J::String(t.clone())),
            Value::Array(items) => J::Array(items.iter().map(Value::to_json).collect()),
            other => J::String(other.to_text()),
        }
    }

    /// The text PostgreSQL's input functions accept for this value.
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format_float(*f),
            Value::Decimal(d) | Value::Text(d) => d.clone(),
            Value::Bytes(b) => {
                let mut s = String::with_capacity(2 + b.len() * 2);
                s.push_str("\\x");
                for byte in b {
                    s.push_str(&format!("{byte:02x}"));
                }
                s
            }
            Value::Date(d) => d.to_string(),
            Value::Time(t) => t.format("%H:%M:%S%.f").to_string(),
            Value::TimeTz(t, off) => format!("{}{}", t.format("%H:%M:%S%.f"), format_offset(*off)),
            Value::DateTime(dt) => dt.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
            Value::DateTimeTz(dt) => dt.format("%Y-%m-%d %H:%M:%S%.f%:z").to_string(),
            Value::Interval {
                months,
                days,
                micros,
            } => {
                format!("{months} mons {days} days {micros} microseconds")
            }
            Value::Uuid(u) => u.hyphenated().to_string(),
            Value::Json(_) | Value::Array(_) => self.json_text(),
            Value::JsonText(t) => t.clone(),
            Value::Table(t) => format!("TableValue({:?}, {} rows)", t.type_name, t.rows.len()),
        }
    }

    /// This value as JSON text spaced as Python's `json.dumps` spaces it
    /// (`{"x": 1, "y": [1, 2]}`), which psycopg2's `Json` stores: a `json`
    /// column (or SQL Server text) keeps the text as sent. Non-ASCII stays
    /// UTF-8 rather than `\u` escapes (equal JSON, shorter).
    pub fn json_text(&self) -> String {
        let mut out = Vec::with_capacity(64);
        self.write_json(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// [`Value::json_text`] appended to a buffer.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use serde::Serialize;
        let mut serializer = serde_json::Serializer::with_formatter(&mut *out, PythonSpacing);
        // Serializing a serde_json::Value into a Vec cannot fail.
        let _ = self.to_json().serialize(&mut serializer);
    }
}

/// `json.dumps`'s default separators: `", "` and `": "`.
struct PythonSpacing;

impl serde_json::ser::Formatter for PythonSpacing {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separate(writer, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separate(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

fn separate<W: ?Sized + std::io::Write>(writer: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        // Shortest text that round-trips, like Python's repr.
        let s = format!("{f:?}");
        s
    }
}

fn format_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    format!("{sign}{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

/// A result set: column names once, values row-major in one flat vector.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub values: Vec<Value>,
    /// Rows affected for DML (`INSERT`/`UPDATE`/`DELETE`), else rows returned.
    pub rows_affected: u64,
}

impl Rows {
    pub fn row_count(&self) -> usize {
        if self.columns.is_empty() {
            0
        } else {
            self.values.len() / self.columns.len()
        }
    }

    pub fn rows(&self) -> impl Iterator<Item = &[Value]> {
        let width = self.columns.len().max(1);
        self.values.chunks(width).take(self.row_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_are_what_postgres_accepts() {
        assert_eq!(Value::Float(0.1).to_text(), "0.1");
        assert_eq!(Value::Float(f64::NEG_INFINITY).to_text(), "-Infinity");
        assert_eq!(Value::Bytes(vec![0, 255]).to_text(), "\\x00ff");
        assert_eq!(
            Value::TimeTz(NaiveTime::from_hms_opt(1, 2, 3).unwrap(), -5400).to_text(),
            "01:02:03-01:30:00"
        );
    }

    #[test]
    fn rows_iterate_by_width() {
        let r = Rows {
            columns: vec!["a".into(), "b".into()],
            values: vec![Value::Int(1), Value::Null, Value::Int(2), Value::Bool(true)],
            rows_affected: 2,
        };
        assert_eq!(r.row_count(), 2);
        assert_eq!(
            r.rows().nth(1).unwrap(),
            &[Value::Int(2), Value::Bool(true)]
        );
    }

    #[test]
    fn json_of_nested_values() {
        let v = Value::Array(vec![
            Value::Int(1),
            Value::Decimal("2.50".into()),
            Value::Null,
        ]);
        assert_eq!(v.to_json().to_string(), "[1,2.5,null]");
    }
}
