//! SQL Server TDS values → Arrow columns. The column's Arrow type comes
//! from the result metadata (an integer's width, a decimal's precision and
//! scale, a time's fractional digits); each cell goes from the driver's
//! column data straight into its builder. Every mapping is exact or an
//! error naming the column.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    Time64MicrosecondBuilder, Time64NanosecondBuilder, TimestampMicrosecondBuilder,
    TimestampNanosecondBuilder, UInt8Builder,
};
use arrow_array::ArrayRef;
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use tiberius::{Column, ColumnData, FixedLenType, TypeInfo, VarLenType};

use crate::arrow::{self as columnar, ArrowColumn, DAYS_0001_TO_1970};
use crate::error::Result;

/// Days from 1900-01-01 (`datetime`'s day zero) to 1970-01-01.
const DAYS_1900_TO_1970: i64 = 25_567;

pub struct MsArrowColumn {
    name: Arc<str>,
    cells: Cells,
}

enum Cells {
    Bool(BooleanBuilder),
    UInt8(UInt8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, u8, i32),
    Text(StringBuilder),
    Binary(BinaryBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Date(Date32Builder),
    TimeMicros(Time64MicrosecondBuilder),
    TimeNanos(Time64NanosecondBuilder),
    /// `datetime2`/`datetimeoffset` up to 6 digits, `datetime`,
    /// `smalldatetime`.
    TimestampMicros(TimestampMicrosecondBuilder),
    /// `datetime2(7)`/`datetimeoffset(7)`: 100 ns digits kept.
    TimestampNanos(TimestampNanosecondBuilder),
}

pub fn plan(columns: &[Column]) -> Result<(SchemaRef, Vec<MsArrowColumn>)> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut cells = Vec::with_capacity(columns.len());
    for c in columns {
        let (data_type, made) = map(c)?;
        fields.push(match made {
            Cells::Uuid(_) => columnar::uuid_field(c.name()),
            _ => columnar::field(c.name(), data_type),
        });
        cells.push(MsArrowColumn {
            name: Arc::from(c.name()),
            cells: made,
        });
    }
    Ok((columnar::schema(fields), cells))
}

fn decimal(precision: u8, scale: i32) -> (DataType, Cells) {
    let builder = Decimal128Builder::new()
        .with_precision_and_scale(precision, scale as i8)
        .expect("SQL Server's precision is 1..=38 and scale 0..=precision");
    (
        DataType::Decimal128(precision, scale as i8),
        Cells::Decimal(builder, precision, scale),
    )
}

fn time(scale: usize) -> (DataType, Cells) {
    if scale > 6 {
        (
            DataType::Time64(TimeUnit::Nanosecond),
            Cells::TimeNanos(Time64NanosecondBuilder::new()),
        )
    } else {
        (
            DataType::Time64(TimeUnit::Microsecond),
            Cells::TimeMicros(Time64MicrosecondBuilder::new()),
        )
    }
}

fn timestamp(scale: usize, utc: bool) -> (DataType, Cells) {
    let tz = utc.then(|| Arc::<str>::from("UTC"));
    if scale > 6 {
        let b = TimestampNanosecondBuilder::new().with_timezone_opt(tz.clone());
        (
            DataType::Timestamp(TimeUnit::Nanosecond, tz),
            Cells::TimestampNanos(b),
        )
    } else {
        let b = TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone());
        (
            DataType::Timestamp(TimeUnit::Microsecond, tz),
            Cells::TimestampMicros(b),
        )
    }
}

fn int(len: usize) -> Option<(DataType, Cells)> {
    Some(match len {
        1 => (DataType::UInt8, Cells::UInt8(UInt8Builder::new())),
        2 => (DataType::Int16, Cells::Int16(Int16Builder::new())),
        4 => (DataType::Int32, Cells::Int32(Int32Builder::new())),
        8 => (DataType::Int64, Cells::Int64(Int64Builder::new())),
        _ => return None,
    })
}

fn text() -> (DataType, Cells) {
    (DataType::Utf8, Cells::Text(StringBuilder::new()))
}

