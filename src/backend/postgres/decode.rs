//! PostgreSQL binary wire format → [`Value`]. Pure functions over bytes, so
//! every mapping is unit-tested without a server. A type without a mapping
//! comes back as its wire text when that is UTF-8 (enums, citext, ltree and
//! most extension types send text), else as bytes — never a crash.

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};

use super::oid;
use crate::value::Value;

pub type DecodeResult = Result<Value, String>;

fn take<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N], String> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| {
            format!(
                "value truncated: expected at least {} bytes, got {}",
                at + N,
                b.len()
            )
        })
}

fn be_i16(b: &[u8], at: usize) -> Result<i16, String> {
    take::<2>(b, at).map(i16::from_be_bytes)
}
fn be_u16(b: &[u8], at: usize) -> Result<u16, String> {
    take::<2>(b, at).map(u16::from_be_bytes)
}
fn be_i32(b: &[u8], at: usize) -> Result<i32, String> {
    take::<4>(b, at).map(i32::from_be_bytes)
}
fn be_i64(b: &[u8], at: usize) -> Result<i64, String> {
    take::<8>(b, at).map(i64::from_be_bytes)
}

pub fn pg_epoch_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid constant date")
}

fn pg_epoch() -> NaiveDateTime {
    pg_epoch_date()
        .and_hms_opt(0, 0, 0)
        .expect("valid constant time")
}

fn text(b: &[u8]) -> DecodeResult {
    String::from_utf8(b.to_vec())
        .map(Value::Text)
        .map_err(|_| "text is not valid UTF-8".into())
}

/// Decode one non-NULL value of built-in type `type_oid`.
pub fn decode(type_oid: u32, b: &[u8]) -> DecodeResult {
    Ok(match type_oid {
        oid::BOOL => Value::Bool(*b.first().ok_or("empty bool")? != 0),
        oid::INT2 => Value::Int(be_i16(b, 0)? as i64),
        oid::INT4 => Value::Int(be_i32(b, 0)? as i64),
        oid::INT8 => Value::Int(be_i64(b, 0)?),
        oid::OID | oid::XID | oid::CID | oid::REGPROC | oid::REGCLASS | oid::REGTYPE => {
            Value::Int(u32::from_be_bytes(take::<4>(b, 0)?) as i64)
        }
        oid::FLOAT4 => {
            // Through the shortest text so 0.1::float4 reads as 0.1, as in psycopg2.
            let f = f32::from_be_bytes(take::<4>(b, 0)?);
            Value::Float(format!("{f}").parse::<f64>().unwrap_or(f as f64))
        }
        oid::FLOAT8 => Value::Float(f64::from_be_bytes(take::<8>(b, 0)?)),
        oid::NUMERIC => Value::Decimal(numeric_to_string(b)?),
        oid::MONEY => Value::Decimal(money_to_string(be_i64(b, 0)?)),
        oid::TEXT
        | oid::VARCHAR
        | oid::BPCHAR
        | oid::NAME
        | oid::UNKNOWN
        | oid::XML
        | oid::CHAR => text(b)?,
        oid::JSON => parse_json(b)?,
        oid::JSONB => {
            if b.first() != Some(&1) {
                return Err("unsupported jsonb version".into());
            }
            parse_json(&b[1..])?
        }
        oid::BYTEA => Value::Bytes(b.to_vec()),
        oid::UUID => Value::Uuid(uuid::Uuid::from_bytes(take::<16>(b, 0)?)),
        oid::DATE => match be_i32(b, 0)? {
            i32::MAX => Value::Text("infinity".into()),
            i32::MIN => Value::Text("-infinity".into()),
            days => pg_epoch_date()
                .checked_add_signed(Duration::days(days as i64))
                .map(Value::Date)
                .ok_or("date out of range")?,
        },
        oid::TIME => Value::Time(time_from_micros(be_i64(b, 0)?)?),
        oid::TIMETZ => {
            let t = time_from_micros(be_i64(b, 0)?)?;
            // The wire holds seconds *west* of UTC.
            Value::TimeTz(t, -be_i32(b, 8)?)
        }
        oid::TIMESTAMP | oid::TIMESTAMPTZ => match be_i64(b, 0)? {
            i64::MAX => Value::Text("infinity".into()),
            i64::MIN => Value::Text("-infinity".into()),
            micros => {
                let dt = pg_epoch()
                    .checked_add_signed(Duration::microseconds(micros))
                    .ok_or("timestamp out of range")?;
                if type_oid == oid::TIMESTAMPTZ {
                    Value::utc(dt.and_utc())
                } else {
                    Value::DateTime(dt)
                }
            }
        },
        oid::INTERVAL => Value::Interval {
            micros: be_i64(b, 0)?,
            days: be_i32(b, 8)?,
            months: be_i32(b, 12)?,
        },
        oid::INET | oid::CIDR => Value::Text(inet_to_string(b)?),
        oid::MACADDR => Value::Text(
            take::<6>(b, 0)?
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        ),
        oid::BIT | oid::VARBIT => Value::Text(bits_to_string(b)?),
        oid::POINT => Value::Text(format!(
            "({},{})",
            f64::from_be_bytes(take::<8>(b, 0)?),
            f64::from_be_bytes(take::<8>(b, 8)?)
        )),
        other if oid::array_element(other).is_some() => decode_array(b)?,
        _ => fallback(b),
    })
}

