//! PostgreSQL binary wire format → Arrow columns, cell by cell, with no
//! value in between. The column's Arrow type is chosen once from the
//! statement's description (type, and for `numeric(p,s)` the modifier);
//! every mapping is exact or an error naming the column.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder,
    IntervalMonthDayNanoBuilder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder, UInt32Builder,
};
use arrow_array::types::IntervalMonthDayNano;
use arrow_array::{ArrayRef, ListArray};
use arrow_buffer::{i256, NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};
use sqlx::postgres::{PgColumn, PgTypeInfo, PgTypeKind};
use sqlx::{Column, TypeInfo};

use super::{decode, oid};
use crate::arrow::{self as columnar, ArrowColumn, DAYS_1970_TO_2000};
use crate::error::Result;
use crate::value::Value;

/// Microseconds from 1970-01-01 to 2000-01-01.
const MICROS_1970_TO_2000: i64 = DAYS_1970_TO_2000 * 86_400_000_000;

/// One result column being built.
pub struct PgArrowColumn {
    name: Arc<str>,
    cells: Cells,
}

enum Cells {
    Bool(BooleanBuilder),
    Int2(Int16Builder),
    Int4(Int32Builder),
    Int8(Int64Builder),
    Oid(UInt32Builder),
    Float4(Float32Builder),
    Float8(Float64Builder),
    /// `numeric(p,s)` with p ≤ 38.
    Numeric(Decimal128Builder, i32),
    /// Unconstrained `numeric` (or p > 38): its exact decimal text.
    NumericText(StringBuilder),
    /// `money`: minor units, two fractional digits.
    Money(Decimal128Builder),
    /// Types whose binary form is their UTF-8 text.
    Text(StringBuilder),
    Jsonb(StringBuilder),
    /// Types read as their canonical text (inet, cidr, macaddr, bit).
    Formatted(StringBuilder, u32),
    Bytea(BinaryBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    List(Box<List>),
}

/// A one-dimensional array column: offsets into a child column.
struct List {
    field: Arc<Field>,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
    child: Cells,
}

/// The schema and the empty columns for a statement's result.
pub fn plan(columns: &[PgColumn]) -> Result<(SchemaRef, Vec<PgArrowColumn>)> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut cells = Vec::with_capacity(columns.len());
    for c in columns {
        let (data_type, made) = map(c.name(), c.type_info(), c.type_modifier())?;
        fields.push(match &made {
            Cells::Uuid(_) => columnar::uuid_field(c.name()),
            _ => columnar::field(c.name(), data_type),
        });
        cells.push(PgArrowColumn {
            name: Arc::from(c.name()),
            cells: made,
        });
    }
    Ok((columnar::schema(fields), cells))
}

/// `numeric(p,s)`'s precision and scale from its type modifier.
pub(super) fn numeric_modifier(typmod: i32) -> Option<(u8, i32)> {
    if typmod < 4 {
        return None;
    }
    let t = typmod - 4;
    let precision = (t >> 16) & 0xffff;
    // PostgreSQL 15 allows a negative scale: 11 bits, sign-extended.
    let scale = ((t & 0x7ff) ^ 1024) - 1024;
    (precision <= 38 && scale >= 0).then_some((precision as u8, scale))
}

