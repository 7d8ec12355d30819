//! [`Value`] → PostgreSQL binary parameters.
//!
//! Parameter types follow psycopg2's literal typing (what the replaced design
//! sent): scalars are declared with their own type (`int` as int4 or int8 by
//! size, `float` as float8, ...), while `str`, `None`, `list` and `dict` are
//! left unspecified so the server infers them from the statement (an enum or
//! inet column, an array, json). Each value is then encoded into the type the
//! server described.

use chrono::{Datelike, Timelike};

use super::decode::pg_epoch_date;
use super::oid;
use crate::value::Value;

/// What the server expects for one parameter, resolved from its type info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Builtin(u32),
    /// Enum labels travel as text in binary format.
    Enum,
    Array {
        element: Box<Target>,
        element_oid: u32,
    },
    /// A type dbflow has no binary encoder for (extension types): only the
    /// server can parse text into it, through a cast.
    Other,
}

impl Target {
    pub fn is_text_like(&self) -> bool {
        match self {
            Target::Enum => true,
            Target::Builtin(o) => {
                oid::CITEXT_LIKE_TEXT.contains(o) || matches!(*o, oid::XML | oid::CHAR)
            }
            _ => false,
        }
    }
}

/// Why a value cannot be encoded as the described type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Another declaration of the parameter (or a server-side cast) can
    /// make this work.
    Retype,
    /// The value itself does not fit (out of range, not a number, ...).
    Invalid(String),
}

/// The type to declare for a value; 0 lets the server infer it.
pub fn natural_oid(value: &Value) -> u32 {
    match value {
        Value::Null
        | Value::Text(_)
        | Value::Json(_)
        | Value::JsonText(_)
        | Value::Array(_)
        | Value::Table(_) => 0,
        Value::Bool(_) => oid::BOOL,
        Value::Int(i) if i32::try_from(*i).is_ok() => oid::INT4,
        Value::Int(_) => oid::INT8,
        Value::Float(_) => oid::FLOAT8,
        Value::Decimal(_) => oid::NUMERIC,
        Value::Bytes(_) => oid::BYTEA,
        Value::Date(_) => oid::DATE,
        Value::Time(_) => oid::TIME,
        Value::TimeTz(..) => oid::TIMETZ,
        Value::DateTime(_) => oid::TIMESTAMP,
        Value::DateTimeTz(_) => oid::TIMESTAMPTZ,
        Value::Interval { .. } => oid::INTERVAL,
        Value::Uuid(_) => oid::UUID,
    }
}

/// The type a value has where the statement does not constrain it
/// (`SELECT :v`): a list becomes an array of its elements' type, a dict jsonb.
pub fn standalone_oid(value: &Value) -> u32 {
    match value {
        Value::Text(_) => oid::TEXT,
        Value::Json(_) | Value::JsonText(_) => oid::JSONB,
        Value::Array(items) => {
            let mut element = 0;
            for item in items {
                let t = match item {
                    Value::Null => continue,
                    Value::Int(_) => oid::INT8,
                    v => standalone_oid(v),
                };
                if element == 0 || element == t {
                    element = t;
                } else if matches!(
                    (element, t),
                    (oid::INT8, oid::FLOAT8) | (oid::FLOAT8, oid::INT8)
                ) {
                    element = oid::FLOAT8;
                } else {
                    return oid::JSONB;
                }
            }
            if element == 0 {
                element = oid::TEXT;
            }
            oid::array_of(element).unwrap_or(oid::JSONB)
        }
        other => natural_oid(other),
    }
}

fn invalid(msg: impl Into<String>) -> Mismatch {
    Mismatch::Invalid(msg.into())
}

fn put_len_prefixed(
    buf: &mut Vec<u8>,
    f: impl FnOnce(&mut Vec<u8>) -> Result<(), Mismatch>,
) -> Result<(), Mismatch> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    f(buf)?;
    let len = i32::try_from(buf.len() - at - 4).map_err(|_| invalid("value larger than 2 GiB"))?;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Append the binary form of non-NULL `value` as `target` to `buf`.
pub fn encode(value: &Value, target: &Target, buf: &mut Vec<u8>) -> Result<(), Mismatch> {
    match target {
        Target::Enum => match value {
            Value::Text(s) => {
                buf.extend_from_slice(s.as_bytes());
                Ok(())
            }
            _ => Err(Mismatch::Retype),
        },
        Target::Other => Err(Mismatch::Retype),
        Target::Array {
            element,
            element_oid,
        } => {
            let Value::Array(items) = value else {
                return Err(Mismatch::Retype);
            };
            encode_array(items, element, *element_oid, buf)
        }
        Target::Builtin(t) => encode_builtin(value, *t, buf),
    }
}

