//! Arrow record batches written straight into binary `COPY` rows: each
//! column's buffer is read once per cell and written in its target
//! column's binary form, with no value in between, for the pairs a load
//! meets (an Arrow int64 into `bigint`, a string into `text` or `jsonb`, a
//! decimal into `numeric`, a timestamp into `timestamptz`, ...). Any other
//! pair goes through a [`Value`](crate::value::Value) and the encoder rows
//! use, so every Arrow type that loads as a value loads here too.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

use super::encode::{self, Mismatch, Target};
use super::oid;
use crate::arrow::{load, DAYS_1970_TO_2000};
use crate::error::{Error, Result};

/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const MICROS_1970_TO_2000: i64 = DAYS_1970_TO_2000 * 86_400_000_000;

/// A target column: its binary encoder, its type's name (for messages) and
/// a `numeric(p,s)`'s scale (a decimal with more digits is refused rather
/// than rounded by the server).
pub(super) struct TargetColumn {
    pub target: Target,
    pub type_name: String,
    pub numeric_scale: Option<i32>,
}

/// How one column's cells are written.
enum Writer<'a> {
    /// An integer into `smallint` / `integer` / `bigint` (range-checked).
    Int(Ints<'a>, u32),
    Float32(&'a [f32], bool),
    Float64(&'a [f64]),
    Bool(&'a arrow_array::BooleanArray),
    /// UTF-8 bytes as they are (text types, `json`), or after `jsonb`'s
    /// version byte.
    Text(Strings<'a>, bool),
    Bytes(Binaries<'a>),
    Uuid(&'a arrow_array::FixedSizeBinaryArray),
    Decimal(&'a [i128], i32, Option<i32>),
    Date(&'a [i32]),
    Timestamp(&'a [i64], TimeUnit),
    Time(&'a [i64], TimeUnit),
    /// Through a value and the row encoder.
    Value(&'a ArrayRef, bool),
}

enum Ints<'a> {
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
}

impl Ints<'_> {
    #[inline]
    fn get(&self, i: usize) -> i64 {
        match self {
            Ints::I8(v) => v[i] as i64,
            Ints::I16(v) => v[i] as i64,
            Ints::I32(v) => v[i] as i64,
            Ints::I64(v) => v[i],
            Ints::U8(v) => v[i] as i64,
            Ints::U16(v) => v[i] as i64,
            Ints::U32(v) => v[i] as i64,
        }
    }
}

enum Strings<'a> {
    Small(&'a arrow_array::StringArray),
    Large(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
}

impl Strings<'_> {
    #[inline]
    fn get(&self, i: usize) -> &[u8] {
        match self {
            Strings::Small(a) => a.value(i).as_bytes(),
            Strings::Large(a) => a.value(i).as_bytes(),
            Strings::View(a) => a.value(i).as_bytes(),
        }
    }
}

enum Binaries<'a> {
    Small(&'a arrow_array::BinaryArray),
    Large(&'a arrow_array::LargeBinaryArray),
    View(&'a arrow_array::BinaryViewArray),
    Fixed(&'a arrow_array::FixedSizeBinaryArray),
}

impl Binaries<'_> {
    #[inline]
    fn get(&self, i: usize) -> &[u8] {
        match self {
            Binaries::Small(a) => a.value(i),
            Binaries::Large(a) => a.value(i),
            Binaries::View(a) => a.value(i),
            Binaries::Fixed(a) => a.value(i),
        }
    }
}

fn ints(array: &ArrayRef) -> Option<Ints<'_>> {
    Some(match array.data_type() {
        DataType::Int8 => Ints::I8(array.as_primitive::<Int8Type>().values()),
        DataType::Int16 => Ints::I16(array.as_primitive::<Int16Type>().values()),
        DataType::Int32 => Ints::I32(array.as_primitive::<Int32Type>().values()),
        DataType::Int64 => Ints::I64(array.as_primitive::<Int64Type>().values()),
        DataType::UInt8 => Ints::U8(array.as_primitive::<UInt8Type>().values()),
        DataType::UInt16 => Ints::U16(array.as_primitive::<UInt16Type>().values()),
        DataType::UInt32 => Ints::U32(array.as_primitive::<UInt32Type>().values()),
        _ => return None,
    })
}

fn strings(array: &ArrayRef) -> Option<Strings<'_>> {
    Some(match array.data_type() {
        DataType::Utf8 => Strings::Small(array.as_string::<i32>()),
        DataType::LargeUtf8 => Strings::Large(array.as_string::<i64>()),
        DataType::Utf8View => Strings::View(array.as_string_view()),
        _ => return None,
    })
}

fn binaries(array: &ArrayRef) -> Option<Binaries<'_>> {
    Some(match array.data_type() {
        DataType::Binary => Binaries::Small(array.as_binary::<i32>()),
        DataType::LargeBinary => Binaries::Large(array.as_binary::<i64>()),
        DataType::BinaryView => Binaries::View(array.as_binary_view()),
        DataType::FixedSizeBinary(_) => Binaries::Fixed(array.as_fixed_size_binary()),
        _ => return None,
    })
}

fn timestamps(array: &ArrayRef) -> &[i64] {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            array.as_primitive::<TimestampSecondType>().values()
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            array.as_primitive::<TimestampMillisecondType>().values()
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            array.as_primitive::<TimestampMicrosecondType>().values()
        }
        _ => array.as_primitive::<TimestampNanosecondType>().values(),
    }
}

/// The writer of one column into `target`.
fn writer<'a>(array: &'a ArrayRef, uuid: bool, target: &TargetColumn) -> Writer<'a> {
    let Target::Builtin(target_oid) = target.target else {
        return Writer::Value(array, uuid);
    };
    let data_type = array.data_type();
    match (data_type, target_oid) {
        (_, oid::INT2 | oid::INT4 | oid::INT8) if ints(array).is_some() => {
            Writer::Int(ints(array).expect("checked"), target_oid)
        }
        (DataType::Float32, oid::FLOAT4 | oid::FLOAT8) => Writer::Float32(
            array.as_primitive::<Float32Type>().values(),
            target_oid == oid::FLOAT8,
        ),
        (DataType::Float64, oid::FLOAT8) => {
            Writer::Float64(array.as_primitive::<Float64Type>().values())
        }
        (DataType::Boolean, oid::BOOL) => Writer::Bool(array.as_boolean()),
        (
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View,
            oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::JSON | oid::JSONB,
        ) => Writer::Text(strings(array).expect("checked"), target_oid == oid::JSONB),
        (DataType::FixedSizeBinary(16), oid::UUID) => Writer::Uuid(array.as_fixed_size_binary()),
        (_, oid::BYTEA) if binaries(array).is_some() => {
            Writer::Bytes(binaries(array).expect("checked"))
        }
        (DataType::Decimal128(_, scale), oid::NUMERIC) => Writer::Decimal(
            array.as_primitive::<Decimal128Type>().values(),
            *scale as i32,
            target.numeric_scale,
        ),
        (DataType::Date32, oid::DATE) => Writer::Date(array.as_primitive::<Date32Type>().values()),
        (DataType::Timestamp(unit, None), oid::TIMESTAMP)
        | (DataType::Timestamp(unit, Some(_)), oid::TIMESTAMPTZ) => {
            Writer::Timestamp(timestamps(array), *unit)
        }
        (DataType::Time64(unit), oid::TIME) => Writer::Time(
            match unit {
                TimeUnit::Microsecond => array.as_primitive::<Time64MicrosecondType>().values(),
                _ => array.as_primitive::<Time64NanosecondType>().values(),
            },
            *unit,
        ),
        _ => Writer::Value(array, uuid),
    }
}

/// Write every row of `batch` (its columns in `targets`' order) as binary
/// COPY rows.
pub(super) fn encode_batch(
    buf: &mut Vec<u8>,
    batch: &RecordBatch,
    first_row: usize,
    targets: &[TargetColumn],
    columns: &[String],
) -> Result<()> {
    if batch.num_columns() != targets.len() {
        return Err(Error::parameter(format!(
            "the data has {} columns for {} table columns",
            batch.num_columns(),
            targets.len()
        )));
    }
    let schema = batch.schema();
    let writers: Vec<Writer<'_>> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .zip(targets)
        .map(|((array, field), target)| writer(array, crate::arrow::is_uuid(field), target))
        .collect();
    let field_count = (targets.len() as i16).to_be_bytes();
    for row in 0..batch.num_rows() {
        buf.extend_from_slice(&field_count);
        for (c, (w, array)) in writers.iter().zip(batch.columns()).enumerate() {
            if array.is_null(row) {
                buf.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            if let Err(why) = write(buf, w, row, &targets[c]) {
                let field = schema.field(c);
                let what = match why {
                    Mismatch::Invalid(msg) => msg,
                    Mismatch::Retype => format!(
                        "{} cannot be written to a {} column",
                        load::origin(field),
                        targets[c].type_name
                    ),
                };
                return Err(Error::parameter(format!(
                    "row {}, column {}: {what}",
                    first_row + row,
                    columns[c]
                )));
            }
        }
    }
    Ok(())
}

/// One fixed-size value: its length, then its bytes.
#[inline]
fn fixed(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    buf.extend_from_slice(bytes);
}

fn write(
    buf: &mut Vec<u8>,
    w: &Writer<'_>,
    i: usize,
    target: &TargetColumn,
) -> std::result::Result<(), Mismatch> {
    let invalid = |m: String| Mismatch::Invalid(m);
    match w {
        Writer::Int(values, target_oid) => {
            let v = values.get(i);
            let out_of_range = || invalid(format!("{v} is out of range for {}", target.type_name));
            match *target_oid {
                oid::INT2 => fixed(
                    buf,
                    &i16::try_from(v).map_err(|_| out_of_range())?.to_be_bytes(),
                ),
                oid::INT4 => fixed(
                    buf,
                    &i32::try_from(v).map_err(|_| out_of_range())?.to_be_bytes(),
                ),
                _ => fixed(buf, &v.to_be_bytes()),
            }
        }
        Writer::Float32(values, widen) => {
            if *widen {
                // Through the shortest text, as a Python float would be.
                let f = values[i];
                let wide: f64 = format!("{f}").parse().unwrap_or(f as f64);
                fixed(buf, &wide.to_be_bytes())
            } else {
                fixed(buf, &values[i].to_be_bytes())
            }
        }
        Writer::Float64(values) => fixed(buf, &values[i].to_be_bytes()),
        Writer::Bool(a) => fixed(buf, &[a.value(i) as u8]),
        Writer::Text(s, jsonb) => {
            let bytes = s.get(i);
            if *jsonb {
                buf.extend_from_slice(&(bytes.len() as i32 + 1).to_be_bytes());
                buf.push(1);
                buf.extend_from_slice(bytes);
            } else {
                fixed(buf, bytes)
            }
        }
        Writer::Bytes(b) => {
            let bytes = b.get(i);
            if bytes.len() > i32::MAX as usize {
                return Err(invalid("a value over 2 GiB".into()));
            }
            fixed(buf, bytes)
        }
        Writer::Uuid(a) => fixed(buf, a.value(i)),
        Writer::Decimal(values, scale, column_scale) => {
            numeric(buf, values[i], *scale, *column_scale).map_err(invalid)?
        }
        Writer::Date(days) => fixed(buf, &(days[i] - DAYS_1970_TO_2000 as i32).to_be_bytes()),
        Writer::Timestamp(values, unit) => {
            let micros = micros_of(values[i], *unit).map_err(invalid)?;
            let pg = micros
                .checked_sub(MICROS_1970_TO_2000)
                .ok_or_else(|| invalid("timestamp out of range".into()))?;
            fixed(buf, &pg.to_be_bytes())
        }
        Writer::Time(values, unit) => fixed(
            buf,
            &micros_of(values[i], *unit).map_err(invalid)?.to_be_bytes(),
        ),
        Writer::Value(array, uuid) => {
            let value = load::value(array, i, *uuid).map_err(invalid)?;
            let at = buf.len();
            buf.extend_from_slice(&[0; 4]);
            encode::encode(&value, &target.target, buf)?;
            let len = (buf.len() - at - 4) as i32;
            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }
    Ok(())
}

/// A time or timestamp in microseconds; sub-microsecond digits are refused
/// (PostgreSQL keeps microseconds and would round them away).
fn micros_of(v: i64, unit: TimeUnit) -> std::result::Result<i64, String> {
    match unit {
        TimeUnit::Second => v
            .checked_mul(1_000_000)
            .ok_or_else(|| "out of range".into()),
        TimeUnit::Millisecond => v.checked_mul(1000).ok_or_else(|| "out of range".into()),
        TimeUnit::Microsecond => Ok(v),
        TimeUnit::Nanosecond if v % 1000 == 0 => Ok(v / 1000),
        TimeUnit::Nanosecond => Err(
            "a value with nanoseconds, which PostgreSQL (microseconds) would round; round it \
             first"
                .into(),
        ),
    }
}

/// A decimal of `scale` fractional digits in PostgreSQL's binary `numeric`
/// form; digits beyond the column's scale are refused, not rounded.
fn numeric(
    buf: &mut Vec<u8>,
    value: i128,
    scale: i32,
    column_scale: Option<i32>,
) -> std::result::Result<(), String> {
    if let Some(keep) = column_scale.filter(|keep| *keep < scale) {
        let f = 10i128.pow((scale - keep) as u32);
        if value % f != 0 {
            return Err(format!(
                "{} has more than the {keep} fractional digits the column keeps; round it first",
                load::decimal_text(value.to_string(), scale as i8)
            ));
        }
    }
    let negative = value < 0;
    let magnitude = value.unsigned_abs();
    let (int, frac) = if scale > 0 {
        let f = 10u128.pow(scale as u32);
        (magnitude / f, magnitude % f)
    } else {
        let f = 10u128.pow((-scale) as u32);
        (magnitude.checked_mul(f).ok_or("a decimal too large")?, 0)
    };
    let mut digits: Vec<i16> = Vec::with_capacity(12);
    let mut rest = int;
    while rest > 0 {
        digits.push((rest % 10_000) as i16);
        rest /= 10_000;
    }
    digits.reverse();
    let weight = digits.len() as i16 - 1;
    let scale = scale.max(0) as u32;
    let groups = scale.div_ceil(4);
    if groups > 0 {
        // The fraction, padded on the right to whole groups of 4 digits.
        let mut padded = frac * 10u128.pow(groups * 4 - scale);
        let mut fraction = vec![0i16; groups as usize];
        for slot in fraction.iter_mut().rev() {
            *slot = (padded % 10_000) as i16;
            padded /= 10_000;
        }
        digits.extend(fraction);
    }
    let (weight, digits) = if int == 0 {
        (-1, &digits[..])
    } else {
        (weight, &digits[..])
    };
    let len = 8 + 2 * digits.len();
    buf.extend_from_slice(&(len as i32).to_be_bytes());
    buf.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    buf.extend_from_slice(&weight.to_be_bytes());
    buf.extend_from_slice(&(if negative { 0x4000u16 } else { 0 }).to_be_bytes());
    buf.extend_from_slice(&(scale as u16).to_be_bytes());
    for d in digits {
        buf.extend_from_slice(&d.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value a binary numeric holds, as text (via the decoder).
    fn roundtrip(value: i128, scale: i32) -> String {
        let mut buf = Vec::new();
        numeric(&mut buf, value, scale, None).unwrap();
        super::super::decode::numeric_to_string(&buf[4..]).unwrap()
    }

    #[test]
    fn decimals_encode_exactly() {
        assert_eq!(roundtrip(123_456, 2), "1234.56");
        assert_eq!(roundtrip(-5, 3), "-0.005");
        assert_eq!(roundtrip(0, 2), "0.00");
        assert_eq!(roundtrip(100_000_000, 0), "100000000");
        assert_eq!(roundtrip(1, 9), "0.000000001");
        assert_eq!(roundtrip(i128::MAX / 10, 10), {
            let digits = (i128::MAX / 10).to_string();
            let (a, b) = digits.split_at(digits.len() - 10);
            format!("{a}.{b}")
        });
    }

    #[test]
    fn digits_the_column_would_round_are_refused() {
        let mut buf = Vec::new();
        assert!(numeric(&mut buf, 12_345, 4, Some(2))
            .unwrap_err()
            .contains("1.2345"));
        numeric(&mut buf, 12_300, 4, Some(2)).unwrap();
    }

    #[test]
    fn nanoseconds_that_would_round_are_refused() {
        assert_eq!(micros_of(5_000, TimeUnit::Nanosecond), Ok(5));
        assert!(micros_of(5_001, TimeUnit::Nanosecond).is_err());
        assert_eq!(micros_of(2, TimeUnit::Second), Ok(2_000_000));
    }
}