fn map(column: &str, info: &PgTypeInfo, typmod: i32) -> Result<(DataType, Cells)> {
    match info.kind() {
        PgTypeKind::Enum(_) => return Ok((DataType::Utf8, Cells::Text(StringBuilder::new()))),
        PgTypeKind::Domain(base) => return map(column, base, typmod),
        PgTypeKind::Array(element) => {
            let (child_type, child) = map(column, element, typmod)?;
            let field = Arc::new(match &child {
                Cells::Uuid(_) => columnar::uuid_field("item"),
                _ => Field::new("item", child_type, true),
            });
            let list = List {
                field: field.clone(),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(0),
                child,
            };
            return Ok((DataType::List(field), Cells::List(Box::new(list))));
        }
        _ => {}
    }
    let unmapped = || columnar::unmapped(column, info.name());
    let Some(type_oid) = info.oid().map(|o| o.0) else {
        return Err(unmapped());
    };
    Ok(match type_oid {
        oid::BOOL => (DataType::Boolean, Cells::Bool(BooleanBuilder::new())),
        oid::INT2 => (DataType::Int16, Cells::Int2(Int16Builder::new())),
        oid::INT4 => (DataType::Int32, Cells::Int4(Int32Builder::new())),
        oid::INT8 => (DataType::Int64, Cells::Int8(Int64Builder::new())),
        oid::OID | oid::XID | oid::CID | oid::REGPROC | oid::REGCLASS | oid::REGTYPE => {
            (DataType::UInt32, Cells::Oid(UInt32Builder::new()))
        }
        oid::FLOAT4 => (DataType::Float32, Cells::Float4(Float32Builder::new())),
        oid::FLOAT8 => (DataType::Float64, Cells::Float8(Float64Builder::new())),
        oid::NUMERIC => match numeric_modifier(typmod) {
            Some((p, s)) => (
                DataType::Decimal128(p, s as i8),
                Cells::Numeric(decimal_builder(p, s as i8), s),
            ),
            None => (DataType::Utf8, Cells::NumericText(StringBuilder::new())),
        },
        oid::MONEY => (
            DataType::Decimal128(19, 2),
            Cells::Money(decimal_builder(19, 2)),
        ),
        oid::TEXT
        | oid::VARCHAR
        | oid::BPCHAR
        | oid::NAME
        | oid::UNKNOWN
        | oid::XML
        | oid::CHAR
        | oid::JSON => (DataType::Utf8, Cells::Text(StringBuilder::new())),
        oid::JSONB => (DataType::Utf8, Cells::Jsonb(StringBuilder::new())),
        oid::INET | oid::CIDR | oid::MACADDR | oid::BIT | oid::VARBIT => (
            DataType::Utf8,
            Cells::Formatted(StringBuilder::new(), type_oid),
        ),
        oid::BYTEA => (DataType::Binary, Cells::Bytea(BinaryBuilder::new())),
        oid::UUID => (
            DataType::FixedSizeBinary(16),
            Cells::Uuid(FixedSizeBinaryBuilder::new(16)),
        ),
        oid::DATE => (DataType::Date32, Cells::Date(Date32Builder::new())),
        oid::TIME => (
            DataType::Time64(TimeUnit::Microsecond),
            Cells::Time(Time64MicrosecondBuilder::new()),
        ),
        oid::TIMESTAMP => (
            DataType::Timestamp(TimeUnit::Microsecond, None),
            Cells::Timestamp(TimestampMicrosecondBuilder::new()),
        ),
        oid::TIMESTAMPTZ => (
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Cells::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
        ),
        oid::INTERVAL => (
            DataType::Interval(arrow_schema::IntervalUnit::MonthDayNano),
            Cells::Interval(IntervalMonthDayNanoBuilder::new()),
        ),
        _ => return Err(unmapped()),
    })
}

fn decimal_builder(precision: u8, scale: i8) -> Decimal128Builder {
    Decimal128Builder::new()
        .with_precision_and_scale(precision, scale)
        .expect("precision 1..=38 and scale 0..=precision checked by the caller")
}

impl PgArrowColumn {
    /// Append one cell (`None`: NULL).
    #[inline]
    pub fn append(&mut self, cell: Option<&[u8]>) -> Result<()> {
        self.cells
            .append(cell)
            .map_err(|what| columnar::unrepresentable(&self.name, &what))
    }
}

impl ArrowColumn for PgArrowColumn {
    fn finish(&mut self) -> ArrayRef {
        self.cells.finish()
    }
}

fn be<const N: usize>(b: &[u8], at: usize) -> std::result::Result<[u8; N], String> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| format!("value truncated: {} bytes", b.len()))
}

fn utf8(b: &[u8]) -> std::result::Result<&str, String> {
    std::str::from_utf8(b).map_err(|_| "text is not valid UTF-8".to_owned())
}

