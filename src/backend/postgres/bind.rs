//! Parameters bound as the server's described types (psycopg2-compatible
//! typing: a value that does not fit is sent as its own type and cast by
//! the server), and result columns read in binary.

use sqlx::postgres::{PgArguments, PgStatement, PgTypeInfo, PgTypeKind};
use sqlx::{Arguments, Either, Executor, SqlSafeStr, Statement as _, TypeInfo};

use super::encode::{self, Mismatch, Target};
use super::{decode, oid, PgConn};
use crate::error::{Error, Result};
use crate::sql::ParsedSql;
use crate::value::Value;

pub(super) fn target_of(info: &PgTypeInfo) -> Target {
    let oid = info.oid().map(|o| o.0).unwrap_or(0);
    match info.kind() {
        PgTypeKind::Enum(_) => Target::Enum,
        PgTypeKind::Domain(base) => target_of(base),
        PgTypeKind::Array(element) => Target::Array {
            element_oid: element.oid().map(|o| o.0).unwrap_or(0),
            element: Box::new(target_of(element)),
        },
        _ => match oid::array_element(oid) {
            Some(element) => Target::Array {
                element: Box::new(Target::Builtin(element)),
                element_oid: element,
            },
            None if is_mapped(oid) => Target::Builtin(oid),
            None => Target::Other,
        },
    }
}

fn is_mapped(o: u32) -> bool {
    use oid::*;
    matches!(
        o,
        BOOL | BYTEA
            | CHAR
            | NAME
            | INT8
            | INT2
            | INT4
            | TEXT
            | JSON
            | XML
            | FLOAT4
            | FLOAT8
            | UNKNOWN
            | BPCHAR
            | VARCHAR
            | DATE
            | TIME
            | TIMESTAMP
            | TIMESTAMPTZ
            | INTERVAL
            | TIMETZ
            | NUMERIC
            | UUID
            | JSONB
    )
}

/// How to read one result column.
#[derive(Clone, Copy)]
pub(super) enum Reader {
    Builtin(u32),
    Text,
    Array,
    Fallback,
}

pub(super) fn reader_of(info: &PgTypeInfo) -> Reader {
    match info.kind() {
        PgTypeKind::Enum(_) => Reader::Text,
        PgTypeKind::Domain(base) => reader_of(base),
        PgTypeKind::Array(_) => Reader::Array,
        _ => match info.oid().map(|o| o.0) {
            Some(o) if o != 0 => Reader::Builtin(o),
            _ => Reader::Fallback,
        },
    }
}

pub(super) fn read(reader: Reader, bytes: &[u8]) -> Result<Value> {
    let r = match reader {
        Reader::Builtin(o) => decode::decode(o, bytes),
        Reader::Array => decode::decode_array(bytes),
        Reader::Text => Ok(decode::fallback(bytes)),
        Reader::Fallback => Ok(decode::fallback(bytes)),
    };
    r.map_err(|e| Error::query(format!("cannot decode a value from the server: {e}")))
}

/// Parameter declarations and casts for one attempt at preparing.
struct Plan {
    declared: Vec<u32>,
    casts: Vec<Option<String>>,
    variant: bool,
}

impl Plan {
    fn sql(&self, parsed: &ParsedSql) -> String {
        let mut sql = parsed.render_with(|i| match &self.casts[i] {
            Some(ty) => format!("CAST(${} AS {ty})", i + 1),
            None => format!("${}", i + 1),
        });
        if self.variant {
            // A distinct text keeps this variant apart in the statement cache,
            // which sqlx keys by SQL text alone.
            let sig: Vec<String> = self.declared.iter().map(u32::to_string).collect();
            sql.push_str(&format!("\n/* dbflow params: {} */", sig.join(",")));
        }
        sql
    }
}

/// A parameter value bound as the server's described type.
struct Bound<'a> {
    value: &'a Value,
    info: PgTypeInfo,
    target: Target,
}

/// A prepared statement with its parameters' server types, to bind more
/// values of the same shape without preparing or describing again.
pub(super) struct Typed {
    pub(super) stmt: PgStatement,
    params: Vec<(PgTypeInfo, Target)>,
}

impl Typed {
    pub(super) fn of(stmt: &PgStatement) -> Option<Typed> {
        let Some(Either::Left(params)) = stmt.parameters() else {
            return None;
        };
        Some(Typed {
            stmt: stmt.clone(),
            params: params.iter().map(|p| (p.clone(), target_of(p))).collect(),
        })
    }

    /// The values bound to these types; `None` if any value does not fit
    /// (the caller then binds afresh).
    pub(super) fn encode(&self, values: &[Value]) -> Option<PgArguments> {
        if values.len() != self.params.len() {
            return None;
        }
        let mut args = PgArguments::default();
        args.reserve(values.len(), values.len() * 8);
        for (value, (info, target)) in values.iter().zip(&self.params) {
            let bound = Bound {
                value,
                info: info.clone(),
                target: target.clone(),
            };
            args.add(bound).ok()?;
        }
        Some(args)
    }
}

