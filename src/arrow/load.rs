//! Arrow data into `bulk_insert`: each record batch becomes rows of
//! [`Value`]s in Rust (no Python object per cell), fed to the backend's
//! bulk path as they are made, one batch at a time, so streaming input
//! keeps memory bounded. Columns match the table's by name.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, IntervalUnit, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta};

use crate::error::{Error, Result};
use crate::value::Value;

/// How a column's values are described in messages ("an Arrow int64").
pub fn origin(field: &Field) -> String {
    if super::is_uuid(field) {
        return "an Arrow uuid".into();
    }
    format!("an Arrow {}", field.data_type())
}

/// The columns to load, by name; an error for a name given twice or a type
/// this load cannot read.
pub fn columns(schema: &arrow_schema::Schema) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        if names.iter().any(|n| n == field.name()) {
            return Err(Error::parameter(format!(
                "the data has two columns named \"{}\"; rename one",
                field.name()
            )));
        }
        check(field.name(), field.data_type())?;
        names.push(field.name().clone());
    }
    Ok(names)
}

fn check(column: &str, data_type: &DataType) -> Result<()> {
    use DataType::*;
    let ok = match data_type {
        Null | Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64
        | Float16 | Float32 | Float64 | Decimal128(..) | Decimal256(..) | Utf8 | LargeUtf8
        | Utf8View | Binary | LargeBinary | BinaryView | FixedSizeBinary(_) | Date32 | Date64
        | Time32(_) | Time64(_) | Timestamp(..) | Duration(_) | Interval(_) => true,
        List(f) | LargeList(f) => return check(column, f.data_type()),
        Dictionary(_, values) => return check(column, values),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::parameter(format!(
            "column \"{column}\" is an Arrow {data_type}, which no table column \
             takes; convert it first (to a string, say)"
        )))
    }
}

/// The batch's rows, in its column order.
pub fn rows(batch: &RecordBatch, first_row: usize) -> Result<Vec<Vec<Value>>> {
    let schema = batch.schema();
    let width = batch.num_columns();
    let mut rows: Vec<Vec<Value>> = (0..batch.num_rows())
        .map(|_| Vec::with_capacity(width))
        .collect();
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        let uuid = super::is_uuid(field);
        // A dictionary column (a pandas categorical) is read through its
        // values, with its keys resolved once.
        let (values, keys) = match array.as_any_dictionary_opt() {
            Some(dict) => (dict.values().clone(), Some(dict.normalized_keys())),
            None => (array.clone(), None),
        };
        for (i, row) in rows.iter_mut().enumerate() {
            let cell = match &keys {
                _ if array.is_null(i) => Ok(Value::Null),
                Some(keys) => value(&values, keys[i], uuid),
                None => value(&values, i, uuid),
            };
            row.push(cell.map_err(|why| {
                Error::parameter(format!(
                    "row {}, column \"{}\" ({}): {why}",
                    first_row + i,
                    field.name(),
                    origin(field)
                ))
            })?);
        }
    }
    Ok(rows)
}

pub type Cell = std::result::Result<Value, String>;

fn date(days: i64) -> Cell {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|d| d.checked_add_signed(TimeDelta::try_days(days)?))
        .map(Value::Date)
        .ok_or_else(|| "date out of range".into())
}

fn time(nanos: i64) -> Cell {
    let secs = nanos.div_euclid(1_000_000_000) as u32;
    let frac = nanos.rem_euclid(1_000_000_000) as u32;
    NaiveTime::from_num_seconds_from_midnight_opt(secs, frac)
        .map(Value::Time)
        .ok_or_else(|| "time of day out of range".into())
}

fn nanos_of(unit: &TimeUnit, v: i64) -> Option<i64> {
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000_000),
        TimeUnit::Millisecond => v.checked_mul(1_000_000),
        TimeUnit::Microsecond => v.checked_mul(1000),
        TimeUnit::Nanosecond => Some(v),
    }
}