impl Cells {
    fn append(&mut self, cell: Option<&[u8]>) -> std::result::Result<(), String> {
        let Some(b) = cell else {
            self.append_null();
            return Ok(());
        };
        match self {
            Cells::Bool(x) => x.append_value(*b.first().ok_or("empty bool")? != 0),
            Cells::Int2(x) => x.append_value(i16::from_be_bytes(be(b, 0)?)),
            Cells::Int4(x) => x.append_value(i32::from_be_bytes(be(b, 0)?)),
            Cells::Int8(x) => x.append_value(i64::from_be_bytes(be(b, 0)?)),
            Cells::Oid(x) => x.append_value(u32::from_be_bytes(be(b, 0)?)),
            Cells::Float4(x) => x.append_value(f32::from_be_bytes(be(b, 0)?)),
            Cells::Float8(x) => x.append_value(f64::from_be_bytes(be(b, 0)?)),
            Cells::Numeric(x, scale) => x.append_value(numeric_scaled(b, *scale)?),
            Cells::NumericText(x) => x.append_value(decode::numeric_to_string(b)?),
            Cells::Money(x) => x.append_value(i64::from_be_bytes(be(b, 0)?) as i128),
            Cells::Text(x) => x.append_value(utf8(b)?),
            Cells::Jsonb(x) => match b.split_first() {
                Some((1, json)) => x.append_value(utf8(json)?),
                _ => return Err("unsupported jsonb version".into()),
            },
            Cells::Formatted(x, type_oid) => match decode::decode(*type_oid, b)? {
                Value::Text(t) => x.append_value(t),
                other => return Err(format!("unexpected {} value", other.kind_name())),
            },
            Cells::Bytea(x) => x.append_value(b),
            Cells::Uuid(x) => x.append_value(be::<16>(b, 0)?).map_err(|e| e.to_string())?,
            Cells::Date(x) => match i32::from_be_bytes(be(b, 0)?) {
                i32::MAX | i32::MIN => return Err(infinite("date32")),
                days => x.append_value(days + DAYS_1970_TO_2000 as i32),
            },
            Cells::Time(x) => match i64::from_be_bytes(be(b, 0)?) {
                86_400_000_000 => {
                    return Err("24:00:00 is not an Arrow time of day; cast it in the \
                                query"
                        .into())
                }
                micros => x.append_value(micros),
            },
            Cells::Timestamp(x) => match i64::from_be_bytes(be(b, 0)?) {
                i64::MAX | i64::MIN => return Err(infinite("timestamp")),
                micros => x.append_value(micros + MICROS_1970_TO_2000),
            },
            Cells::Interval(x) => {
                let micros = i64::from_be_bytes(be(b, 0)?);
                let days = i32::from_be_bytes(be(b, 8)?);
                let months = i32::from_be_bytes(be(b, 12)?);
                let nanos = micros
                    .checked_mul(1000)
                    .ok_or("interval too long for nanoseconds")?;
                x.append_value(IntervalMonthDayNano::new(months, days, nanos))
            }
            Cells::List(list) => list.append(b)?,
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            Cells::Bool(x) => x.append_null(),
            Cells::Int2(x) => x.append_null(),
            Cells::Int4(x) => x.append_null(),
            Cells::Int8(x) => x.append_null(),
            Cells::Oid(x) => x.append_null(),
            Cells::Float4(x) => x.append_null(),
            Cells::Float8(x) => x.append_null(),
            Cells::Numeric(x, _) | Cells::Money(x) => x.append_null(),
            Cells::NumericText(x) | Cells::Text(x) | Cells::Jsonb(x) | Cells::Formatted(x, _) => {
                x.append_null()
            }
            Cells::Bytea(x) => x.append_null(),
            Cells::Uuid(x) => x.append_null(),
            Cells::Date(x) => x.append_null(),
            Cells::Time(x) => x.append_null(),
            Cells::Timestamp(x) => x.append_null(),
            Cells::Interval(x) => x.append_null(),
            Cells::List(list) => {
                list.offsets.push(*list.offsets.last().unwrap_or(&0));
                list.nulls.append_null();
            }
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Cells::Bool(x) => Arc::new(x.finish()),
            Cells::Int2(x) => Arc::new(x.finish()),
            Cells::Int4(x) => Arc::new(x.finish()),
            Cells::Int8(x) => Arc::new(x.finish()),
            Cells::Oid(x) => Arc::new(x.finish()),
            Cells::Float4(x) => Arc::new(x.finish()),
            Cells::Float8(x) => Arc::new(x.finish()),
            Cells::Numeric(x, _) | Cells::Money(x) => Arc::new(x.finish()),
            Cells::NumericText(x) | Cells::Text(x) | Cells::Jsonb(x) | Cells::Formatted(x, _) => {
                Arc::new(x.finish())
            }
            Cells::Bytea(x) => Arc::new(x.finish()),
            Cells::Uuid(x) => Arc::new(x.finish()),
            Cells::Date(x) => Arc::new(x.finish()),
            Cells::Time(x) => Arc::new(x.finish()),
            Cells::Timestamp(x) => Arc::new(x.finish()),
            Cells::Interval(x) => Arc::new(x.finish()),
            Cells::List(list) => list.finish(),
        }
    }
}