fn encode_array(
    items: &[Value],
    element: &Target,
    element_oid: u32,
    buf: &mut Vec<u8>,
) -> Result<(), Mismatch> {
    // Rectangular nesting becomes dimensions, as PostgreSQL requires.
    let mut dims = vec![items.len()];
    let mut probe = items;
    while let Some(Value::Array(inner)) = probe.first() {
        dims.push(inner.len());
        probe = inner;
    }
    let mut flat: Vec<&Value> = Vec::with_capacity(items.len());
    flatten(items, &dims, &mut flat)?;
    let has_null = flat.iter().any(|v| matches!(v, Value::Null));
    buf.extend_from_slice(
        &(if items.is_empty() {
            0i32
        } else {
            dims.len() as i32
        })
        .to_be_bytes(),
    );
    buf.extend_from_slice(&(has_null as i32).to_be_bytes());
    buf.extend_from_slice(&element_oid.to_be_bytes());
    if !items.is_empty() {
        for d in &dims {
            buf.extend_from_slice(&(*d as i32).to_be_bytes());
            buf.extend_from_slice(&1i32.to_be_bytes());
        }
    }
    for v in flat {
        if matches!(v, Value::Null) {
            buf.extend_from_slice(&(-1i32).to_be_bytes());
        } else {
            put_len_prefixed(buf, |b| encode(v, element, b))?;
        }
    }
    Ok(())
}

fn flatten<'a>(
    items: &'a [Value],
    dims: &[usize],
    out: &mut Vec<&'a Value>,
) -> Result<(), Mismatch> {
    if items.len() != dims[0] {
        return Err(invalid(
            "nested lists must all have the same length to form an array",
        ));
    }
    if dims.len() == 1 {
        if items.iter().any(|v| matches!(v, Value::Array(_))) {
            return Err(invalid(
                "nested lists must all have the same depth to form an array",
            ));
        }
        out.extend(items);
        return Ok(());
    }
    for item in items {
        match item {
            Value::Array(inner) => flatten(inner, &dims[1..], out)?,
            _ => {
                return Err(invalid(
                    "nested lists must all have the same depth to form an array",
                ))
            }
        }
    }
    Ok(())
}

fn int_in_range(i: i64, bits: u32) -> Result<i64, Mismatch> {
    let (lo, hi) = match bits {
        16 => (i16::MIN as i64, i16::MAX as i64),
        32 => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    };
    if i < lo || i > hi {
        return Err(invalid(format!(
            "{i} is out of range for a {bits}-bit integer column"
        )));
    }
    Ok(i)
}

fn integral_decimal(d: &str) -> Option<i64> {
    let t = d.trim_end_matches('0').trim_end_matches('.');
    let t = if d.contains('.') { t } else { d };
    t.parse::<i64>().ok()
}