fn timestamp(unit: &TimeUnit, v: i64, zoned: bool) -> Cell {
    let (secs, nanos) = match unit {
        TimeUnit::Second => (v, 0),
        TimeUnit::Millisecond => (v.div_euclid(1000), v.rem_euclid(1000) * 1_000_000),
        TimeUnit::Microsecond => (v.div_euclid(1_000_000), v.rem_euclid(1_000_000) * 1000),
        TimeUnit::Nanosecond => (v.div_euclid(1_000_000_000), v.rem_euclid(1_000_000_000)),
    };
    let dt = DateTime::from_timestamp(secs, nanos as u32).ok_or("timestamp out of range")?;
    Ok(if zoned {
        Value::utc(dt)
    } else {
        Value::DateTime(dt.naive_utc())
    })
}

fn interval(months: i32, days: i32, nanos: i64) -> Cell {
    if nanos % 1000 != 0 {
        return Err("an interval with sub-microsecond digits loses them in a database".into());
    }
    Ok(Value::Interval {
        months,
        days,
        micros: nanos / 1000,
    })
}

/// Decimal digits with `scale` fractional digits as exact text.
pub fn decimal_text(digits: String, scale: i8) -> String {
    if scale <= 0 {
        return format!("{digits}{}", "0".repeat((-scale) as usize));
    }
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(d) => ("-", d.to_owned()),
        None => ("", digits),
    };
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// One cell as a [`Value`].
pub fn value(array: &ArrayRef, i: usize, uuid: bool) -> Cell {
    use DataType::*;
    if array.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match array.data_type() {
        Null => Value::Null,
        Boolean => Value::Bool(array.as_boolean().value(i)),
        Int8 => Value::Int(array.as_primitive::<Int8Type>().value(i) as i64),
        Int16 => Value::Int(array.as_primitive::<Int16Type>().value(i) as i64),
        Int32 => Value::Int(array.as_primitive::<Int32Type>().value(i) as i64),
        Int64 => Value::Int(array.as_primitive::<Int64Type>().value(i)),
        UInt8 => Value::Int(array.as_primitive::<UInt8Type>().value(i) as i64),
        UInt16 => Value::Int(array.as_primitive::<UInt16Type>().value(i) as i64),
        UInt32 => Value::Int(array.as_primitive::<UInt32Type>().value(i) as i64),
        UInt64 => {
            let v = array.as_primitive::<UInt64Type>().value(i);
            i64::try_from(v)
                .map(Value::Int)
                .unwrap_or_else(|_| Value::Decimal(v.to_string()))
        }
        Float16 => Value::Float(array.as_primitive::<Float16Type>().value(i).to_f64()),
        Float32 => {
            // Through the shortest text, so 0.1f32 is written as 0.1.
            let f = array.as_primitive::<Float32Type>().value(i);
            Value::Float(format!("{f}").parse().unwrap_or(f as f64))
        }
        Float64 => Value::Float(array.as_primitive::<Float64Type>().value(i)),
        Decimal128(_, scale) => {
            let v = array.as_primitive::<Decimal128Type>().value(i);
            Value::Decimal(decimal_text(v.to_string(), *scale))
        }
        Decimal256(_, scale) => {
            let v = array.as_primitive::<Decimal256Type>().value(i);
            Value::Decimal(decimal_text(v.to_string(), *scale))
        }
        Utf8 => Value::Text(array.as_string::<i32>().value(i).to_owned()),
        LargeUtf8 => Value::Text(array.as_string::<i64>().value(i).to_owned()),
        Utf8View => Value::Text(array.as_string_view().value(i).to_owned()),
        Binary => Value::Bytes(array.as_binary::<i32>().value(i).to_vec()),
        LargeBinary => Value::Bytes(array.as_binary::<i64>().value(i).to_vec()),
        BinaryView => Value::Bytes(array.as_binary_view().value(i).to_vec()),
        FixedSizeBinary(16) if uuid => {
            let b = array.as_fixed_size_binary().value(i);
            Value::Uuid(uuid::Uuid::from_slice(b).map_err(|e| e.to_string())?)
        }
        FixedSizeBinary(_) => Value::Bytes(array.as_fixed_size_binary().value(i).to_vec()),
        Date32 => date(array.as_primitive::<Date32Type>().value(i) as i64)?,
        Date64 => date(
            array
                .as_primitive::<Date64Type>()
                .value(i)
                .div_euclid(86_400_000),
        )?,
        Time32(unit) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<Time32SecondType>().value(i),
                _ => array.as_primitive::<Time32MillisecondType>().value(i),
            } as i64;
            time(nanos_of(unit, v).ok_or("time out of range")?)?
        }
        Time64(unit) => {
            let v = match unit {
                TimeUnit::Microsecond => array.as_primitive::<Time64MicrosecondType>().value(i),
                _ => array.as_primitive::<Time64NanosecondType>().value(i),
            };
            time(nanos_of(unit, v).ok_or("time out of range")?)?
        }
        Timestamp(unit, tz) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(i),
                TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(i),
                TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(i),
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(i),
            };
            timestamp(unit, v, tz.is_some())?
        }
        Duration(unit) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<DurationSecondType>().value(i),
                TimeUnit::Millisecond => array.as_primitive::<DurationMillisecondType>().value(i),
                TimeUnit::Microsecond => array.as_primitive::<DurationMicrosecondType>().value(i),
                TimeUnit::Nanosecond => array.as_primitive::<DurationNanosecondType>().value(i),
            };
            interval(0, 0, nanos_of(unit, v).ok_or("duration out of range")?)?
        }
        Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(i);
            interval(v.months, v.days, v.nanoseconds)?
        }
        Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(i);
            interval(0, v.days, v.milliseconds as i64 * 1_000_000)?
        }
        Interval(IntervalUnit::YearMonth) => {
            interval(array.as_primitive::<IntervalYearMonthType>().value(i), 0, 0)?
        }
        List(field) => list(&array.as_list::<i32>().value(i), super::is_uuid(field))?,
        LargeList(field) => list(&array.as_list::<i64>().value(i), super::is_uuid(field))?,
        // Inside a list (rare): the keys are resolved per value.
        Dictionary(..) => {
            let dict = array.as_any_dictionary();
            value(dict.values(), dict.normalized_keys()[i], uuid)?
        }
        other => return Err(format!("an Arrow {other} cannot be loaded")),
    })
}