/// The documented fallback for types without a mapping.
pub fn fallback(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::Text(s.to_owned()),
        Err(_) => Value::Bytes(b.to_vec()),
    }
}

/// The server validated the JSON; it is parsed once, into Python objects,
/// when the row is converted.
fn parse_json(b: &[u8]) -> DecodeResult {
    std::str::from_utf8(b)
        .map(|s| Value::JsonText(s.to_owned()))
        .map_err(|e| format!("JSON from the server is not UTF-8: {e}"))
}

fn time_from_micros(micros: i64) -> Result<NaiveTime, String> {
    // 24:00:00 is a valid PostgreSQL time; Python has no such value.
    let micros = micros.min(86_399_999_999);
    let secs = (micros / 1_000_000) as u32;
    let nanos = ((micros % 1_000_000) * 1000) as u32;
    NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
        .ok_or_else(|| "time out of range".into())
}

/// Binary arrays carry their element OID, so any element type decodes;
/// several dimensions become nested lists.
pub fn decode_array(b: &[u8]) -> DecodeResult {
    let ndim = be_i32(b, 0)?;
    let element = u32::from_be_bytes(take::<4>(b, 8)?);
    if ndim == 0 {
        return Ok(Value::Array(Vec::new()));
    }
    if !(1..=6).contains(&ndim) {
        return Err(format!("array with {ndim} dimensions"));
    }
    let mut dims = Vec::with_capacity(ndim as usize);
    for d in 0..ndim as usize {
        dims.push(be_i32(b, 12 + d * 8)?.max(0) as usize);
    }
    let mut at = 12 + ndim as usize * 8;
    let total: usize = dims.iter().product();
    let mut flat = Vec::with_capacity(total.min(1 << 20));
    for _ in 0..total {
        let len = be_i32(b, at)?;
        at += 4;
        if len < 0 {
            flat.push(Value::Null);
            continue;
        }
        let end = at + len as usize;
        let bytes = b.get(at..end).ok_or("array element truncated")?;
        flat.push(match decode(element, bytes) {
            Ok(v) => v,
            Err(_) => fallback(bytes),
        });
        at = end;
    }
    Ok(nest(flat, &dims))
}

fn nest(flat: Vec<Value>, dims: &[usize]) -> Value {
    if dims.len() <= 1 {
        return Value::Array(flat);
    }
    let inner: usize = dims[1..].iter().product();
    let mut out = Vec::with_capacity(dims[0]);
    let mut it = flat.into_iter();
    for _ in 0..dims[0] {
        let chunk: Vec<Value> = it.by_ref().take(inner).collect();
        out.push(nest(chunk, &dims[1..]));
    }
    Value::Array(out)
}

/// NUMERIC's base-10000 digits → decimal text (NaN and ±Infinity included).
pub fn numeric_to_string(b: &[u8]) -> Result<String, String> {
    let ndigits = be_i16(b, 0)?.max(0) as usize;
    let weight = be_i16(b, 2)? as i32;
    let sign = be_u16(b, 4)?;
    let dscale = be_u16(b, 6)? as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let mut digits = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        digits.push(be_i16(b, 8 + i * 2)?);
    }
    let group = |j: i32| -> i16 {
        if j >= 0 && (j as usize) < digits.len() {
            digits[j as usize]
        } else {
            0
        }
    };
    let mut s = String::with_capacity(ndigits * 4 + 4);
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for j in 0..=weight {
            if j == 0 {
                s.push_str(&group(j).to_string());
            } else {
                s.push_str(&format!("{:04}", group(j)));
            }
        }
    }
    if dscale > 0 {
        s.push('.');
        let mut frac = String::with_capacity(dscale + 4);
        let mut p = 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", group(weight + p)));
            p += 1;
        }
        frac.truncate(dscale);
        s.push_str(&frac);
    }
    Ok(s)
}

