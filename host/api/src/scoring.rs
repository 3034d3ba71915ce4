//! MLflow's scoring protocol (what `mlflow models serve` answers at
//! `/invocations`), read into a table and written back:
//!
//! - `application/json` with one of `dataframe_split` (`{"columns": [..],
//!   "data": [[..], ..]}`), `dataframe_records` (`[{"col": v, ..}, ..]`),
//!   `instances` or `inputs` (records, `{"col": [..]}` columns, or rows
//!   as lists in the model's column order);
//! - `text/csv` with a header row.
//!
//! The answer is `{"predictions": [..]}`, and `probabilities` (one object
//! per row, class → probability) when the model gives them.

use crate::serving::signature::{Kind, Signature};
use kiln_services::dataset::{Column, ColumnData, Table};
use serde_json::{Map, Value, json};

/// Why a body is not a request; the message names the key, column or row.
#[derive(Debug, PartialEq)]
pub struct BadRequest {
    pub message: String,
    pub column: Option<String>,
}

fn bad(message: impl Into<String>) -> BadRequest {
    BadRequest { message: message.into(), column: None }
}

fn bad_column(column: &str, message: impl Into<String>) -> BadRequest {
    BadRequest { message: message.into(), column: Some(column.to_string()) }
}

const KEYS: &str = "dataframe_split, dataframe_records, instances or inputs";

/// A JSON request body as a table, typed by `signature` where it names the
/// column (by the values otherwise).
pub fn from_json(body: &[u8], signature: &Signature) -> Result<Table, BadRequest> {
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let Value::Object(mut top) = value else { return Err(bad(format!("the body must be a JSON object with one of {KEYS}"))) };
    if let Some(params) = top.remove("params")
        && !params.is_null()
        && params.as_object().is_none_or(|p| !p.is_empty())
    {
        return Err(bad("`params` were sent, but Kiln's served models take none"));
    }
    let keys: Vec<String> = top.keys().cloned().collect();
    let [key] = keys.as_slice() else {
        return Err(bad(if keys.is_empty() {
            format!("the body has none of {KEYS}")
        } else {
            format!("the body must have exactly one of {KEYS}; it has {}", keys.join(", "))
        }));
    };
    let payload = top.remove(key.as_str()).unwrap_or(Value::Null);
    let columns = match key.as_str() {
        "dataframe_split" => split(payload)?,
        "dataframe_records" => records(payload, "dataframe_records")?,
        "instances" | "inputs" => tensor(payload, key, signature)?,
        other => return Err(bad(format!("`{other}` is not a key of MLflow's scoring protocol (use one of {KEYS})"))),
    };
    table(columns, signature)
}

/// Named columns of JSON values, in first-seen order.
type RawColumns = Vec<(String, Vec<Value>)>;

fn split(payload: Value) -> Result<RawColumns, BadRequest> {
    let Value::Object(mut split) = payload else { return Err(bad("`dataframe_split` must be an object with `columns` and `data`")) };
    let names: Vec<String> = match split.remove("columns") {
        Some(Value::Array(names)) => names
            .into_iter()
            .enumerate()
            .map(|(i, n)| n.as_str().map(String::from).ok_or_else(|| bad(format!("`dataframe_split.columns[{i}]` is not a string"))))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("`dataframe_split.columns` must be a list of column names")),
    };
    let Some(Value::Array(rows)) = split.remove("data") else { return Err(bad("`dataframe_split.data` must be a list of rows")) };
    let mut columns: RawColumns = names.iter().map(|n| (n.clone(), Vec::with_capacity(rows.len()))).collect();
    for (r, row) in rows.into_iter().enumerate() {
        let Value::Array(values) = row else { return Err(bad(format!("`dataframe_split.data[{r}]` is not a list"))) };
        if values.len() != names.len() {
            return Err(bad(format!("`dataframe_split.data[{r}]` has {} values for {} columns", values.len(), names.len())));
        }
        for (c, v) in values.into_iter().enumerate() {
            columns[c].1.push(v);
        }
    }
    Ok(columns)
}

fn records(payload: Value, key: &str) -> Result<RawColumns, BadRequest> {
    let Value::Array(rows) = payload else { return Err(bad(format!("`{key}` must be a list of records"))) };
    let mut columns: RawColumns = Vec::new();
    for (r, row) in rows.into_iter().enumerate() {
        let Value::Object(fields) = row else { return Err(bad(format!("`{key}[{r}]` is not an object"))) };
        if r > 0 && fields.len() != columns.len() {
            return Err(bad(format!("`{key}[{r}]` has {} fields, the first record {}", fields.len(), columns.len())));
        }
        for (name, v) in fields {
            match columns.iter_mut().find(|(n, _)| *n == name) {
                Some((_, values)) if values.len() == r => values.push(v),
                Some(_) => return Err(bad(format!("`{key}[{r}]` repeats field `{name}`"))),
                None if r == 0 => columns.push((name, vec![v])),
                None => return Err(bad_column(&name, format!("`{key}[{r}]` has field `{name}`, which the first record lacks"))),
            }
        }
    }
    Ok(columns)
}