fn infinite(arrow_type: &str) -> String {
    format!("'infinity' cannot be held by Arrow's {arrow_type}; filter or cast it in the query")
}

impl List {
    /// A binary array value: its elements go to the child column.
    fn append(&mut self, b: &[u8]) -> std::result::Result<(), String> {
        let ndim = i32::from_be_bytes(be(b, 0)?);
        let mut count = 0usize;
        if ndim > 1 {
            return Err(format!(
                "a {ndim}-dimensional array; Arrow lists here have one dimension (unnest it, or \
                 cast it to text)"
            ));
        }
        if ndim == 1 {
            count = i32::from_be_bytes(be(b, 12)?).max(0) as usize;
            let mut at = 20;
            for _ in 0..count {
                let len = i32::from_be_bytes(be(b, at)?);
                at += 4;
                if len < 0 {
                    self.child.append(None)?;
                    continue;
                }
                let end = at + len as usize;
                self.child
                    .append(Some(b.get(at..end).ok_or("array element truncated")?))?;
                at = end;
            }
        }
        let last = *self.offsets.last().unwrap_or(&0);
        let next = i32::try_from(count)
            .ok()
            .and_then(|n| last.checked_add(n))
            .ok_or("a batch's lists hold more than 2^31 elements; lower batch_rows")?;
        self.offsets.push(next);
        self.nulls.append_non_null();
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let values = self.child.finish();
        let nulls = self.nulls.finish();
        Arc::new(ListArray::new(self.field.clone(), offsets, values, nulls))
    }
}