#[derive(Debug)]
struct MismatchError(Mismatch);
impl std::fmt::Display for MismatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Mismatch::Retype => f.write_str("type mismatch"),
            Mismatch::Invalid(m) => f.write_str(m),
        }
    }
}
impl std::error::Error for MismatchError {}

impl sqlx::Type<sqlx::Postgres> for Bound<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Bound<'_> {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> std::result::Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        if matches!(self.value, Value::Null) {
            return Ok(sqlx::encode::IsNull::Yes);
        }
        encode::encode(self.value, &self.target, buf)
            .map_err(|m| -> sqlx::error::BoxDynError { Box::new(MismatchError(m)) })?;
        Ok(sqlx::encode::IsNull::No)
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(self.info.clone())
    }
}

impl PgConn {
    /// A statement with a comment (`<DB>_QUERY_COMMENTS`) runs as its
    /// commented text with the description of the statement without it,
    /// prepared and cached as usual: the cache never sees the comment, and
    /// the commented text is parsed in the round trip that runs it (vendored
    /// sqlx-postgres patch 0011; callers run it unnamed, `persistent(false)`).
    fn with_comment(&self, stmt: PgStatement, parsed: &ParsedSql, plan: &Plan) -> PgStatement {
        if parsed.comment.is_none() {
            return stmt;
        }
        let text = parsed.commented(plan.sql(parsed));
        stmt.with_sql(sqlx::AssertSqlSafe(text).into_sql_str())
    }

    /// Prepare (cached per connection) and bind: one round trip when warm.
    pub(super) async fn bind(
        &mut self,
        parsed: &ParsedSql,
        values: &[Value],
    ) -> Result<(sqlx::postgres::PgStatement, PgArguments)> {
        if let Some(i) = values.iter().position(|v| matches!(v, Value::Table(_))) {
            return Err(Error::parameter(format!(
                "parameter :{}: PostgreSQL has no table-valued parameters; pass a list as an \
                 array parameter and use unnest(:{0}) (SELECT * FROM unnest(:{0}) AS t(id)) \
                 or = ANY(:{0})",
                parsed.names[i]
            )));
        }
        let mut plan = Plan {
            declared: values.iter().map(encode::natural_oid).collect(),
            casts: vec![None; values.len()],
            variant: false,
        };
        for _attempt in 0..4 {
            let types: Vec<PgTypeInfo> = plan
                .declared
                .iter()
                .map(|o| PgTypeInfo::with_oid(sqlx::postgres::types::Oid(*o)))
                .collect();
            let sql = plan.sql(parsed);
            let stmt = self
                .conn
                .prepare_with(sqlx::AssertSqlSafe(sql).into_sql_str(), &types)
                .await?;
            let described: Vec<PgTypeInfo> = match stmt.parameters() {
                Some(Either::Left(p)) => p.to_vec(),
                _ => types.clone(),
            };
            let mut args = PgArguments::default();
            args.reserve(values.len(), values.len() * 8);
            let mut retry = false;
            // Whether this attempt is already a variant: several values may
            // ask for one in the same attempt (a later chunk of many rows).
            let in_variant = plan.variant;
            for (i, (value, info)) in values.iter().zip(described.iter()).enumerate() {
                let target = target_of(info);
                let bound = Bound {
                    value,
                    info: info.clone(),
                    target: target.clone(),
                };
                let Err(err) = args.add(bound) else { continue };
                let mismatch = err.downcast_ref::<MismatchError>().map(|m| m.0.clone());
                let name = &parsed.names[i];
                match mismatch {
                    Some(Mismatch::Invalid(msg)) if in_variant => {
                        return Err(Error::parameter(format!("parameter :{name}: {msg}")))
                    }
                    Some(Mismatch::Retype | Mismatch::Invalid(_)) if !in_variant => {
                        // The type may come from a statement cached for other
                        // value types: prepare a variant of our own, so the
                        // server infers afresh for these values.
                        plan.declared[i] = encode::natural_oid(value);
                        plan.variant = true;
                        retry = true;
                    }
                    Some(Mismatch::Retype) if plan.declared[i] == 0 && plan.casts[i].is_none() => {
                        // The statement constrains the parameter: send the
                        // value as its own type and let the server convert
                        // it, as it converts psycopg2's quoted literal.
                        plan.declared[i] = encode::standalone_oid(value);
                        if !target.is_text_like() {
                            plan.casts[i] = Some(info.name().to_owned());
                        }
                        retry = true;
                    }
                    _ => {
                        return Err(Error::parameter(format!(
                            "parameter :{name}: a Python {} cannot be sent where the server expects {}; \
                             pass a matching value or add a cast in the SQL",
                            value.kind_name(),
                            info.name()
                        )))
                    }
                }
            }
            if !retry {
                return Ok((self.with_comment(stmt, parsed, &plan), args));
            }
        }
        Err(Error::parameter("the statement's parameter types could not be settled; add explicit casts (:name::type)"))
    }
}