fn binary() -> (DataType, Cells) {
    (DataType::Binary, Cells::Binary(BinaryBuilder::new()))
}

fn map(column: &Column) -> Result<(DataType, Cells)> {
    let name = column.name();
    let Some(info) = column.type_info() else {
        return Err(columnar::unmapped(name, "unknown"));
    };
    let unmapped = || columnar::unmapped(name, &type_name(info));
    let f64_ = || (DataType::Float64, Cells::Float64(Float64Builder::new()));
    let f32_ = || (DataType::Float32, Cells::Float32(Float32Builder::new()));
    let bool_ = || (DataType::Boolean, Cells::Bool(BooleanBuilder::new()));
    Ok(match info {
        TypeInfo::FixedLen(t) => match t {
            FixedLenType::Int1 => int(1).ok_or_else(unmapped)?,
            FixedLenType::Int2 => int(2).ok_or_else(unmapped)?,
            FixedLenType::Int4 => int(4).ok_or_else(unmapped)?,
            FixedLenType::Int8 => int(8).ok_or_else(unmapped)?,
            FixedLenType::Bit => bool_(),
            FixedLenType::Float4 => f32_(),
            FixedLenType::Float8 => f64_(),
            FixedLenType::Money => decimal(19, 4),
            FixedLenType::Money4 => decimal(10, 4),
            FixedLenType::Datetime | FixedLenType::Datetime4 => timestamp(6, false),
            FixedLenType::Null => return Err(unmapped()),
        },
        TypeInfo::VarLenSized(cx) => match cx.r#type() {
            VarLenType::Intn => int(cx.len()).ok_or_else(unmapped)?,
            VarLenType::Bitn => bool_(),
            VarLenType::Floatn if cx.len() == 4 => f32_(),
            VarLenType::Floatn => f64_(),
            VarLenType::Money if cx.len() == 4 => decimal(10, 4),
            VarLenType::Money => decimal(19, 4),
            VarLenType::Guid => (
                DataType::FixedSizeBinary(16),
                Cells::Uuid(FixedSizeBinaryBuilder::new(16)),
            ),
            VarLenType::Datetimen => timestamp(6, false),
            VarLenType::Daten => (DataType::Date32, Cells::Date(Date32Builder::new())),
            VarLenType::Timen => time(cx.len()),
            VarLenType::Datetime2 => timestamp(cx.len(), false),
            VarLenType::DatetimeOffsetn => timestamp(cx.len(), true),
            VarLenType::BigVarChar
            | VarLenType::BigChar
            | VarLenType::NVarchar
            | VarLenType::NChar
            | VarLenType::Text
            | VarLenType::NText
            | VarLenType::Xml => text(),
            VarLenType::BigVarBin | VarLenType::BigBinary | VarLenType::Image => binary(),
            _ => return Err(unmapped()),
        },
        TypeInfo::VarLenSizedPrecision {
            precision, scale, ..
        } => decimal(*precision, *scale as i32),
        TypeInfo::Xml { .. } => text(),
        _ => return Err(unmapped()),
    })
}

/// The type as SQL Server would name it, for messages.
fn type_name(info: &TypeInfo) -> String {
    match info {
        TypeInfo::VarLenSized(cx) if cx.r#type() == VarLenType::SSVariant => "sql_variant".into(),
        TypeInfo::FixedLen(FixedLenType::Null) => "NULL (no type)".into(),
        other => format!("{other:?}"),
    }
}

impl MsArrowColumn {
    #[inline]
    pub fn append(&mut self, data: &ColumnData<'_>) -> Result<()> {
        self.cells
            .append(data)
            .map_err(|what| columnar::unrepresentable(&self.name, &what))
    }
}

impl ArrowColumn for MsArrowColumn {
    fn finish(&mut self) -> ArrayRef {
        self.cells.finish()
    }
}

