//! `dbflow.TableValue` → [`Value::Table`]: rows of dicts (matched to the
//! table type's columns by name), of tuples (in its column order), or an
//! Arrow object (its columns by name).

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::from_py::to_value;
use crate::error::{Error, Result};
use crate::value::{TableArg, Value};

fn py_err(name: &str, e: PyErr) -> Error {
    Error::parameter(format!("parameter :{name}: {e}"))
}

pub(super) fn table_value(name: &str, obj: &Bound<'_, PyAny>) -> Result<Value> {
    let type_name: String = obj
        .getattr("type_name")
        .and_then(|t| t.extract())
        .map_err(|e| py_err(name, e))?;
    let rows = obj.getattr("rows").map_err(|e| py_err(name, e))?;
    if let Some(input) = crate::python::arrow_feed::input(&rows)? {
        let columns = crate::arrow::load::columns(&input.schema)?;
        let mut values = Vec::new();
        for batch in input.batches {
            let batch = batch?;
            values.extend(crate::arrow::load::rows(&batch, values.len())?);
        }
        return Ok(table(type_name, Some(columns), values));
    }
    let mut columns: Option<Vec<String>> = obj
        .getattr("columns")
        .and_then(|c| c.extract())
        .map_err(|e| py_err(name, e))?;
    let mut values = Vec::with_capacity(rows.len().unwrap_or(0));
    for (r, row) in rows.try_iter().map_err(|e| py_err(name, e))?.enumerate() {
        let row = row.map_err(|e| py_err(name, e))?;
        let label = |column: &str| format!("{name}, row {r}, {column}");
        if let Ok(dict) = row.cast::<PyDict>() {
            let names =
                columns.get_or_insert_with(|| dict.keys().iter().map(|k| k.to_string()).collect());
            let mut cells = Vec::with_capacity(names.len());
            for column in names.iter() {
                let cell = dict
                    .get_item(PyString::new(obj.py(), column))
                    .map_err(|e| py_err(name, e))?;
                cells.push(match cell {
                    Some(v) => to_value(&label(column), &v)?,
                    None => Value::Null,
                });
            }
            values.push(cells);
        } else {
            let mut cells = Vec::new();
            for (c, cell) in row.try_iter().map_err(|e| py_err(name, e))?.enumerate() {
                let cell = cell.map_err(|e| py_err(name, e))?;
                cells.push(to_value(&label(&format!("column {c}")), &cell)?);
            }
            values.push(cells);
        }
    }
    Ok(table(type_name, columns, values))
}

fn table(type_name: String, columns: Option<Vec<String>>, rows: Vec<Vec<Value>>) -> Value {
    Value::Table(Arc::new(TableArg {
        type_name,
        columns,
        rows,
    }))
}