fn list(items: &ArrayRef, uuid: bool) -> Cell {
    (0..items.len())
        .map(|j| value(items, j, uuid))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(Value::Array)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{Decimal128Builder, StringDictionaryBuilder};
    use arrow_array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow_schema::Schema;
    use std::sync::Arc;

    #[test]
    fn decimals_become_exact_text() {
        assert_eq!(decimal_text("12345".into(), 2), "123.45");
        assert_eq!(decimal_text("-5".into(), 3), "-0.005");
        assert_eq!(decimal_text("7".into(), -2), "700");
        let mut b = Decimal128Builder::new()
            .with_precision_and_scale(12, 2)
            .unwrap();
        b.append_value(-1999);
        let a: ArrayRef = Arc::new(b.finish());
        assert_eq!(
            value(&a, 0, false).unwrap(),
            Value::Decimal("-19.99".into())
        );
    }

    #[test]
    fn batches_become_rows_with_nulls_and_zones() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_000_001), None])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let rows = rows(&batch, 0).unwrap();
        assert_eq!(rows[0][0], Value::Int(1));
        assert_eq!(rows[0][1], Value::Text("a".into()));
        let Value::DateTimeTz(at) = &rows[0][2] else {
            panic!("{:?}", rows[0][2]);
        };
        assert_eq!(at.timestamp_micros(), 1_000_001);
        assert!(rows[1].iter().all(|v| *v == Value::Null));
    }

    #[test]
    fn dictionaries_are_read_through_their_values() {
        let mut b = StringDictionaryBuilder::<Int32Type>::new();
        b.append_value("x");
        b.append_value("y");
        b.append_value("x");
        let a: ArrayRef = Arc::new(b.finish());
        let got: Vec<Value> = (0..3).map(|i| value(&a, i, false).unwrap()).collect();
        assert_eq!(
            got,
            [
                Value::Text("x".into()),
                Value::Text("y".into()),
                Value::Text("x".into())
            ]
        );
    }

    #[test]
    fn unloadable_types_and_repeated_names_are_refused() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("a", DataType::Int32, true),
        ]);
        assert!(columns(&schema)
            .unwrap_err()
            .message
            .contains("two columns"));
        let schema = Schema::new(vec![Field::new(
            "s",
            DataType::Struct(vec![Field::new("x", DataType::Int32, true)].into()),
            true,
        )]);
        assert!(columns(&schema).unwrap_err().message.contains("\"s\""));
    }
}