fn tensor(payload: Value, key: &str, signature: &Signature) -> Result<RawColumns, BadRequest> {
    match payload {
        // Columns: {"a": [..], "b": [..]}.
        Value::Object(fields) => Ok(fields
            .into_iter()
            .map(|(name, v)| match v {
                Value::Array(values) => (name, values),
                scalar => (name, vec![scalar]),
            })
            .collect()),
        Value::Array(rows) if rows.first().is_some_and(Value::is_object) => records(Value::Array(rows), key),
        // Rows as lists, in the model's column order.
        Value::Array(rows) => {
            if signature.inputs.is_empty() {
                return Err(bad(format!("`{key}` as lists needs the model's column order, which this model does not record: send records instead")));
            }
            let names: Vec<String> = signature.inputs.iter().map(|i| i.name.clone()).collect();
            let data: Vec<Value> = rows.into_iter().map(|r| if r.is_array() { r } else { Value::Array(vec![r]) }).collect();
            let mut split_body = Map::new();
            split_body.insert("columns".into(), json!(names));
            split_body.insert("data".into(), Value::Array(data));
            split(Value::Object(split_body)).map_err(|e| BadRequest { message: e.message.replace("dataframe_split.data", key), ..e })
        }
        _ => Err(bad(format!("`{key}` must be a list of rows or an object of columns"))),
    }
}

