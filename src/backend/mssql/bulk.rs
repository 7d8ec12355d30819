//! Bulk-load cells: a TDS bulk row must carry each value in its column's
//! own wire type (NULLs included), unlike an RPC parameter, which the server
//! converts. The target columns' types come from the server; each value is
//! converted here, or refused with a message naming the row and column.

use std::borrow::Cow;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use tiberius::numeric::Numeric;
use tiberius::{ColumnData, FixedLenType, IntoSql, MetaDataColumn, TypeInfo, VarLenType};

use super::values::numeric_from_text;
use crate::error::{Error, Result};
use crate::feed::RowFeed;
use crate::value::Value;

/// What a column holds, as far as converting a value for it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bit,
    /// Integer of this many bytes.
    Int(u8),
    /// Float of this many bytes.
    Float(u8),
    /// decimal/numeric and money/smallmoney: exact numerics.
    Exact,
    Text,
    Binary,
    Guid,
    Date,
    /// time, datetime2, datetimeoffset: with their scale (digits of a second).
    Time(u8),
    DateTime2(u8),
    /// Legacy datetime (8 bytes) or smalldatetime (4 bytes).
    LegacyDateTime(u8),
    DateTimeOffset(u8),
    Xml,
    Other,
}

fn kind(ty: &TypeInfo) -> Kind {
    match ty {
        TypeInfo::FixedLen(f) => match f {
            FixedLenType::Bit => Kind::Bit,
            FixedLenType::Int1 => Kind::Int(1),
            FixedLenType::Int2 => Kind::Int(2),
            FixedLenType::Int4 => Kind::Int(4),
            FixedLenType::Int8 => Kind::Int(8),
            FixedLenType::Float4 => Kind::Float(4),
            FixedLenType::Float8 => Kind::Float(8),
            FixedLenType::Money | FixedLenType::Money4 => Kind::Exact,
            FixedLenType::Datetime => Kind::LegacyDateTime(8),
            FixedLenType::Datetime4 => Kind::LegacyDateTime(4),
            FixedLenType::Null => Kind::Other,
        },
        TypeInfo::VarLenSized(cx) => match cx.r#type() {
            VarLenType::Bitn => Kind::Bit,
            VarLenType::Intn => Kind::Int(cx.len() as u8),
            VarLenType::Floatn => Kind::Float(cx.len() as u8),
            VarLenType::Money | VarLenType::Decimaln | VarLenType::Numericn => Kind::Exact,
            VarLenType::BigVarChar
            | VarLenType::BigChar
            | VarLenType::NVarchar
            | VarLenType::NChar
            | VarLenType::Text
            | VarLenType::NText => Kind::Text,
            VarLenType::BigVarBin | VarLenType::BigBinary | VarLenType::Image => Kind::Binary,
            VarLenType::Guid => Kind::Guid,
            VarLenType::Daten => Kind::Date,
            VarLenType::Timen => Kind::Time(cx.len() as u8),
            VarLenType::Datetime2 => Kind::DateTime2(cx.len() as u8),
            VarLenType::Datetimen => Kind::LegacyDateTime(cx.len() as u8),
            VarLenType::DatetimeOffsetn => Kind::DateTimeOffset(cx.len() as u8),
            VarLenType::Xml => Kind::Xml,
            _ => Kind::Other,
        },
        TypeInfo::VarLenSizedPrecision { .. } => Kind::Exact,
        TypeInfo::Xml { .. } => Kind::Xml,
        TypeInfo::Udt(_) => Kind::Other,
    }
}

/// The SQL Server type of a column, for messages (`decimal(12,4)`, `date`).
pub(super) fn type_name(column: &MetaDataColumn<'_>) -> String {
    // Displayed as `[name] type`.
    let text = column.to_string();
    let name = format!("[{}] ", column.col_name.replace(']', "]]"));
    text.strip_prefix(&name).map(str::to_owned).unwrap_or(text)
}

/// One bulk row for `targets` (the table's columns the load writes); `row`
/// is its index, for messages.
pub fn row(
    targets: &[MetaDataColumn<'_>],
    row: usize,
    values: &[Value],
    feed: &RowFeed,
) -> Result<tiberius::TokenRow<'static>> {
    if values.len() != targets.len() {
        return Err(Error::parameter(format!(
            "row {row} has {} values for {} columns",
            values.len(),
            targets.len()
        )));
    }
    let mut token = tiberius::TokenRow::with_capacity(values.len());
    for (i, (value, column)) in values.iter().zip(targets).enumerate() {
        token.push(cell(column, row, value, || feed.describe(i, value))?);
    }
    Ok(token)
}