fn is_null(data: &ColumnData<'_>) -> bool {
    match data {
        ColumnData::U8(v) => v.is_none(),
        ColumnData::I16(v) => v.is_none(),
        ColumnData::I32(v) => v.is_none(),
        ColumnData::I64(v) => v.is_none(),
        ColumnData::F32(v) => v.is_none(),
        ColumnData::F64(v) => v.is_none(),
        ColumnData::Bit(v) => v.is_none(),
        ColumnData::String(v) => v.is_none(),
        ColumnData::Guid(v) => v.is_none(),
        ColumnData::Binary(v) => v.is_none(),
        ColumnData::Numeric(v) => v.is_none(),
        ColumnData::Xml(v) => v.is_none(),
        ColumnData::DateTime(v) => v.is_none(),
        ColumnData::SmallDateTime(v) => v.is_none(),
        ColumnData::Time(v) => v.is_none(),
        ColumnData::Date(v) => v.is_none(),
        ColumnData::DateTime2(v) => v.is_none(),
        ColumnData::DateTimeOffset(v) => v.is_none(),
    }
}

/// Any integer cell, widened.
fn integer(data: &ColumnData<'_>) -> Option<Option<i64>> {
    Some(match data {
        ColumnData::U8(v) => v.map(i64::from),
        ColumnData::I16(v) => v.map(i64::from),
        ColumnData::I32(v) => v.map(i64::from),
        ColumnData::I64(v) => *v,
        _ => return None,
    })
}

/// Nanoseconds since the Unix epoch of a `datetime2` (date and time of
/// day), `None` when outside what an i64 of nanoseconds holds.
fn datetime2_nanos(dt: tiberius::time::DateTime2) -> Option<i64> {
    let days = dt.date().days() as i64 - DAYS_0001_TO_1970;
    days.checked_mul(86_400_000_000_000)?
        .checked_add(time_nanos(dt.time()))
}

fn time_nanos(t: tiberius::time::Time) -> i64 {
    t.increments() as i64 * 10i64.pow(9 - t.scale() as u32)
}

fn mismatch(data: &ColumnData<'_>) -> String {
    let sent = match data {
        ColumnData::U8(_) => "tinyint",
        ColumnData::I16(_) => "smallint",
        ColumnData::I32(_) => "int",
        ColumnData::I64(_) => "bigint",
        ColumnData::F32(_) => "real",
        ColumnData::F64(_) => "float",
        ColumnData::Bit(_) => "bit",
        ColumnData::String(_) => "string",
        ColumnData::Guid(_) => "uniqueidentifier",
        ColumnData::Binary(_) => "binary",
        ColumnData::Numeric(_) => "decimal",
        ColumnData::Xml(_) => "xml",
        ColumnData::DateTime(_) => "datetime",
        ColumnData::SmallDateTime(_) => "smalldatetime",
        ColumnData::Time(_) => "time",
        ColumnData::Date(_) => "date",
        ColumnData::DateTime2(_) => "datetime2",
        ColumnData::DateTimeOffset(_) => "datetimeoffset",
    };
    format!("the server sent a {sent} value for it")
}

