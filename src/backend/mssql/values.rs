//! SQL Server values: TDS column data → [`Value`], and [`Value`] → TDS
//! parameters. The same Python types bind as on PostgreSQL; what SQL Server
//! has no type for (lists, dicts) travels as JSON text, ready for `OPENJSON`.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use tiberius::{ColumnData, FromSql, IntoSql, ToSql};

use crate::error::{Error, Result};
use crate::sql::ParsedSql;
use crate::value::Value;

/// A parameter ready for the wire (NULLs never are: see [`bind`]).
#[derive(Debug)]
pub enum Param {
    Bool(bool),
    Int(i64),
    Float(f64),
    Numeric(tiberius::numeric::Numeric),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    DateTime(NaiveDateTime),
    DateTimeOffset(DateTime<FixedOffset>),
    Uuid(uuid::Uuid),
}

impl ToSql for Param {
    fn to_sql(&self) -> ColumnData<'_> {
        match self {
            Param::Bool(b) => ColumnData::Bit(Some(*b)),
            Param::Int(i) => match i32::try_from(*i) {
                Ok(small) => ColumnData::I32(Some(small)),
                Err(_) => ColumnData::I64(Some(*i)),
            },
            Param::Float(f) => ColumnData::F64(Some(*f)),
            Param::Numeric(n) => ColumnData::Numeric(Some(*n)),
            Param::Text(s) => ColumnData::String(Some(Cow::Borrowed(s.as_str()))),
            Param::Bytes(b) => ColumnData::Binary(Some(Cow::Borrowed(b.as_slice()))),
            Param::Date(d) => d.into_sql(),
            Param::Time(t) => t.into_sql(),
            Param::DateTime(dt) => dt.into_sql(),
            Param::DateTimeOffset(dt) => dt.into_sql(),
            Param::Uuid(u) => ColumnData::Guid(Some(*u)),
        }
    }
}

/// Decimal text → SQL Server numeric (38 digits at most); `None` when it
/// does not fit, so the caller can let the server parse the text instead.
pub fn numeric_from_text(text: &str) -> Option<tiberius::numeric::Numeric> {
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if t.contains(['e', 'E']) {
        return None;
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let significant = digits.trim_start_matches('0');
    if significant.len() > 38 || frac.len() > 37 {
        return None;
    }
    let mut value: i128 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    if negative {
        value = -value;
    }
    Some(tiberius::numeric::Numeric::new_with_scale(
        value,
        frac.len() as u8,
    ))
}

fn unsupported(name: &str, what: &str, hint: &str) -> Error {
    Error::parameter(format!(
        "parameter :{name}: SQL Server has no {what}; {hint}"
    ))
}

/// A statement rendered for SQL Server with its parameters. A `None` value
/// becomes the literal `NULL` in the text: an untyped NULL converts to every
/// column type on every server, while any one declared parameter type is
/// refused by some columns (an `nvarchar` NULL cannot go into `varbinary`)
/// and Babelfish refuses TDS's untyped-NULL parameter. The other values are
/// numbered `@P1..` in order.
pub fn bind(sql: &ParsedSql, values: &[Value]) -> Result<(String, Vec<Param>)> {
    let mut number = vec![0usize; values.len()];
    let mut params = Vec::with_capacity(values.len());
    for (i, (value, name)) in values.iter().zip(&sql.names).enumerate() {
        if let Some(param) = to_param(name, value)? {
            params.push(param);
            number[i] = params.len();
        }
    }
    let text = sql.render_with(|i| match number[i] {
        0 => "NULL".to_owned(),
        n => format!("@P{n}"),
    });
    Ok((text, params))
}

/// Convert one value for SQL Server; `None` for NULL. `name` is for messages.
pub fn to_param(name: &str, value: &Value) -> Result<Option<Param>> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(b) => Param::Bool(*b),
        Value::Int(i) => Param::Int(*i),
        Value::Float(f) if f.is_finite() => Param::Float(*f),
        Value::Float(_) => {
            return Err(unsupported(
                name,
                "NaN or Infinity",
                "send None or a finite number",
            ))
        }
        Value::Decimal(d) => match numeric_from_text(d) {
            Some(n) => Param::Numeric(n),
            None if d.chars().any(|c| c.is_ascii_digit()) => Param::Text(d.clone()),
            None => {
                return Err(unsupported(
                    name,
                    "NaN or Infinity",
                    "send None or a finite Decimal",
                ))
            }
        },
        Value::Text(s) => Param::Text(s.clone()),
        Value::Bytes(b) => Param::Bytes(b.clone()),
        Value::Date(d) => Param::Date(*d),
        Value::Time(t) => Param::Time(*t),
        // time with an offset has no SQL Server type; its text converts to
        // time or datetimeoffset on the server.
        Value::TimeTz(..) => Param::Text(value.to_text()),
        Value::DateTime(dt) => Param::DateTime(*dt),
        Value::DateTimeTz(dt) => Param::DateTimeOffset(*dt),
        Value::Interval { .. } => {
            return Err(unsupported(
                name,
                "interval type",
                "send seconds (td.total_seconds()) or a time",
            ))
        }
        Value::Uuid(u) => Param::Uuid(*u),
        Value::JsonText(t) => Param::Text(t.clone()),
        Value::Json(_) | Value::Array(_) => Param::Text(value.json_text()),
        Value::Table(_) => {
            return Err(Error::parameter(format!(
                "parameter :{name}: a TableValue is a whole parameter of a statement or \
                 procedure, not a value inside a list or row"
            )))
        }
    }))
}