/// One cell of a bulk row for `column`. `row` and the column name are for
/// messages, and `what` says what the value is in the caller's terms ("a
/// Python int", "an Arrow int64").
pub fn cell(
    column: &MetaDataColumn<'_>,
    row: usize,
    value: &Value,
    what: impl Fn() -> String,
) -> Result<ColumnData<'static>> {
    if matches!(value, Value::Null) {
        return Ok(column.base.null_value());
    }
    let refuse = || {
        Error::parameter(format!(
            "row {row}, column {}: {} cannot be stored in a {} column; \
             convert it first",
            column.col_name,
            what(),
            type_name(column)
        ))
    };
    let k = kind(&column.base.ty);
    Ok(match (k, value) {
        (Kind::Bit, Value::Bool(b)) => ColumnData::Bit(Some(*b)),
        (Kind::Bit, Value::Int(i @ (0 | 1))) => ColumnData::Bit(Some(*i == 1)),
        (Kind::Int(bytes), Value::Int(i)) => int(bytes, *i).ok_or_else(|| {
            Error::parameter(format!(
                "row {row}, column {}: {i} is out of range for {}",
                column.col_name,
                type_name(column)
            ))
        })?,
        (Kind::Int(bytes), Value::Bool(b)) => int(bytes, *b as i64).ok_or_else(refuse)?,
        (Kind::Float(4), Value::Float(f)) => ColumnData::F32(Some(*f as f32)),
        (Kind::Float(4), Value::Int(i)) => ColumnData::F32(Some(*i as f32)),
        (Kind::Float(_), Value::Float(f)) => ColumnData::F64(Some(*f)),
        (Kind::Float(_), Value::Int(i)) => ColumnData::F64(Some(*i as f64)),
        (Kind::Float(4), Value::Decimal(d)) => {
            ColumnData::F32(Some(d.parse().map_err(|_| refuse())?))
        }
        (Kind::Float(_), Value::Decimal(d)) => {
            ColumnData::F64(Some(d.parse().map_err(|_| refuse())?))
        }
        (Kind::Exact, Value::Decimal(d)) => {
            ColumnData::Numeric(Some(numeric_from_text(d).ok_or_else(refuse)?))
        }
        (Kind::Exact, Value::Int(i)) => {
            ColumnData::Numeric(Some(Numeric::new_with_scale(*i as i128, 0)))
        }
        (Kind::Exact, Value::Float(f)) if f.is_finite() => {
            // The shortest text that round-trips, as Python's repr would give.
            ColumnData::Numeric(Some(
                numeric_from_text(&format!("{f:?}")).ok_or_else(refuse)?,
            ))
        }
        (Kind::Text, Value::Text(s)) => ColumnData::String(Some(Cow::Owned(s.clone()))),
        (Kind::Text, Value::Json(_) | Value::Array(_)) => {
            ColumnData::String(Some(Cow::Owned(value.json_text())))
        }
        (Kind::Text, Value::JsonText(s)) => ColumnData::String(Some(Cow::Owned(s.clone()))),
        (Kind::Xml, Value::Text(s)) => {
            ColumnData::Xml(Some(Cow::Owned(tiberius::xml::XmlData::new(s.clone()))))
        }
        (Kind::Binary, Value::Bytes(b)) => ColumnData::Binary(Some(Cow::Owned(b.clone()))),
        (Kind::Guid, Value::Uuid(u)) => ColumnData::Guid(Some(*u)),
        // A UUID's 16 bytes (Arrow data that lost its UUID type on the way).
        (Kind::Guid, Value::Bytes(b)) if b.len() == 16 => {
            ColumnData::Guid(Some(uuid::Uuid::from_slice(b).map_err(|_| refuse())?))
        }
        (Kind::Guid, Value::Text(s)) => {
            ColumnData::Guid(Some(s.trim().parse().map_err(|_| refuse())?))
        }
        (Kind::Date, Value::Date(d)) => d.into_sql(),
        (Kind::Date, Value::DateTime(dt)) => dt.date().into_sql(),
        (Kind::Time(scale), Value::Time(t)) => ColumnData::Time(Some(time(*t, scale))),
        (Kind::DateTime2(scale), Value::DateTime(dt)) => {
            ColumnData::DateTime2(Some(datetime2(*dt, scale)))
        }
        (Kind::DateTime2(scale), Value::Date(d)) => {
            ColumnData::DateTime2(Some(datetime2(d.and_time(NaiveTime::MIN), scale)))
        }
        (Kind::LegacyDateTime(bytes), Value::DateTime(dt)) => {
            legacy(bytes, *dt).ok_or_else(refuse)?
        }
        (Kind::LegacyDateTime(bytes), Value::Date(d)) => {
            legacy(bytes, d.and_time(NaiveTime::MIN)).ok_or_else(refuse)?
        }
        (Kind::DateTimeOffset(scale), Value::DateTimeTz(dt)) => {
            // The UTC instant and the offset in minutes (MS-TDS 2.2.5.5.1.10).
            let offset = (dt.offset().local_minus_utc() / 60) as i16;
            ColumnData::DateTimeOffset(Some(tiberius::time::DateTimeOffset::new(
                datetime2(dt.naive_utc(), scale),
                offset,
            )))
        }
        _ => return Err(refuse()),
    })
}