fn encode_builtin(value: &Value, t: u32, buf: &mut Vec<u8>) -> Result<(), Mismatch> {
    match (t, value) {
        (oid::JSON | oid::JSONB, v) => {
            if t == oid::JSONB {
                buf.push(1);
            }
            match v {
                Value::Text(s) | Value::JsonText(s) => buf.extend_from_slice(s.as_bytes()),
                other => other.write_json(buf),
            }
        }
        (_, Value::Text(s)) if Target::Builtin(t).is_text_like() => {
            buf.extend_from_slice(s.as_bytes())
        }
        (_, Value::Array(_) | Value::Json(_) | Value::JsonText(_)) => return Err(Mismatch::Retype),
        (_, v) if Target::Builtin(t).is_text_like() => {
            buf.extend_from_slice(v.to_text().as_bytes())
        }
        (_, Value::Text(_)) => return Err(Mismatch::Retype),
        (oid::BOOL, Value::Bool(b)) => buf.push(*b as u8),
        (oid::INT2 | oid::INT4 | oid::INT8, v) => {
            let i = match v {
                Value::Int(i) => *i,
                Value::Decimal(d) => integral_decimal(d)
                    .ok_or_else(|| invalid(format!("{d} is not a whole number")))?,
                Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => *f as i64,
                _ => return Err(Mismatch::Retype),
            };
            match t {
                oid::INT2 => buf.extend_from_slice(&(int_in_range(i, 16)? as i16).to_be_bytes()),
                oid::INT4 => buf.extend_from_slice(&(int_in_range(i, 32)? as i32).to_be_bytes()),
                _ => buf.extend_from_slice(&i.to_be_bytes()),
            }
        }
        (oid::FLOAT4 | oid::FLOAT8, v) => {
            let f = match v {
                Value::Float(f) => *f,
                Value::Int(i) => *i as f64,
                Value::Decimal(d) => d
                    .parse::<f64>()
                    .map_err(|_| invalid(format!("{d} is not a number")))?,
                _ => return Err(Mismatch::Retype),
            };
            if t == oid::FLOAT4 {
                buf.extend_from_slice(&(f as f32).to_be_bytes());
            } else {
                buf.extend_from_slice(&f.to_be_bytes());
            }
        }
        (oid::NUMERIC, v) => {
            let text = match v {
                Value::Decimal(d) => d.clone(),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => crate::value::format_float(*f),
                _ => return Err(Mismatch::Retype),
            };
            encode_numeric(&text, buf)?;
        }
        (oid::BYTEA, Value::Bytes(b)) => buf.extend_from_slice(b),
        (oid::UUID, Value::Uuid(u)) => buf.extend_from_slice(u.as_bytes()),
        // 16 bytes are a UUID's binary form (Arrow data whose UUID extension
        // type was dropped on the way, as Polars does).
        (oid::UUID, Value::Bytes(b)) if b.len() == 16 => buf.extend_from_slice(b),
        (oid::DATE, Value::Date(d)) => {
            let days = d.signed_duration_since(pg_epoch_date()).num_days();
            buf.extend_from_slice(&(days as i32).to_be_bytes());
        }
        (oid::TIME, Value::Time(tm)) => buf.extend_from_slice(&time_micros(tm).to_be_bytes()),
        (oid::TIMETZ, Value::TimeTz(tm, off)) => {
            buf.extend_from_slice(&time_micros(tm).to_be_bytes());
            buf.extend_from_slice(&(-off).to_be_bytes());
        }
        (oid::TIMESTAMP, Value::DateTime(dt)) => {
            buf.extend_from_slice(&timestamp_micros(dt)?.to_be_bytes());
        }
        (oid::TIMESTAMPTZ, Value::DateTimeTz(dt)) => {
            buf.extend_from_slice(&timestamp_micros(&dt.naive_utc())?.to_be_bytes());
        }
        (
            oid::INTERVAL,
            Value::Interval {
                months,
                days,
                micros,
            },
        ) => {
            buf.extend_from_slice(&micros.to_be_bytes());
            buf.extend_from_slice(&days.to_be_bytes());
            buf.extend_from_slice(&months.to_be_bytes());
        }
        _ => return Err(Mismatch::Retype),
    }
    Ok(())
}

fn time_micros(t: &chrono::NaiveTime) -> i64 {
    t.num_seconds_from_midnight() as i64 * 1_000_000 + (t.nanosecond() as i64 / 1000).min(999_999)
}

fn timestamp_micros(dt: &chrono::NaiveDateTime) -> Result<i64, Mismatch> {
    let epoch = pg_epoch_date()
        .and_hms_opt(0, 0, 0)
        .expect("valid constant");
    dt.signed_duration_since(epoch)
        .num_microseconds()
        .ok_or_else(|| {
            invalid(format!(
                "timestamp {dt} is out of range (year {})",
                dt.year()
            ))
        })
}