fn conversion(e: tiberius::error::Error) -> Error {
    Error::query(format!("cannot decode a value from the server: {e}"))
}

fn numeric_text(n: tiberius::numeric::Numeric) -> String {
    let scale = n.scale() as u32;
    let value = n.value();
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{abs}");
    }
    let factor = 10u128.pow(scale);
    format!(
        "{sign}{}.{:0width$}",
        abs / factor,
        abs % factor,
        width = scale as usize
    )
}

/// One TDS value → [`Value`]. money and smallmoney arrive as exact
/// numerics of scale 4 (see vendor/tiberius), so they become `Decimal`s with
/// their four places.
pub fn to_value(data: &ColumnData<'static>) -> Result<Value> {
    Ok(match data {
        ColumnData::U8(v) => v.map_or(Value::Null, |x| Value::Int(x as i64)),
        ColumnData::I16(v) => v.map_or(Value::Null, |x| Value::Int(x as i64)),
        ColumnData::I32(v) => v.map_or(Value::Null, |x| Value::Int(x as i64)),
        ColumnData::I64(v) => v.map_or(Value::Null, Value::Int),
        ColumnData::F32(v) => v.map_or(Value::Null, |f| {
            Value::Float(format!("{f}").parse().unwrap_or(f as f64))
        }),
        ColumnData::F64(v) => v.map_or(Value::Null, Value::Float),
        ColumnData::Bit(v) => v.map_or(Value::Null, Value::Bool),
        ColumnData::String(v) => v
            .as_ref()
            .map_or(Value::Null, |s| Value::Text(s.to_string())),
        ColumnData::Guid(v) => v.map_or(Value::Null, Value::Uuid),
        ColumnData::Binary(v) => v.as_ref().map_or(Value::Null, |b| Value::Bytes(b.to_vec())),
        ColumnData::Numeric(v) => v.map_or(Value::Null, |n| Value::Decimal(numeric_text(n))),
        ColumnData::Xml(v) => v
            .as_ref()
            .map_or(Value::Null, |x| Value::Text(x.to_string())),
        ColumnData::DateTime(Some(raw)) => {
            // datetime counts 1/300 s; round to milliseconds as ODBC drivers
            // (and so pyodbc users) see it: '.123' reads back as .123000.
            let millis = (raw.seconds_fragments() as u64 * 1000 + 150) / 300;
            let date = NaiveDate::from_ymd_opt(1900, 1, 1)
                .and_then(|d| d.checked_add_signed(chrono::Duration::days(raw.days() as i64)))
                .ok_or_else(|| Error::query("datetime value out of range"))?;
            Value::DateTime(
                date.and_time(NaiveTime::MIN) + chrono::Duration::milliseconds(millis as i64),
            )
        }
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            NaiveDateTime::from_sql(data)
                .map_err(conversion)?
                .map_or(Value::Null, Value::DateTime)
        }
        ColumnData::Date(_) => NaiveDate::from_sql(data)
            .map_err(conversion)?
            .map_or(Value::Null, Value::Date),
        // 100 ns increments; the Python conversion truncates to microseconds
        // (as pyodbc does), so 23:59:59.9999996 never rounds into the next day.
        ColumnData::Time(_) => NaiveTime::from_sql(data)
            .map_err(conversion)?
            .map_or(Value::Null, Value::Time),
        // The wire carries the UTC instant and the offset (MS-TDS 2.2.5.5.1.10).
        ColumnData::DateTimeOffset(_) => DateTime::<FixedOffset>::from_sql(data)
            .map_err(conversion)?
            .map_or(Value::Null, Value::DateTimeTz),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_round_trip_through_text() {
        for text in [
            "0",
            "12.50",
            "-0.001",
            "12345678901234567890123456789012345678",
            "1.0000000001",
        ] {
            let n = numeric_from_text(text).unwrap();
            assert_eq!(numeric_text(n), text.trim_start_matches('+'), "{text}");
        }
        assert!(numeric_from_text("1E+3").is_none());
        assert!(numeric_from_text("123456789012345678901234567890123456789").is_none());
        assert!(numeric_from_text("abc").is_none());
    }

    #[test]
    fn legacy_datetime_rounds_to_milliseconds() {
        // 2024-01-02 03:04:05.123 is stored as 37 fragments past the second.
        let days = (NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()
            - NaiveDate::from_ymd_opt(1900, 1, 1).unwrap())
        .num_days();
        let fragments = (3 * 3600 + 4 * 60 + 5) * 300 + 37;
        let v = to_value(&ColumnData::DateTime(Some(tiberius::time::DateTime::new(
            days as i32,
            fragments,
        ))))
        .unwrap();
        assert_eq!(
            v,
            Value::DateTime(
                NaiveDate::from_ymd_opt(2024, 1, 2)
                    .unwrap()
                    .and_hms_milli_opt(3, 4, 5, 123)
                    .unwrap()
            )
        );
    }

    #[test]
    fn decoded_values() {
        assert_eq!(
            to_value(&ColumnData::I32(Some(-5))).unwrap(),
            Value::Int(-5)
        );
        assert_eq!(
            to_value(&ColumnData::U8(Some(255))).unwrap(),
            Value::Int(255)
        );
        assert_eq!(
            to_value(&ColumnData::F32(Some(0.1))).unwrap(),
            Value::Float(0.1)
        );
        // money as the vendored driver decodes it: exact, four places.
        let max_money = tiberius::numeric::Numeric::new_with_scale(i64::MAX as i128, 4);
        assert_eq!(
            to_value(&ColumnData::Numeric(Some(max_money))).unwrap(),
            Value::Decimal("922337203685477.5807".into())
        );
        let small = tiberius::numeric::Numeric::new_with_scale(-15000, 4);
        assert_eq!(
            to_value(&ColumnData::Numeric(Some(small))).unwrap(),
            Value::Decimal("-1.5000".into())
        );
        assert_eq!(to_value(&ColumnData::Bit(None)).unwrap(), Value::Null);
        let n = tiberius::numeric::Numeric::new_with_scale(-1250, 2);
        assert_eq!(
            to_value(&ColumnData::Numeric(Some(n))).unwrap(),
            Value::Decimal("-12.50".into())
        );
    }

    fn wire_datetimeoffset(utc: NaiveDateTime, offset_minutes: i16) -> ColumnData<'static> {
        let days = (utc.date() - NaiveDate::from_ymd_opt(1, 1, 1).unwrap()).num_days();
        let since_midnight = utc.time() - NaiveTime::MIN;
        let increments = since_midnight.num_nanoseconds().unwrap() as u64 / 100;
        ColumnData::DateTimeOffset(Some(tiberius::time::DateTimeOffset::new(
            tiberius::time::DateTime2::new(
                tiberius::time::Date::new(days as u32),
                tiberius::time::Time::new(increments, 7),
            ),
            offset_minutes,
        )))
    }

    #[test]
    fn datetimeoffset_reads_the_utc_instant_with_its_offset() {
        // '2024-01-02T03:04:05.5+02:00' travels as 01:04:05.5 UTC, offset +120.
        let utc = NaiveDate::from_ymd_opt(2024, 1, 2)
            .unwrap()
            .and_hms_milli_opt(1, 4, 5, 500)
            .unwrap();
        for (minutes, local) in [
            (120, "2024-01-02T03:04:05.500+02:00"),
            (330, "2024-01-02T06:34:05.500+05:30"),
            (-480, "2024-01-01T17:04:05.500-08:00"),
        ] {
            let Value::DateTimeTz(dt) = to_value(&wire_datetimeoffset(utc, minutes)).unwrap()
            else {
                panic!("not an aware datetime")
            };
            assert_eq!(dt.naive_utc(), utc, "the instant, offset {minutes}");
            assert_eq!(dt.offset().local_minus_utc(), minutes as i32 * 60);
            assert_eq!(dt.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string(), local);
        }
    }

    #[test]
    fn time_keeps_its_100ns_digits_for_truncation() {
        let increments = (23 * 3600 + 59 * 60 + 59) * 10_000_000u64 + 9_999_996;
        let v = to_value(&ColumnData::Time(Some(tiberius::time::Time::new(
            increments, 7,
        ))))
        .unwrap();
        let Value::Time(t) = v else {
            panic!("not a time")
        };
        assert_eq!(t.format("%H:%M:%S%.9f").to_string(), "23:59:59.999999600");
    }

    #[test]
    fn params_map_types_and_explain_gaps() {
        assert!(matches!(
            to_param("v", &Value::Int(1 << 40)).unwrap(),
            Some(Param::Int(_))
        ));
        assert!(matches!(
            to_param("v", &Value::Array(vec![Value::Int(1), Value::Int(2)])).unwrap(),
            Some(Param::Text(ref s)) if s == "[1, 2]"
        ));
        let err = to_param(
            "span",
            &Value::Interval {
                months: 0,
                days: 1,
                micros: 0,
            },
        )
        .unwrap_err();
        assert!(err.message.contains(":span") && err.message.contains("interval"));
        assert!(to_param("f", &Value::Float(f64::NAN)).is_err());
        assert!(matches!(
            to_param("d", &Value::Decimal("1E+3".into())).unwrap(),
            Some(Param::Text(_))
        ));
        assert!(matches!(
            to_param("i", &Value::Int(7)).unwrap().unwrap().to_sql(),
            ColumnData::I32(Some(7))
        ));
        assert!(to_param("n", &Value::Null).unwrap().is_none());
    }

    #[test]
    fn nulls_are_rendered_as_literals_and_the_rest_renumbered() {
        let sql = crate::sql::parse(
            "UPDATE t SET a = :a, b = :b, c = :c WHERE id = :id AND :b IS NULL",
            &crate::backend::mssql::LEXICON,
        );
        let values = vec![
            Value::Int(1),
            Value::Null,
            Value::Text("x".into()),
            Value::Int(9),
        ];
        let (text, params) = bind(&sql, &values).unwrap();
        assert_eq!(
            text,
            "UPDATE t SET a = @P1, b = NULL, c = @P2 WHERE id = @P3 AND NULL IS NULL"
        );
        assert_eq!(params.len(), 3);
    }
}