/// A binary `numeric` as an integer of `scale` fractional digits; an error
/// for NaN, infinities and digits the scale cannot hold.
fn numeric_scaled(b: &[u8], scale: i32) -> std::result::Result<i128, String> {
    let ndigits = u16::from_be_bytes(be(b, 0)?) as i32;
    let weight = i16::from_be_bytes(be(b, 2)?) as i32;
    let sign = u16::from_be_bytes(be(b, 4)?);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => {
            return Err(
                "NaN cannot be held by decimal128; filter it out or cast the column to \
                        text in the query"
                    .into(),
            )
        }
        _ => {
            return Err(
                "an infinite numeric cannot be held by decimal128; filter it out or cast \
                        the column to text in the query"
                    .into(),
            )
        }
    }
    let overflow = || "a numeric too large for decimal128".to_owned();
    // 38 digits take ten base-10000 groups, whose padding can pass i128
    // before the scale is applied: accumulate in 256 bits.
    let ten_thousand = i256::from_i128(10_000);
    let mut acc = i256::ZERO;
    for i in 0..ndigits as usize {
        let digit = i256::from_i128(u16::from_be_bytes(be(b, 8 + 2 * i)?) as i128);
        acc = acc
            .checked_mul(ten_thousand)
            .and_then(|a| a.checked_add(digit))
            .ok_or_else(overflow)?;
    }
    let exponent = 4 * (weight - ndigits + 1) + scale;
    let ten = i256::from_i128(10);
    let value = if exponent >= 0 {
        ten.checked_pow(exponent as u32)
            .and_then(|f| acc.checked_mul(f))
            .ok_or_else(overflow)?
    } else {
        match ten.checked_pow((-exponent) as u32) {
            Some(f) if acc.checked_rem(f) == Some(i256::ZERO) => {
                acc.checked_div(f).ok_or_else(overflow)?
            }
            None if acc == i256::ZERO => i256::ZERO,
            _ => return Err(format!("more than {scale} fractional digits")),
        }
    };
    let value = value.to_i128().ok_or_else(overflow)?;
    Ok(if sign == 0x4000 { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int32Type};
    use arrow_array::Array;

    /// The binary form of a numeric from its base-10000 digits.
    fn numeric(digits: &[u16], weight: i16, negative: bool, dscale: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend((digits.len() as u16).to_be_bytes());
        b.extend(weight.to_be_bytes());
        b.extend((if negative { 0x4000u16 } else { 0 }).to_be_bytes());
        b.extend(dscale.to_be_bytes());
        for d in digits {
            b.extend(d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_scale_exactly() {
        // 12345.67 = [1, 2345, 6700] weight 1
        let b = numeric(&[1, 2345, 6700], 1, false, 2);
        assert_eq!(numeric_scaled(&b, 2), Ok(1_234_567));
        assert_eq!(numeric_scaled(&b, 4), Ok(123_456_700));
        assert!(numeric_scaled(&b, 1).is_err());
        let negative = numeric(&[0, 5000], 0, true, 2); // -0.5 as [0?]
        assert_eq!(numeric_scaled(&negative, 2), Ok(-50));
        assert_eq!(numeric_scaled(&numeric(&[], 0, false, 0), 2), Ok(0));
        let nan = [0u8, 0, 0, 0, 0xC0, 0, 0, 0];
        assert!(numeric_scaled(&nan, 2).unwrap_err().contains("NaN"));
        // numeric(38,38): ten groups, the last padded, fit once scaled.
        let digits = [
            1234u16, 5678, 9012, 3456, 7890, 1234, 5678, 9012, 3456, 7800,
        ];
        let b = numeric(&digits, -1, false, 38);
        assert_eq!(
            numeric_scaled(&b, 38),
            Ok(12345678901234567890123456789012345678)
        );
    }

    #[test]
    fn numeric_modifiers_decode() {
        assert_eq!(numeric_modifier((12 << 16 | 2) + 4), Some((12, 2)));
        assert_eq!(numeric_modifier(-1), None);
        assert_eq!(numeric_modifier((40 << 16) + 4), None);
    }

    #[test]
    fn decimals_and_nulls_build_an_array() {
        let mut c = Cells::Numeric(decimal_builder(12, 2), 2);
        c.append(Some(&numeric(&[1, 2345, 6700], 1, false, 2)))
            .unwrap();
        c.append(None).unwrap();
        let a = c.finish();
        let a = a.as_primitive::<Decimal128Type>();
        assert_eq!(a.value(0), 1_234_567);
        assert!(a.is_null(1));
        assert_eq!(a.data_type(), &DataType::Decimal128(12, 2));
    }

    #[test]
    fn arrays_become_lists_and_many_dimensions_are_refused() {
        let mut c = Cells::List(Box::new(List {
            field: Arc::new(Field::new("item", DataType::Int32, true)),
            offsets: vec![0],
            nulls: NullBufferBuilder::new(0),
            child: Cells::Int4(Int32Builder::new()),
        }));
        // int4[] {7, NULL}: ndim 1, flags, element oid, dim 2, lower 1.
        let mut b = Vec::new();
        for v in [1i32, 1, 23, 2, 1] {
            b.extend(v.to_be_bytes());
        }
        b.extend(4i32.to_be_bytes());
        b.extend(7i32.to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        c.append(Some(&b)).unwrap();
        c.append(None).unwrap();
        let a = c.finish();
        let list = a.as_list::<i32>();
        assert_eq!(list.len(), 2);
        assert!(list.is_null(1));
        let first = list.value(0);
        let ints = first.as_primitive::<Int32Type>();
        assert_eq!(ints.value(0), 7);
        assert!(ints.is_null(1));
        let mut two_dims = b.clone();
        two_dims[..4].copy_from_slice(&2i32.to_be_bytes());
        let mut c = Cells::List(Box::new(List {
            field: Arc::new(Field::new("item", DataType::Int32, true)),
            offsets: vec![0],
            nulls: NullBufferBuilder::new(0),
            child: Cells::Int4(Int32Builder::new()),
        }));
        assert!(c
            .append(Some(&two_dims))
            .unwrap_err()
            .contains("2-dimensional"));
    }

    #[test]
    fn timestamps_move_to_the_unix_epoch_and_infinity_is_refused() {
        let mut c = Cells::Timestamp(TimestampMicrosecondBuilder::new());
        c.append(Some(&0i64.to_be_bytes())).unwrap();
        assert!(c.append(Some(&i64::MAX.to_be_bytes())).is_err());
        let a = c.finish();
        let a = a.as_primitive::<arrow_array::types::TimestampMicrosecondType>();
        assert_eq!(a.value(0), 946_684_800_000_000);
    }
}