fn money_to_string(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn inet_to_string(b: &[u8]) -> Result<String, String> {
    let family = *b.first().ok_or("empty inet")?;
    let bits = *b.get(1).ok_or("inet truncated")?;
    let is_cidr = *b.get(2).ok_or("inet truncated")? != 0;
    let addr = b.get(4..).ok_or("inet truncated")?;
    let (text, max) = match family {
        2 => {
            let a: [u8; 4] = addr
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or("inet truncated")?;
            (std::net::Ipv4Addr::from(a).to_string(), 32)
        }
        3 => {
            let a: [u8; 16] = addr
                .get(..16)
                .and_then(|s| s.try_into().ok())
                .ok_or("inet truncated")?;
            (std::net::Ipv6Addr::from(a).to_string(), 128)
        }
        f => return Err(format!("unknown inet family {f}")),
    };
    Ok(if is_cidr || bits != max {
        format!("{text}/{bits}")
    } else {
        text
    })
}

fn bits_to_string(b: &[u8]) -> Result<String, String> {
    let n = be_i32(b, 0)?.max(0) as usize;
    let data = b.get(4..).ok_or("bit string truncated")?;
    Ok((0..n)
        .map(|i| {
            if data
                .get(i / 8)
                .is_some_and(|byte| byte & (0x80 >> (i % 8)) != 0)
            {
                '1'
            } else {
                '0'
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(ndigits.to_be_bytes());
        b.extend(weight.to_be_bytes());
        b.extend(sign.to_be_bytes());
        b.extend(dscale.to_be_bytes());
        for d in digits {
            b.extend(d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics() {
        assert_eq!(
            numeric_to_string(&numeric(2, 0, 0, 2, &[12, 5000])).unwrap(),
            "12.50"
        );
        assert_eq!(
            numeric_to_string(&numeric(1, -1, 0x4000, 3, &[10])).unwrap(),
            "-0.001"
        );
        assert_eq!(
            numeric_to_string(&numeric(2, 1, 0, 0, &[1, 0])).unwrap(),
            "10000"
        );
        assert_eq!(
            numeric_to_string(&numeric(1, 2, 0, 0, &[7])).unwrap(),
            "700000000"
        );
        assert_eq!(numeric_to_string(&numeric(0, 0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(
            numeric_to_string(&numeric(0, 0, 0xC000, 0, &[])).unwrap(),
            "NaN"
        );
        assert_eq!(
            numeric_to_string(&numeric(0, 0, 0xF000, 0, &[])).unwrap(),
            "-Infinity"
        );
        assert_eq!(
            numeric_to_string(&numeric(1, -2, 0, 8, &[1234])).unwrap(),
            "0.00001234"
        );
    }

    #[test]
    fn scalars() {
        assert_eq!(
            decode(oid::INT2, &(-3i16).to_be_bytes()).unwrap(),
            Value::Int(-3)
        );
        assert_eq!(
            decode(oid::FLOAT4, &0.1f32.to_be_bytes()).unwrap(),
            Value::Float(0.1)
        );
        assert_eq!(
            decode(oid::MONEY, &(-1234i64).to_be_bytes()).unwrap(),
            Value::Decimal("-12.34".into())
        );
        assert_eq!(
            decode(oid::DATE, &1i32.to_be_bytes()).unwrap(),
            Value::Date(NaiveDate::from_ymd_opt(2000, 1, 2).unwrap())
        );
        assert_eq!(
            decode(oid::DATE, &i32::MAX.to_be_bytes()).unwrap(),
            Value::Text("infinity".into())
        );
        assert_eq!(
            decode(oid::INET, &[2, 32, 0, 4, 10, 0, 0, 1]).unwrap(),
            Value::Text("10.0.0.1".into())
        );
        assert_eq!(
            decode(oid::CIDR, &[2, 8, 1, 4, 10, 0, 0, 0]).unwrap(),
            Value::Text("10.0.0.0/8".into())
        );
        assert_eq!(
            decode(oid::JSONB, b"\x01{\"a\": 1}").unwrap(),
            Value::JsonText("{\"a\": 1}".to_owned())
        );
        assert_eq!(
            decode(oid::VARBIT, &[0, 0, 0, 3, 0b1010_0000]).unwrap(),
            Value::Text("101".into())
        );
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        for ty in [
            oid::INT8,
            oid::NUMERIC,
            oid::UUID,
            oid::INET,
            oid::INTERVAL,
            oid::TIMETZ,
            1007,
        ] {
            assert!(decode(ty, &[1, 2]).is_err(), "{ty}");
        }
    }

    #[test]
    fn two_dimensional_array_with_null() {
        let mut b = Vec::new();
        b.extend(2i32.to_be_bytes());
        b.extend(1i32.to_be_bytes());
        b.extend(oid::INT4.to_be_bytes());
        b.extend(2i32.to_be_bytes());
        b.extend(1i32.to_be_bytes());
        b.extend(2i32.to_be_bytes());
        b.extend(1i32.to_be_bytes());
        for v in [Some(1i32), None, Some(3), Some(4)] {
            match v {
                Some(v) => {
                    b.extend(4i32.to_be_bytes());
                    b.extend(v.to_be_bytes());
                }
                None => b.extend((-1i32).to_be_bytes()),
            }
        }
        assert_eq!(
            decode(1007, &b).unwrap(),
            Value::Array(vec![
                Value::Array(vec![Value::Int(1), Value::Null]),
                Value::Array(vec![Value::Int(3), Value::Int(4)]),
            ])
        );
    }

    #[test]
    fn unknown_types_fall_back() {
        assert_eq!(
            decode(99999, b"happy").unwrap(),
            Value::Text("happy".into())
        );
        assert_eq!(
            decode(99999, &[0xff, 0]).unwrap(),
            Value::Bytes(vec![0xff, 0])
        );
    }
}