impl Cells {
    fn append(&mut self, data: &ColumnData<'_>) -> std::result::Result<(), String> {
        // A NULL may come typed otherwise than the column (a NULL money is
        // sent as a float's NULL).
        if is_null(data) {
            self.append_null();
            return Ok(());
        }
        let bad = || mismatch(data);
        match self {
            Cells::Bool(x) => match data {
                ColumnData::Bit(v) => x.append_option(*v),
                _ => return Err(bad()),
            },
            Cells::UInt8(x) => {
                let v = integer(data).ok_or_else(bad)?;
                x.append_option(v.map(|i| i as u8))
            }
            Cells::Int16(x) => x.append_option(integer(data).ok_or_else(bad)?.map(|i| i as i16)),
            Cells::Int32(x) => x.append_option(integer(data).ok_or_else(bad)?.map(|i| i as i32)),
            Cells::Int64(x) => x.append_option(integer(data).ok_or_else(bad)?),
            Cells::Float32(x) => match data {
                ColumnData::F32(v) => x.append_option(*v),
                _ => return Err(bad()),
            },
            Cells::Float64(x) => match data {
                ColumnData::F64(v) => x.append_option(*v),
                ColumnData::F32(v) => x.append_option(v.map(f64::from)),
                _ => return Err(bad()),
            },
            Cells::Decimal(x, precision, scale) => match data {
                ColumnData::Numeric(None) => x.append_null(),
                ColumnData::Numeric(Some(n)) => {
                    let v = columnar::rescale(n.value(), n.scale() as i32, *scale)
                        .filter(|v| columnar::fits(*v, *precision))
                        .ok_or_else(|| {
                            format!("{n} does not fit decimal128({precision},{scale})")
                        })?;
                    x.append_value(v)
                }
                _ => return Err(bad()),
            },
            Cells::Text(x) => match data {
                ColumnData::String(v) => x.append_option(v.as_deref()),
                ColumnData::Xml(v) => x.append_option(v.as_ref().map(|x| x.to_string())),
                _ => return Err(bad()),
            },
            Cells::Binary(x) => match data {
                ColumnData::Binary(v) => x.append_option(v.as_deref()),
                _ => return Err(bad()),
            },
            Cells::Uuid(x) => match data {
                ColumnData::Guid(None) => x.append_null(),
                ColumnData::Guid(Some(u)) => {
                    x.append_value(u.as_bytes()).map_err(|e| e.to_string())?
                }
                _ => return Err(bad()),
            },
            Cells::Date(x) => match data {
                ColumnData::Date(v) => {
                    x.append_option(v.map(|d| (d.days() as i64 - DAYS_0001_TO_1970) as i32))
                }
                _ => return Err(bad()),
            },
            Cells::TimeMicros(x) => match data {
                ColumnData::Time(v) => x.append_option(v.map(|t| time_nanos(t) / 1000)),
                _ => return Err(bad()),
            },
            Cells::TimeNanos(x) => match data {
                ColumnData::Time(v) => x.append_option(v.map(time_nanos)),
                _ => return Err(bad()),
            },
            Cells::TimestampMicros(x) => x.append_option(timestamp_micros(data).ok_or_else(bad)?),
            Cells::TimestampNanos(x) => {
                let dt = match data {
                    ColumnData::DateTime2(v) => *v,
                    ColumnData::DateTimeOffset(v) => v.map(|o| o.datetime2()),
                    _ => return Err(bad()),
                };
                match dt {
                    None => x.append_null(),
                    Some(dt) => x.append_value(datetime2_nanos(dt).ok_or(
                        "a datetime2(7) outside 1677-2262 does not fit Arrow's nanosecond \
                         timestamps; cast it to datetime2(6) in the query",
                    )?),
                }
            }
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            Cells::Bool(x) => x.append_null(),
            Cells::UInt8(x) => x.append_null(),
            Cells::Int16(x) => x.append_null(),
            Cells::Int32(x) => x.append_null(),
            Cells::Int64(x) => x.append_null(),
            Cells::Float32(x) => x.append_null(),
            Cells::Float64(x) => x.append_null(),
            Cells::Decimal(x, ..) => x.append_null(),
            Cells::Text(x) => x.append_null(),
            Cells::Binary(x) => x.append_null(),
            Cells::Uuid(x) => x.append_null(),
            Cells::Date(x) => x.append_null(),
            Cells::TimeMicros(x) => x.append_null(),
            Cells::TimeNanos(x) => x.append_null(),
            Cells::TimestampMicros(x) => x.append_null(),
            Cells::TimestampNanos(x) => x.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Cells::Bool(x) => Arc::new(x.finish()),
            Cells::UInt8(x) => Arc::new(x.finish()),
            Cells::Int16(x) => Arc::new(x.finish()),
            Cells::Int32(x) => Arc::new(x.finish()),
            Cells::Int64(x) => Arc::new(x.finish()),
            Cells::Float32(x) => Arc::new(x.finish()),
            Cells::Float64(x) => Arc::new(x.finish()),
            Cells::Decimal(x, ..) => Arc::new(x.finish()),
            Cells::Text(x) => Arc::new(x.finish()),
            Cells::Binary(x) => Arc::new(x.finish()),
            Cells::Uuid(x) => Arc::new(x.finish()),
            Cells::Date(x) => Arc::new(x.finish()),
            Cells::TimeMicros(x) => Arc::new(x.finish()),
            Cells::TimeNanos(x) => Arc::new(x.finish()),
            Cells::TimestampMicros(x) => Arc::new(x.finish()),
            Cells::TimestampNanos(x) => Arc::new(x.finish()),
        }
    }
}