/// Decimal text (`-1.5E+3`, `NaN`, `Infinity`) → NUMERIC binary.
pub fn encode_numeric(text: &str, buf: &mut Vec<u8>) -> Result<(), Mismatch> {
    let bad = || invalid(format!("'{text}' is not a decimal number"));
    let s = text.trim();
    let special = |sign: u16, buf: &mut Vec<u8>| {
        buf.extend_from_slice(&0i16.to_be_bytes());
        buf.extend_from_slice(&0i16.to_be_bytes());
        buf.extend_from_slice(&sign.to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes());
    };
    match s.to_ascii_lowercase().as_str() {
        "nan" | "-nan" | "snan" => {
            special(0xC000, buf);
            return Ok(());
        }
        "infinity" | "inf" | "+infinity" | "+inf" => {
            special(0xD000, buf);
            return Ok(());
        }
        "-infinity" | "-inf" => {
            special(0xF000, buf);
            return Ok(());
        }
        _ => {}
    }
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(p) => (&s[..p], s[p + 1..].parse::<i64>().map_err(|_| bad())?),
        None => (s, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || exponent.abs() > 100_000
    {
        return Err(bad());
    }
    let mut digits: Vec<u8> = int_part
        .bytes()
        .chain(frac_part.bytes())
        .map(|b| b - b'0')
        .collect();
    let dscale = (frac_part.len() as i64 - exponent).max(0);
    // Digits before the decimal point once the exponent is applied.
    let mut point = int_part.len() as i64 + exponent;
    if point > digits.len() as i64 {
        digits.resize(point as usize, 0);
    }
    if point < 0 {
        digits.splice(0..0, std::iter::repeat_n(0u8, (-point) as usize));
        point = 0;
    }
    // Align base-10000 groups on the decimal point.
    let lead = ((4 - point % 4) % 4) as usize;
    digits.splice(0..0, std::iter::repeat_n(0u8, lead));
    let mut weight = (point + lead as i64) / 4 - 1;
    while !digits.len().is_multiple_of(4) {
        digits.push(0);
    }
    let mut groups: Vec<i16> = digits
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + *d as i16))
        .collect();
    let leading_zero_groups = groups.iter().take_while(|g| **g == 0).count();
    if leading_zero_groups == groups.len() {
        groups.clear();
        weight = 0;
    } else {
        groups.drain(..leading_zero_groups);
        weight -= leading_zero_groups as i64;
        while groups.last() == Some(&0) {
            groups.pop();
        }
    }
    if weight > i16::MAX as i64 || weight < i16::MIN as i64 || dscale > 0x3FFF {
        return Err(invalid(format!("'{text}' is out of range for numeric")));
    }
    buf.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    buf.extend_from_slice(&(weight as i16).to_be_bytes());
    let sign: u16 = if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    };
    buf.extend_from_slice(&sign.to_be_bytes());
    buf.extend_from_slice(&(dscale as u16).to_be_bytes());
    for g in groups {
        buf.extend_from_slice(&g.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::decode::numeric_to_string;
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(text: &str) -> String {
        let mut b = Vec::new();
        encode_numeric(text, &mut b).unwrap();
        numeric_to_string(&b).unwrap()
    }

    #[test]
    fn numeric_roundtrips() {
        for (input, expected) in [
            ("0", "0"),
            ("12.50", "12.50"),
            ("-0.001", "-0.001"),
            ("10000", "10000"),
            ("123456789.123456789", "123456789.123456789"),
            ("1E+3", "1000"),
            ("1.5E-7", "0.00000015"),
            ("0.00001234", "0.00001234"),
            ("NaN", "NaN"),
            ("-Infinity", "-Infinity"),
            (
                "99999999999999999999999999999999999999.5",
                "99999999999999999999999999999999999999.5",
            ),
            ("-0", "0"),
        ] {
            assert_eq!(roundtrip(input), expected, "{input}");
        }
    }

    #[test]
    fn bad_numeric_text_is_invalid() {
        for bad in ["", "abc", "1.2.3", "--1", "1e"] {
            assert!(encode_numeric(bad, &mut Vec::new()).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn numeric_roundtrip_property(int in "[0-9]{1,30}", frac in "[0-9]{0,20}", neg in any::<bool>()) {
            let text = if frac.is_empty() { int.clone() } else { format!("{int}.{frac}") };
            let text = if neg { format!("-{text}") } else { text };
            let got = roundtrip(&text);
            let norm = |s: &str| s.parse::<f64>().unwrap();
            prop_assert!((norm(&got) - norm(&text)).abs() <= norm(&text).abs() * 1e-12 + 1e-300);
            // scale is kept exactly
            prop_assert_eq!(got.split('.').nth(1).map(str::len).unwrap_or(0), frac.len());
        }
    }

    #[test]
    fn natural_types_follow_psycopg2_literals() {
        assert_eq!(natural_oid(&Value::Int(5)), oid::INT4);
        assert_eq!(natural_oid(&Value::Int(5_000_000_000)), oid::INT8);
        assert_eq!(natural_oid(&Value::Text("x".into())), 0);
        assert_eq!(
            standalone_oid(&Value::Array(vec![Value::Int(1), Value::Null])),
            1016
        );
        assert_eq!(standalone_oid(&Value::Array(vec![])), 1009);
        assert_eq!(
            standalone_oid(&Value::Array(vec![Value::Int(1), Value::Text("a".into())])),
            oid::JSONB
        );
    }

    #[test]
    fn ints_are_range_checked() {
        let mut b = Vec::new();
        assert!(matches!(
            encode(&Value::Int(70000), &Target::Builtin(oid::INT2), &mut b),
            Err(Mismatch::Invalid(_))
        ));
        assert!(encode(&Value::Int(7), &Target::Builtin(oid::INT2), &mut b).is_ok());
        assert_eq!(b, 7i16.to_be_bytes());
    }

    #[test]
    fn text_into_typed_target_asks_for_retype() {
        let r = encode(
            &Value::Text("2024-01-01".into()),
            &Target::Builtin(oid::DATE),
            &mut Vec::new(),
        );
        assert_eq!(r, Err(Mismatch::Retype));
    }
}