/// A time of day at the column's scale: the server takes the increments
/// as they are, so they must be counted in that scale's units (truncated).
fn time(t: NaiveTime, scale: u8) -> tiberius::time::Time {
    let nanos = t.num_seconds_from_midnight() as u64 * 1_000_000_000 + t.nanosecond() as u64;
    let unit = 10u64.pow(9 - u32::from(scale.min(7)));
    tiberius::time::Time::new(nanos / unit, scale)
}

fn datetime2(dt: NaiveDateTime, scale: u8) -> tiberius::time::DateTime2 {
    // Days since 0001-01-01 (day 1 of the common era is day 0 here).
    let days = dt.date().num_days_from_ce() - 1;
    tiberius::time::DateTime2::new(
        tiberius::time::Date::new(days as u32),
        time(dt.time(), scale),
    )
}

fn int(bytes: u8, i: i64) -> Option<ColumnData<'static>> {
    Some(match bytes {
        1 => ColumnData::U8(Some(u8::try_from(i).ok()?)),
        2 => ColumnData::I16(Some(i16::try_from(i).ok()?)),
        4 => ColumnData::I32(Some(i32::try_from(i).ok()?)),
        _ => ColumnData::I64(Some(i)),
    })
}

/// datetime (1/300 s ticks since 1900-01-01) or smalldatetime (minutes).
fn legacy(bytes: u8, dt: NaiveDateTime) -> Option<ColumnData<'static>> {
    let epoch = NaiveDate::from_ymd_opt(1900, 1, 1)?;
    let days = (dt.date() - epoch).num_days();
    let time = dt.time();
    if bytes == 4 {
        let minutes = time.num_seconds_from_midnight() / 60;
        return Some(ColumnData::SmallDateTime(Some(
            tiberius::time::SmallDateTime::new(u16::try_from(days).ok()?, minutes as u16),
        )));
    }
    let nanos = time.num_seconds_from_midnight() as u64 * 1_000_000_000 + time.nanosecond() as u64;
    let ticks = (nanos * 3 + 5_000_000) / 10_000_000; // nearest 1/300 s
    Some(ColumnData::DateTime(Some(tiberius::time::DateTime::new(
        i32::try_from(days).ok()?,
        ticks as u32,
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiberius::{BaseMetaDataColumn, VarLenContext};

    fn column(ty: TypeInfo) -> MetaDataColumn<'static> {
        MetaDataColumn {
            base: BaseMetaDataColumn {
                flags: Default::default(),
                ty,
                table_name: None,
            },
            col_name: "c".into(),
        }
    }

    #[test]
    fn nulls_take_the_column_type() {
        let decimal = column(TypeInfo::VarLenSizedPrecision {
            ty: VarLenType::Decimaln,
            size: 17,
            precision: 38,
            scale: 2,
        });
        assert_eq!(
            cell(&decimal, 0, &Value::Null, String::new).unwrap(),
            ColumnData::Numeric(None)
        );
        let date = column(TypeInfo::VarLenSized(VarLenContext::new(
            VarLenType::Daten,
            3,
            None,
        )));
        assert_eq!(
            cell(&date, 0, &Value::Null, String::new).unwrap(),
            ColumnData::Date(None)
        );
    }

    #[test]
    fn values_convert_to_the_column_type_or_name_it() {
        let bigint = column(TypeInfo::VarLenSized(VarLenContext::new(
            VarLenType::Intn,
            8,
            None,
        )));
        assert_eq!(
            cell(&bigint, 0, &Value::Int(7), String::new).unwrap(),
            ColumnData::I64(Some(7))
        );
        let tiny = column(TypeInfo::VarLenSized(VarLenContext::new(
            VarLenType::Intn,
            1,
            None,
        )));
        let err = cell(&tiny, 3, &Value::Int(300), String::new).unwrap_err();
        assert!(
            err.message.contains("row 3") && err.message.contains("out of range"),
            "{}",
            err.message
        );
        let guid = column(TypeInfo::VarLenSized(VarLenContext::new(
            VarLenType::Guid,
            16,
            None,
        )));
        let err = cell(&guid, 0, &Value::Float(1.5), || "a Python float".into()).unwrap_err();
        assert!(
            err.message.contains("float") && err.message.contains("column c"),
            "{}",
            err.message
        );
    }

    #[test]
    fn legacy_datetime_rounds_to_ticks() {
        let dt = NaiveDate::from_ymd_opt(1900, 1, 2)
            .unwrap()
            .and_hms_milli_opt(0, 0, 1, 3)
            .unwrap();
        let Some(ColumnData::DateTime(Some(raw))) = legacy(8, dt) else {
            panic!()
        };
        assert_eq!((raw.days(), raw.seconds_fragments()), (1, 301));
    }
}