/// Microseconds since the Unix epoch of any date-time cell at up to
/// microsecond precision; `None` when the cell is not a date-time.
fn timestamp_micros(data: &ColumnData<'_>) -> Option<Option<i64>> {
    Some(match data {
        ColumnData::DateTime2(v) => v.map(datetime2_micros),
        ColumnData::DateTimeOffset(v) => v.map(|o| datetime2_micros(o.datetime2())),
        ColumnData::DateTime(v) => v.map(|raw| {
            // 1/300 s, rounded to milliseconds as ODBC drivers show it.
            let millis = (raw.seconds_fragments() as i64 * 1000 + 150) / 300;
            (raw.days() as i64 - DAYS_1900_TO_1970) * 86_400_000_000 + millis * 1000
        }),
        ColumnData::SmallDateTime(v) => v.map(|raw| {
            let minutes = raw.seconds_fragments() as i64;
            (raw.days() as i64 - DAYS_1900_TO_1970) * 86_400_000_000 + minutes * 60_000_000
        }),
        _ => return None,
    })
}

/// A `datetime2` at up to 6 digits: microseconds always fit an i64.
fn datetime2_micros(dt: tiberius::time::DateTime2) -> i64 {
    let days = dt.date().days() as i64 - DAYS_0001_TO_1970;
    days * 86_400_000_000 + time_nanos(dt.time()) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, TimestampNanosecondType};
    use arrow_array::Array;
    use tiberius::numeric::Numeric;
    use tiberius::time::{Date, DateTime2, Time};

    #[test]
    fn decimals_are_rescaled_exactly_or_refused() {
        let (_, mut c) = decimal(12, 2);
        c.append(&ColumnData::Numeric(Some(Numeric::new_with_scale(
            12345, 2,
        ))))
        .unwrap();
        c.append(&ColumnData::Numeric(Some(Numeric::new_with_scale(1, 0))))
            .unwrap();
        c.append(&ColumnData::Numeric(None)).unwrap();
        assert!(c
            .append(&ColumnData::Numeric(Some(Numeric::new_with_scale(1, 3))))
            .is_err());
        let a = c.finish();
        let a = a.as_primitive::<Decimal128Type>();
        assert_eq!((a.value(0), a.value(1)), (12345, 100));
        assert!(a.is_null(2));
    }

    #[test]
    fn datetime2_keeps_its_hundred_nanoseconds() {
        // 1970-01-02 00:00:00.0000001
        let dt = DateTime2::new(Date::new(719_163), Time::new(1, 7));
        let (_, mut c) = timestamp(7, false);
        c.append(&ColumnData::DateTime2(Some(dt))).unwrap();
        let far = DateTime2::new(Date::new(1), Time::new(0, 7));
        assert!(c
            .append(&ColumnData::DateTime2(Some(far)))
            .unwrap_err()
            .contains("1677"));
        let a = c.finish();
        let a = a.as_primitive::<TimestampNanosecondType>();
        assert_eq!(a.value(0), 86_400_000_000_000 + 100);
    }

    #[test]
    fn a_null_of_another_type_is_a_null() {
        let (_, mut c) = decimal(19, 4);
        c.append(&ColumnData::F64(None)).unwrap();
        assert!(c.finish().is_null(0));
    }

    #[test]
    fn a_value_of_another_type_is_named() {
        let (_, mut c) = int(4).unwrap();
        let e = c.append(&ColumnData::Bit(Some(true))).unwrap_err();
        assert!(e.contains("bit"), "{e}");
    }
}