fn table(columns: RawColumns, signature: &Signature) -> Result<Table, BadRequest> {
    let rows = columns.first().map(|(_, v)| v.len()).unwrap_or(0);
    let mut out = Vec::with_capacity(columns.len());
    for (name, values) in columns {
        if values.len() != rows {
            return Err(bad_column(&name, format!("column `{name}` has {} values, the others {rows}", values.len())));
        }
        let kind = signature.kind_of(&name).unwrap_or_else(|| if values.iter().any(Value::is_string) { Kind::String } else { Kind::Double });
        let data = match kind {
            Kind::Double => ColumnData::Numeric(
                values
                    .iter()
                    .enumerate()
                    .map(|(r, v)| match v {
                        Value::Number(n) => n.as_f64().ok_or_else(|| bad_column(&name, format!("column `{name}`, row {r}: {n} is not a number"))),
                        Value::Null => Ok(f64::NAN),
                        other => Err(bad_column(&name, format!("column `{name}`, row {r}: {other} is not a number"))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Kind::String => ColumnData::Categorical(
                values
                    .into_iter()
                    .enumerate()
                    .map(|(r, v)| match v {
                        Value::String(s) => Ok(s),
                        Value::Null => Ok(String::new()),
                        Value::Number(n) => Ok(n.to_string()),
                        other => Err(bad_column(&name, format!("column `{name}`, row {r}: {other} is not a category"))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        out.push(Column { name, data });
    }
    Ok(Table { rows, columns: out })
}

/// A `text/csv` body (header row first), typed by `signature`.
pub fn from_csv(body: &[u8], signature: &Signature) -> Result<Table, BadRequest> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(body);
    let names: Vec<String> = reader.headers().map_err(|e| bad(format!("the CSV header: {e}")))?.iter().map(String::from).collect();
    let mut texts: Vec<Vec<String>> = vec![Vec::new(); names.len()];
    for (r, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(format!("CSV line {}: {e}", r + 2)))?;
        for (c, field) in record.iter().enumerate() {
            texts[c].push(field.to_string());
        }
    }
    let rows = texts.first().map(Vec::len).unwrap_or(0);
    let mut columns = Vec::with_capacity(names.len());
    for (name, values) in names.into_iter().zip(texts) {
        let numeric = values.iter().all(|v| v.trim().is_empty() || v.trim().parse::<f64>().is_ok());
        let kind = signature.kind_of(&name).unwrap_or(if numeric { Kind::Double } else { Kind::String });
        let data = match kind {
            Kind::Double => ColumnData::Numeric(
                values
                    .iter()
                    .enumerate()
                    .map(|(r, v)| match v.trim() {
                        "" => Ok(f64::NAN),
                        t => t.parse().map_err(|_| bad_column(&name, format!("column `{name}`, CSV line {}: `{t}` is not a number", r + 2))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Kind::String => ColumnData::Categorical(values),
        };
        columns.push(Column { name, data });
    }
    Ok(Table { rows, columns })
}

/// `{"predictions": [..]}` (whole numbers as integers, as scikit-learn's
/// labels come back from `mlflow models serve`), with `probabilities`
/// when the model gave `proba:<class>` columns.
pub fn response(predictions: &Table) -> Value {
    let number = |v: f64| -> Value {
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
            json!(v as i64)
        } else if v.is_finite() {
            json!(v)
        } else {
            Value::Null
        }
    };
    let column = |c: &Column| -> Vec<Value> {
        match &c.data {
            ColumnData::Numeric(v) => v.iter().map(|x| number(*x)).collect(),
            ColumnData::Categorical(v) => v.iter().map(|s| json!(s)).collect(),
        }
    };
    let mut body = Map::new();
    body.insert("predictions".into(), json!(predictions.column("prediction").map(column).unwrap_or_default()));
    let proba: Vec<(&str, &[f64])> =
        predictions.columns.iter().filter_map(|c| Some((c.name.strip_prefix("proba:")?, c.as_numeric().ok()?))).collect();
    if !proba.is_empty() {
        let rows: Vec<Value> =
            (0..predictions.rows).map(|r| Value::Object(proba.iter().map(|(class, p)| (class.to_string(), json!(p[r]))).collect())).collect();
        body.insert("probabilities".into(), Value::Array(rows));
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serving::signature::Input;

    fn sig() -> Signature {
        Signature {
            inputs: vec![Input { name: "x".into(), kind: Kind::Double }, Input { name: "color".into(), kind: Kind::String }],
            ..Default::default()
        }
    }

    fn numeric(t: &Table, name: &str) -> Vec<f64> {
        t.column(name).unwrap().as_numeric().unwrap().to_vec()
    }

    #[test]
    fn every_json_form_reads_to_the_same_table() {
        let bodies = [
            r#"{"dataframe_split": {"columns": ["x", "color"], "data": [[1, "red"], [2.5, "blue"]]}}"#,
            r#"{"dataframe_records": [{"x": 1, "color": "red"}, {"x": 2.5, "color": "blue"}]}"#,
            r#"{"instances": [{"x": 1, "color": "red"}, {"x": 2.5, "color": "blue"}]}"#,
            r#"{"inputs": {"x": [1, 2.5], "color": ["red", "blue"]}}"#,
            r#"{"inputs": [[1, "red"], [2.5, "blue"]]}"#,
        ];
        for body in bodies {
            let t = from_json(body.as_bytes(), &sig()).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(t.rows, 2, "{body}");
            assert_eq!(numeric(&t, "x"), [1.0, 2.5], "{body}");
            assert!(matches!(&t.column("color").unwrap().data, ColumnData::Categorical(c) if c == &["red", "blue"]), "{body}");
        }
        let t = from_csv(b"x,color\n1,red\n,blue\n", &sig()).unwrap();
        assert_eq!(t.rows, 2);
        assert!(numeric(&t, "x")[1].is_nan(), "an empty CSV field is missing");
    }

    #[test]
    fn bad_bodies_are_refused_naming_the_key_column_or_row() {
        let refused = |body: &str| from_json(body.as_bytes(), &sig()).unwrap_err();
        assert!(refused("[1, 2]").message.contains("must be a JSON object"));
        assert!(refused("{}").message.contains("none of dataframe_split"));
        assert!(refused(r#"{"instances": [], "inputs": []}"#).message.contains("exactly one"));
        assert!(refused(r#"{"rows": []}"#).message.contains("`rows` is not a key"));
        let e = refused(r#"{"dataframe_records": [{"x": "one", "color": "red"}]}"#);
        assert_eq!(e.column.as_deref(), Some("x"));
        assert!(e.message.contains("row 0") && e.message.contains("not a number"), "{e:?}");
        assert!(refused(r#"{"dataframe_split": {"columns": ["x"], "data": [[1, 2]]}}"#).message.contains("data[0]` has 2 values for 1 columns"));
        // Columns are read in key order, so whichever comes second is named.
        let e = refused(r#"{"inputs": {"x": [1, 2], "color": ["a"]}}"#);
        assert!(e.message.contains("has 2 values, the others 1") && e.column.as_deref() == Some("x"), "{e:?}");
        assert!(refused(r#"{"inputs": [{"x": 1}], "params": {"k": 1}}"#).message.contains("params"));
        let e = from_csv(b"x,color\nabc,red\n", &sig()).unwrap_err();
        assert!(e.message.contains("CSV line 2") && e.column.as_deref() == Some("x"), "{e:?}");
        assert!(from_json(br#"{"inputs": [[1, 2]]}"#, &Signature::default()).unwrap_err().message.contains("column order"));
    }

    #[test]
    fn predictions_answer_as_mlflow_serves_them() {
        let t = Table {
            rows: 2,
            columns: vec![
                Column::numeric("prediction", vec![1.0, 0.25]),
                Column::numeric("proba:0", vec![0.1, 0.8]),
                Column::numeric("proba:1", vec![0.9, 0.2]),
            ],
        };
        assert_eq!(response(&t), json!({"predictions": [1, 0.25], "probabilities": [{"0": 0.1, "1": 0.9}, {"0": 0.8, "1": 0.2}]}));
    }
}
