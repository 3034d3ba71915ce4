//! CSV into a columnar table, with errors that name the file, line and
//! column.
//!
//! A column is numeric when its first non-missing value parses as a number;
//! after that every value must (a stray word is an error, not a silent
//! NaN). Columns named in `categorical` are always text. Missing values
//! (empty, `NA`, `NaN`, `null`) become NaN or the empty string.

use super::{Column, ColumnData, Table};
use crate::limits::MAX_COLUMNS;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A reader that fails, rather than ends, past its limit: a file that
/// grew after its size was checked must not be read in part as if whole.
struct Limited<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self
            .left
            .checked_sub(n as u64)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::FileTooLarge, "grew past the `input_size` limit while being read"))?;
        Ok(n)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// Not `source`: the message already holds it, and a `#[source]` is
    /// printed again by `{:#}`.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}:{line}: {message}")]
    At { path: PathBuf, line: u64, message: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

fn is_missing(v: &str) -> bool {
    matches!(v, "" | "NA" | "N/A" | "NaN" | "nan" | "null" | "NULL" | "None")
}

/// Read the CSV file at `path` (a regular file; no size limit).
pub fn read_csv(path: &Path, categorical: &[String]) -> Result<Table, CsvError> {
    let file = crate::limits::open_regular(path, u64::MAX, None).map_err(|error| CsvError::Io { path: path.to_path_buf(), error })?;
    read_csv_file(file, path, categorical, u64::MAX)
}

/// Read an opened CSV file, `path` being what messages call it. Reading
/// stops with an error past `limit` bytes (the file may grow after it was
/// checked) and at a header of more than [`MAX_COLUMNS`] columns.
pub fn read_csv_file(file: std::fs::File, path: &Path, categorical: &[String], limit: u64) -> Result<Table, CsvError> {
    let file = Limited { inner: file, left: limit };
    let mut reader = ::csv::ReaderBuilder::new().has_headers(true).flexible(false).trim(::csv::Trim::All).from_reader(file);
    let at = |line: u64, message: String| CsvError::At { path: path.to_path_buf(), line, message };
    let headers = reader.headers().map_err(|e| CsvError::File { path: path.to_path_buf(), message: e.to_string() })?.clone();
    if headers.is_empty() || headers.iter().all(str::is_empty) {
        return Err(CsvError::File { path: path.to_path_buf(), message: "the file is empty (no header row)".into() });
    }
    if headers.len() > MAX_COLUMNS {
        return Err(at(1, format!("the header has {} columns; Kiln reads at most {MAX_COLUMNS}", headers.len())));
    }
    for (i, h) in headers.iter().enumerate() {
        if h.is_empty() {
            return Err(at(1, format!("column {} has an empty name in the header", i + 1)));
        }
        if headers.iter().take(i).any(|p| p == h) {
            return Err(at(1, format!("column `{h}` appears twice in the header")));
        }
    }
    let n = headers.len();
    // None = type not yet known (all values so far missing).
    let mut numeric: Vec<Option<bool>> = headers.iter().map(|h| if categorical.iter().any(|c| c == h) { Some(false) } else { None }).collect();
    let mut nums: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut texts: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut rows = 0usize;
    let mut record = ::csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                let message = match e.kind() {
                    ::csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                        format!("this row has {len} fields but the header has {expected_len}")
                    }
                    ::csv::ErrorKind::Utf8 { .. } => "this row is not valid UTF-8".to_string(),
                    ::csv::ErrorKind::Io(e) => {
                        return Err(CsvError::Io { path: path.to_path_buf(), error: std::io::Error::new(e.kind(), e.to_string()) });
                    }
                    _ => e.to_string(),
                };
                return Err(at(line, message));
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(rows as u64 + 2);
        for (j, value) in record.iter().enumerate() {
            if numeric[j].is_none() && !is_missing(value) {
                numeric[j] = Some(value.parse::<f64>().is_ok());
                if numeric[j] == Some(false) {
                    // Earlier rows were all missing: carry them over as text.
                    texts[j] = vec![String::new(); rows];
                }
            }
            match numeric[j] {
                Some(false) => texts[j].push(if is_missing(value) { String::new() } else { value.to_string() }),
                _ if is_missing(value) => nums[j].push(f64::NAN),
                _ => match value.parse::<f64>() {
                    Ok(v) => nums[j].push(v),
                    Err(_) => {
                        return Err(at(
                            line,
                            format!(
                                "column `{}` (field {}) is numeric but this row has `{value}`; \
                                 fix the value or declare the column categorical",
                                &headers[j],
                                j + 1
                            ),
                        ));
                    }
                },
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(CsvError::File { path: path.to_path_buf(), message: "the file has a header but no data rows".into() });
    }
    let columns = headers
        .iter()
        .enumerate()
        .map(|(j, name)| Column {
            name: name.to_string(),
            data: if numeric[j] == Some(false) {
                ColumnData::Categorical(std::mem::take(&mut texts[j]))
            } else {
                ColumnData::Numeric(std::mem::take(&mut nums[j]))
            },
        })
        .collect();
    Ok(Table { rows, columns })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.csv");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_numeric_categorical_and_missing() {
        let (_d, p) = write("a,b,c\n1,x,\n2.5,y,3\nNA,,4\n");
        let t = read_csv(&p, &[]).unwrap();
        assert_eq!(t.rows, 3);
        let a = t.column("a").unwrap().as_numeric().unwrap();
        assert_eq!(a[..2], [1.0, 2.5]);
        assert!(a[2].is_nan());
        assert_eq!(t.column("b").unwrap().data, ColumnData::Categorical(vec!["x".into(), "y".into(), "".into()]));
        let c = t.column("c").unwrap().as_numeric().unwrap();
        assert!(c[0].is_nan() && c[1] == 3.0);
    }

    #[test]
    fn ragged_row_names_file_and_line() {
        let (_d, p) = write("a,b\n1,2\n3\n");
        let err = read_csv(&p, &[]).unwrap_err().to_string();
        assert!(err.ends_with("data.csv:3: this row has 1 fields but the header has 2"), "{err}");
    }

    #[test]
    fn non_numeric_value_names_line_and_column() {
        let (_d, p) = write("a,b\n1,2\n3,oops\n");
        let err = read_csv(&p, &[]).unwrap_err().to_string();
        assert!(err.contains("data.csv:3:") && err.contains("column `b`") && err.contains("`oops`"), "{err}");
    }

    #[test]
    fn no_rows_and_missing_file() {
        let (_d, p) = write("a,b\n");
        assert!(read_csv(&p, &[]).unwrap_err().to_string().contains("no data rows"));
        let err = read_csv(Path::new("/nonexistent/x.csv"), &[]).unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/x.csv:"), "{err}");
    }

    #[test]
    fn too_many_columns_and_too_many_bytes_are_refused() {
        let header: Vec<String> = (0..MAX_COLUMNS + 1).map(|i| format!("c{i}")).collect();
        let (_d, p) = write(&format!("{}\n", header.join(",")));
        let err = read_csv(&p, &[]).unwrap_err().to_string();
        assert!(err.contains("data.csv:1:") && err.contains("at most 10000"), "{err}");
        let (_d, p) = write("a,b\n1,2\n3,4\n");
        let file = std::fs::File::open(&p).unwrap();
        let err = read_csv_file(file, &p, &[], 8).unwrap_err().to_string();
        assert!(err.contains("input_size"), "{err}");
    }

    #[test]
    fn declared_categorical_stays_text() {
        let (_d, p) = write("zip,v\n02139,1\n10001,2\n");
        let t = read_csv(&p, &["zip".to_string()]).unwrap();
        assert_eq!(t.column("zip").unwrap().data, ColumnData::Categorical(vec!["02139".into(), "10001".into()]));
    }
}
