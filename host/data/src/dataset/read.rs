//! Tabular files (CSV, TSV, Parquet) read with arrow into typed columns:
//! the one reader behind pipeline inputs and dataset profiles, so a column
//! has the same type in both.
//!
//! CSV columns are typed from the whole file, by every present value:
//! `Int64` when each is an integer, `Float64` when each is a number,
//! `Boolean` when each is `true` or `false` (any case), `Date32` when each
//! is `YYYY-MM-DD`, `Timestamp` when each is `YYYY-MM-DD[T ]HH:MM:SS[.f]`,
//! `Utf8` otherwise; `Null` when there is none. Values are trimmed. Missing
//! values are empty, `NA`, `N/A`, `NaN`, `nan`, `null`, `NULL` and `None`.
//! Columns named as categorical are `Utf8` whatever they hold.
//!
//! Arrow splits the file into records (no type inference pass: every field
//! is read as text once); the typing runs over those strings, parsing each
//! number once. Errors name the file, the line and the column.

use super::{Column, ColumnData, Table};
use crate::files::MAX_COLUMNS;
use arrow_array::builder::{BooleanBuilder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not `source`: the message already holds it, and a `#[source]` is
    /// printed again by `{:#}`.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}:{line}: {message}")]
    At { path: PathBuf, line: u64, message: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

/// What kind of table a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv { delimiter: u8 },
    Parquet,
}

impl Format {
    /// By extension, in any case: `.csv`, `.tsv` (tab-separated),
    /// `.parquet` and `.pq`. Anything else is `None`.
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv { delimiter: b',' }),
            "tsv" => Some(Format::Csv { delimiter: b'\t' }),
            "parquet" | "pq" => Some(Format::Parquet),
            _ => None,
        }
    }

    /// `csv`, `tsv` or `parquet`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv { delimiter: b'\t' } => "tsv",
            Format::Csv { .. } => "csv",
            Format::Parquet => "parquet",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "csv" => Some(Format::Csv { delimiter: b',' }),
            "tsv" => Some(Format::Csv { delimiter: b'\t' }),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// A table as read: one array per column, each of the type the file says.
#[derive(Debug)]
pub struct Frame {
    pub rows: usize,
    pub schema: Arc<Schema>,
    pub columns: Vec<ArrayRef>,
}

/// How to read.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions<'a> {
    /// Columns read as text whatever they hold (CSV).
    pub categorical: &'a [String],
    /// Reading fails, rather than ends, past this many bytes: a file that
    /// grew after its size was checked must not be read in part as if whole.
    pub limit: u64,
    pub purpose: Purpose,
}

/// Who reads. The column types agree either way (numbers are numbers);
/// what differs is how much a reader wants told apart and what it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A dataset profile: text columns are typed finer (Boolean, Date32,
    /// Timestamp), a column that starts with numbers and holds a word
    /// further down is text, and a header without rows is a profile of
    /// no rows.
    Profile,
    /// A pipeline input: numbers, or text exactly as written (trimmed); a
    /// numeric column with a word further down is refused, naming its
    /// line (declare the column categorical to read it as text); a file
    /// needs rows.
    Pipeline,
}

impl Default for ReadOptions<'_> {
    fn default() -> Self {
        ReadOptions { categorical: &[], limit: u64::MAX, purpose: Purpose::Profile }
    }
}

/// Rows per record batch: big enough that per-batch overhead vanishes.
const BATCH_ROWS: usize = 8192;
/// Cells per batch: arrow allocates every column's builder for a whole
/// batch up front, so a wide file gets fewer rows per batch (10,000
/// columns × 8,192 rows was 1.3 GB for a one-row file).
const BATCH_CELLS: usize = 1 << 20;

fn batch_rows(columns: usize) -> usize {
    (BATCH_CELLS / columns.max(1)).clamp(1, BATCH_ROWS)
}

/// Read an opened file; `path` is what messages call it.
pub fn read(file: File, path: &Path, format: Format, options: ReadOptions<'_>) -> Result<Frame, ReadError> {
    match format {
        Format::Csv { delimiter } => read_csv(file, path, delimiter, options),
        Format::Parquet => read_parquet(file, path, options),
    }
}

/// A regular file (a folder, device or FIFO is refused by name).
pub fn open(path: &Path) -> Result<File, ReadError> {
    crate::files::open_regular(path, u64::MAX, None).map_err(|error| match error.kind() {
        std::io::ErrorKind::InvalidInput => ReadError::File { path: path.into(), message: error.to_string() },
        _ => ReadError::Io { path: path.into(), error },
    })
}

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

fn is_missing(v: &str) -> bool {
    matches!(v, "" | "NA" | "N/A" | "NaN" | "nan" | "null" | "NULL" | "None")
}

fn read_csv(mut file: File, path: &Path, delimiter: u8, options: ReadOptions<'_>) -> Result<Frame, ReadError> {
    let io = |error: std::io::Error| ReadError::Io { path: path.into(), error };
    let at = |line: u64, message: String| ReadError::At { path: path.into(), line, message };
    let names: Vec<String> = {
        let limited = Limited { inner: &file, left: options.limit };
        let mut reader = ::csv::ReaderBuilder::new().delimiter(delimiter).has_headers(true).trim(::csv::Trim::Headers).from_reader(limited);
        match reader.headers() {
            Ok(h) => h.iter().map(str::to_string).collect(),
            Err(e) => {
                let message = match e.kind() {
                    ::csv::ErrorKind::Utf8 { .. } => "the header is not valid UTF-8".to_string(),
                    ::csv::ErrorKind::Io(e) => return Err(io(std::io::Error::new(e.kind(), e.to_string()))),
                    _ => e.to_string(),
                };
                return Err(at(1, message));
            }
        }
    };
    if names.is_empty() || names.iter().all(String::is_empty) {
        return Err(ReadError::File { path: path.into(), message: "the file is empty (no header row)".into() });
    }
    if names.len() > MAX_COLUMNS {
        return Err(at(1, format!("the header has {} columns; Kiln reads at most {MAX_COLUMNS}", names.len())));
    }
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(at(1, format!("column {} has an empty name in the header", i + 1)));
        }
        if names[..i].contains(name) {
            return Err(at(1, format!("column `{name}` appears twice in the header")));
        }
    }
    file.rewind().map_err(io)?;
    let text_schema = Arc::new(Schema::new(names.iter().map(|n| Field::new(n, DataType::Utf8, true)).collect::<Vec<_>>()));
    let numbers_only = !names.iter().any(|n| options.categorical.contains(n));
    let batches = match split_records(&file, path, delimiter, &names, text_schema, options.limit, numbers_only)? {
        Records::Numbers(frame) => return Ok(frame),
        Records::Text(batches) => batches,
    };
    let mut chunks: Vec<Vec<ArrayRef>> = vec![Vec::new(); names.len()];
    let mut rows = 0usize;
    for batch in batches {
        rows += batch.num_rows();
        for (chunk, column) in chunks.iter_mut().zip(batch.columns()) {
            chunk.push(column.clone());
        }
    }
    if rows == 0 {
        if options.purpose == Purpose::Pipeline {
            return Err(ReadError::File { path: path.into(), message: "the file has a header but no data rows".into() });
        }
        let fields: Vec<Field> = names.iter().map(|n| Field::new(n, DataType::Null, true)).collect();
        let columns = names.iter().map(|_| Arc::new(arrow_array::NullArray::new(0)) as ArrayRef).collect();
        return Ok(Frame { rows, schema: Arc::new(Schema::new(fields)), columns });
    }
    // Columns are typed independently: on all cores, once there is enough
    // to type that starting rayon's threads pays (a small file, such as a
    // cached pipeline's inputs, is typed before they would have started).
    use rayon::prelude::*;
    let type_one = |(chunks, name): (Vec<ArrayRef>, &String)| {
        let strings: Vec<&StringArray> = chunks.iter().map(|c| c.as_string::<i32>()).collect();
        type_column(&strings, rows, options.categorical.contains(name), options.purpose == Purpose::Profile)
    };
    let typed: Vec<(ArrayRef, Option<Mixed>)> = if rows.saturating_mul(names.len()) >= PARALLEL_TYPING {
        chunks.into_par_iter().zip(names.par_iter()).map(type_one).collect()
    } else {
        chunks.into_iter().zip(names.iter()).map(type_one).collect()
    };
    let mut fields = Vec::with_capacity(names.len());
    let mut columns = Vec::with_capacity(names.len());
    for (index, (name, (typed, mixed))) in names.iter().zip(typed).enumerate() {
        if let Some(bad) = mixed.filter(|_| options.purpose == Purpose::Pipeline) {
            let line = physical_line(&file, delimiter, bad.row as u64 + 1).unwrap_or(bad.row as u64 + 2);
            return Err(at(
                line,
                format!(
                    "column `{name}` (field {}) is numeric but this row has `{}`; fix the value or declare the column categorical",
                    index + 1,
                    bad.value
                ),
            ));
        }
        fields.push(Field::new(name, typed.data_type().clone(), true));
        columns.push(typed);
    }
    Ok(Frame { rows, schema: Arc::new(Schema::new(fields)), columns })
}

/// Files at least this big are split into records on all cores when they
/// hold no quote (so every newline ends a record).
const PARALLEL_SPLIT: u64 = 4 << 20;

/// Tables of at least this many cells are typed on all cores.
const PARALLEL_TYPING: usize = 1 << 18;

/// What [`split_records`] found.
enum Records {
    /// Every value was a number or missing: the typed frame, done.
    Numbers(Frame),
    /// Records as text columns, to be typed.
    Text(Vec<RecordBatch>),
}

/// The file's records (after the header) as batches of text columns, in
/// file order, or, for a quote-free file of numbers only, the typed frame
/// straight away. A quote-free file of some size is read whole and cut at
/// newlines into one part per core, each split by its own arrow reader;
/// anything else is read as one stream.
#[allow(clippy::too_many_arguments)]
fn split_records(
    file: &File,
    path: &Path,
    delimiter: u8,
    names: &[String],
    schema: Arc<Schema>,
    limit: u64,
    numbers_only: bool,
) -> Result<Records, ReadError> {
    let io = |error: std::io::Error| ReadError::Io { path: path.into(), error };
    let size = file.metadata().map_err(io)?.len();
    // No more rows per batch than the file can hold (a cell takes at least
    // a byte and a delimiter): arrow allocates a whole batch up front, and
    // for a small file that was most of the time a cached pipeline spent
    // reading its inputs.
    let most_rows = (size as usize / (2 * names.len()).max(1)).saturating_add(1);
    let reader = |header: bool| {
        let format = arrow_csv::reader::Format::default().with_header(header).with_delimiter(delimiter);
        arrow_csv::ReaderBuilder::new(schema.clone()).with_format(format).with_batch_size(batch_rows(names.len()).min(most_rows))
    };
    // `split`: the error comes from one part of a file cut at newlines.
    let failed = |split: bool| move |e: ArrowError| csv_error(path, file, delimiter, names, split, e);
    // Asked only of a big file: the first question starts rayon's threads.
    let parts = if size >= PARALLEL_SPLIT { rayon::current_num_threads() } else { 1 };
    if parts > 1 {
        let bytes = read_whole(file, size, limit, parts).map_err(io)?;
        if memchr::memchr(b'"', &bytes).is_none() {
            use rayon::prelude::*;
            let mut cuts = vec![0];
            for i in 1..parts {
                let at = bytes.len() * i / parts;
                match memchr::memchr(b'\n', &bytes[at..]) {
                    Some(n) if at + n + 1 > *cuts.last().unwrap() => cuts.push(at + n + 1),
                    _ => {}
                }
            }
            cuts.push(bytes.len());
            cuts.dedup();
            if numbers_only && let Some(frame) = numbers(&bytes, &cuts, delimiter, names) {
                return Ok(Records::Numbers(frame));
            }
            let read = |(i, range): (usize, &[usize])| -> Result<Vec<RecordBatch>, ReadError> {
                let part = &bytes[range[0]..range[1]];
                // Lines before this part, for messages: quote-free, so a
                // record is a line.
                let before = if i == 0 { 0 } else { memchr::memchr_iter(b'\n', &bytes[..range[0]]).count() as u64 };
                let shift = |e: ReadError| match e {
                    ReadError::At { path, line, message } => ReadError::At { path, line: line + before, message },
                    e => e,
                };
                let r = reader(i == 0).build(part).map_err(|e| shift(failed(true)(e)))?;
                r.map(|b| b.map_err(|e| shift(failed(true)(e)))).collect()
            };
            let parts: Vec<Vec<RecordBatch>> = cuts.windows(2).enumerate().collect::<Vec<_>>().into_par_iter().map(read).collect::<Result<_, _>>()?;
            return Ok(Records::Text(parts.into_iter().flatten().collect()));
        }
        let r = reader(true).build(bytes.as_slice()).map_err(failed(false))?;
        return r.map(|b| b.map_err(failed(false))).collect::<Result<_, _>>().map(Records::Text);
    }
    let r = reader(true).build(Limited { inner: file.try_clone().map_err(io)?, left: limit }).map_err(failed(false))?;
    r.map(|b| b.map_err(failed(false))).collect::<Result<_, _>>().map(Records::Text)
}

/// The whole file, read on all cores (positional reads of equal parts,
/// into a zeroed allocation the kernel hands out lazily). A file past
/// `limit`, or one that grew since `size` was taken, is read as a stream
/// instead, so that [`Limited`] decides as for any other file.
fn read_whole(file: &File, size: u64, limit: u64, parts: usize) -> std::io::Result<Vec<u8>> {
    use rayon::prelude::*;
    use std::os::unix::fs::FileExt;
    if size <= limit {
        let mut bytes = vec![0u8; size as usize];
        let chunk = bytes.len().div_ceil(parts.max(1)).max(1);
        bytes.par_chunks_mut(chunk).enumerate().try_for_each(|(i, part)| file.read_exact_at(part, (i * chunk) as u64))?;
        if file.read_at(&mut [0u8], size)? == 0 {
            return Ok(bytes);
        }
    }
    let mut bytes = Vec::with_capacity(size.min(limit) as usize);
    Limited { inner: file, left: limit }.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// What parsing one part of the file learnt about each column.
struct NumberPart {
    /// Rows (0-based within the part) whose value is missing.
    missing: Vec<Vec<usize>>,
    /// Every present value so far an integer of at most 15 digits (exact
    /// in an f64).
    ints: Vec<bool>,
}

/// Records in a quote-free part: its lines, the last one counted even
/// without a newline.
fn lines(part: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', part).count() + usize::from(part.last().is_some_and(|b| *b != b'\n'))
}

/// The common case, done directly: a quote-free CSV whose every value is
/// a number or missing, parsed from the bytes straight into typed columns
/// on all cores, with no text materialised. The rules are
/// [`type_column`]'s: a trimmed value that parses as an f64 is a number,
/// the missing words are nulls, a column of integers is Int64, one with
/// nothing present is Null. Anything else here (a word, a ragged row, a
/// blank line, invalid UTF-8, an integer too long for an f64) gives up
/// with `None`, and the general path reads the file and says what is wrong.
///
/// The rows are counted first (a newline count), so each part writes its
/// numbers straight into its own stretch of the final columns.
fn numbers(bytes: &[u8], cuts: &[usize], delimiter: u8, names: &[String]) -> Option<Frame> {
    use rayon::prelude::*;
    let columns = names.len();
    let body = memchr::memchr(b'\n', bytes)? + 1;
    let ranges: Vec<&[u8]> = cuts.windows(2).map(|w| &bytes[w[0].max(body).min(w[1])..w[1]]).collect();
    let counts: Vec<usize> = ranges.par_iter().map(|part| lines(part)).collect();
    let rows: usize = counts.iter().sum();
    if rows == 0 {
        return None;
    }
    // Zeroed allocations are lazy: no pass over memory before the parse.
    let mut values: Vec<Vec<f64>> = (0..columns).map(|_| vec![0.0; rows]).collect();
    let mut slots: Vec<Vec<&mut [f64]>> = counts.iter().map(|_| Vec::with_capacity(columns)).collect();
    for column in values.iter_mut() {
        let mut rest: &mut [f64] = column;
        for (slot, n) in slots.iter_mut().zip(&counts) {
            let (mine, after) = rest.split_at_mut(*n);
            slot.push(mine);
            rest = after;
        }
    }
    let parts: Vec<NumberPart> =
        ranges.into_par_iter().zip(slots).map(|(part, mut out)| parse_numbers(part, delimiter, &mut out)).collect::<Option<_>>()?;
    let mut fields = Vec::with_capacity(columns);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns);
    for ((c, name), values) in names.iter().enumerate().zip(values) {
        let missing: usize = parts.iter().map(|p| p.missing[c].len()).sum();
        let ints = parts.iter().all(|p| p.ints[c]);
        let nulls = (missing > 0).then(|| {
            let mut valid = arrow_buffer::BooleanBufferBuilder::new(rows);
            valid.append_n(rows, true);
            let mut offset = 0;
            for (p, n) in parts.iter().zip(&counts) {
                for row in &p.missing[c] {
                    valid.set_bit(offset + row, false);
                }
                offset += n;
            }
            arrow_buffer::NullBuffer::new(valid.finish())
        });
        let array: ArrayRef = if missing == rows {
            Arc::new(arrow_array::NullArray::new(rows))
        } else if ints {
            let ints: Vec<i64> = values.iter().map(|v| if v.is_nan() { 0 } else { *v as i64 }).collect();
            Arc::new(arrow_array::Int64Array::new(ints.into(), nulls))
        } else {
            Arc::new(arrow_array::Float64Array::new(values.into(), nulls))
        };
        fields.push(Field::new(name, array.data_type().clone(), true));
        arrays.push(array);
    }
    Some(Frame { rows, schema: Arc::new(Schema::new(fields)), columns: arrays })
}

/// One part of [`numbers`]: each value is parsed where it lies, and the
/// parser's stop must be the field's end (a delimiter, or the line's end
/// for the last column). What the fast parser does not take whole (spaces
/// around a number, a missing word, `nan`, `1e`) is read as the general
/// path reads it: the field's text, trimmed, then `str::parse`.
fn parse_numbers(part: &[u8], delimiter: u8, out: &mut [&mut [f64]]) -> Option<NumberPart> {
    let columns = out.len();
    let mut stats = NumberPart { missing: vec![Vec::new(); columns], ints: vec![true; columns] };
    let rows = out.first().map_or(0, |c| c.len());
    let n = part.len();
    let mut i = 0;
    let mut row = 0;
    while i < n {
        if row == rows || part[i] == b'\n' || part[i..].starts_with(b"\r\n") {
            // More records than lines (cannot happen), or a blank line:
            // the general reader's rules decide.
            return None;
        }
        for (c, column) in out.iter_mut().enumerate() {
            let last = c + 1 == columns;
            let start = i;
            let ends = |at: usize| {
                if !last {
                    return (part.get(at) == Some(&delimiter)).then_some(at + 1);
                }
                match part.get(at) {
                    None => Some(at),
                    Some(b'\n') => Some(at + 1),
                    Some(b'\r') if part.get(at + 1) == Some(&b'\n') => Some(at + 2),
                    _ => None,
                }
            };
            let fast = match fast_float2::parse_partial::<f64, _>(&part[start..]) {
                Ok((x, len)) if !x.is_nan() => ends(start + len).map(|next| (Some(x), start + len, next)),
                _ => None,
            };
            let (value, end, next) = match fast {
                Some(found) => found,
                None => {
                    // The field's text, as the general path sees it.
                    let stop = memchr::memchr2(delimiter, b'\n', &part[start..]).map_or(n, |k| start + k);
                    let text = &part[start..stop];
                    let text = if last { text.strip_suffix(b"\r").unwrap_or(text) } else { text };
                    let next = ends(start + text.len())?;
                    let v = std::str::from_utf8(text).ok()?.trim();
                    let value = if is_missing(v) { None } else { Some(v.parse::<f64>().ok()?) };
                    (value, start + text.len(), next)
                }
            };
            match value {
                None => {
                    column[row] = f64::NAN;
                    stats.missing[c].push(row);
                }
                Some(x) => {
                    column[row] = x;
                    if stats.ints[c] {
                        let text = std::str::from_utf8(&part[start..end]).ok()?.trim();
                        if !looks_int(text) {
                            stats.ints[c] = false;
                        } else if text.trim_start_matches(['-', '+']).len() > 15 {
                            // An Int64 an f64 cannot hold exactly: the
                            // general path parses it as an integer.
                            return None;
                        }
                    }
                }
            }
            i = next;
        }
        row += 1;
    }
    (row == rows).then_some(stats)
}

/// The first word in a column that began with numbers: `row` is 0-based
/// among data rows.
struct Mixed {
    row: usize,
    value: String,
}

/// Which types every present value so far fits.
#[derive(Clone, Copy)]
struct Fits {
    int: bool,
    float: bool,
    boolean: bool,
    date: bool,
    timestamp: bool,
}

impl Fits {
    fn any(self) -> bool {
        self.int || self.float || self.boolean || self.date || self.timestamp
    }
}

fn looks_int(v: &str) -> bool {
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit())
}

fn looks_date(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10 && b[4] == b'-' && b[7] == b'-' && [0, 1, 2, 3, 5, 6, 8, 9].iter().all(|&i| b[i].is_ascii_digit())
}

fn looks_timestamp(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < 19 || !looks_date(&v[..10]) || !(b[10] == b'T' || b[10] == b' ') || b[13] != b':' || b[16] != b':' {
        return false;
    }
    if ![11, 12, 14, 15, 17, 18].iter().all(|&i| b[i].is_ascii_digit()) {
        return false;
    }
    let rest = v[19..].strip_suffix('Z').unwrap_or(&v[19..]);
    rest.is_empty() || rest.strip_prefix('.').is_some_and(|f| !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()))
}

/// Type one column from its text chunks; `fine` tells booleans, dates and
/// timestamps from other text (a profile wants that, a pipeline wants the
/// text as written). A column whose first present value is a number but
/// which holds a word later is typed `Utf8`, and the first such word is
/// returned too (see [`Purpose::Pipeline`]).
fn type_column(chunks: &[&StringArray], rows: usize, text: bool, fine: bool) -> (ArrayRef, Option<Mixed>) {
    let fine = fine && !text;
    let mut fits = Fits { int: !text, float: !text, boolean: fine, date: fine, timestamp: fine };
    let mut floats: Vec<f64> = Vec::with_capacity(if text { 0 } else { rows });
    // Which values are present, built in the same pass as `floats`.
    let mut valid = arrow_buffer::BooleanBufferBuilder::new(if text { 0 } else { rows });
    let mut present = 0usize;
    let mut first_numeric: Option<bool> = None;
    let mut mixed: Option<Mixed> = None;
    let mut row = 0usize;
    for chunk in chunks {
        for value in chunk.iter() {
            let v = value.map(str::trim).unwrap_or("");
            if is_missing(v) {
                if fits.float {
                    floats.push(f64::NAN);
                    valid.append(false);
                }
            } else {
                present += 1;
                if fits.float {
                    match v.parse::<f64>() {
                        Ok(x) => {
                            floats.push(x);
                            valid.append(true);
                        }
                        Err(_) => {
                            fits.float = false;
                            fits.int = false;
                            floats = Vec::new();
                        }
                    }
                }
                if fits.int && !looks_int(v) {
                    fits.int = false;
                }
                if fits.boolean && !(v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false")) {
                    fits.boolean = false;
                }
                if fits.date && !looks_date(v) {
                    fits.date = false;
                }
                if fits.timestamp && !looks_timestamp(v) {
                    fits.timestamp = false;
                }
                let numeric = first_numeric.get_or_insert(fits.float);
                if *numeric && !fits.float && mixed.is_none() {
                    mixed = Some(Mixed { row, value: v.to_string() });
                }
            }
            row += 1;
        }
        // Nothing left to learn: no type fits, and the word that ended a
        // numeric column (if any) is already kept.
        if !fits.any() {
            break;
        }
    }
    if present == 0 && !text {
        return (Arc::new(arrow_array::NullArray::new(rows)), None);
    }
    if fits.int {
        let mut b = Int64Builder::with_capacity(rows);
        for value in chunks.iter().flat_map(|c| c.iter()) {
            let v = value.map(str::trim).unwrap_or("");
            match v.strip_prefix('+').unwrap_or(v).parse::<i64>() {
                Ok(x) if !is_missing(v) => b.append_value(x),
                _ => b.append_null(),
            }
        }
        return (Arc::new(b.finish()), None);
    }
    if fits.float {
        let nulls = arrow_buffer::NullBuffer::new(valid.finish());
        return (Arc::new(arrow_array::Float64Array::new(floats.into(), Some(nulls))), None);
    }
    if fits.boolean {
        let mut b = BooleanBuilder::with_capacity(rows);
        for value in chunks.iter().flat_map(|c| c.iter()) {
            let v = value.map(str::trim).unwrap_or("");
            if is_missing(v) { b.append_null() } else { b.append_value(v.eq_ignore_ascii_case("true")) }
        }
        return (Arc::new(b.finish()), None);
    }
    let strings = text_array(chunks, rows);
    for (fits, data_type) in [(fits.date, DataType::Date32), (fits.timestamp, DataType::Timestamp(TimeUnit::Nanosecond, None))] {
        // The pattern matched; a value it cannot be (2024-02-31) keeps the
        // column text rather than becoming a silent null.
        let strict = arrow_cast::CastOptions { safe: false, ..Default::default() };
        if fits && let Ok(typed) = arrow_cast::cast_with_options(&strings, &data_type, &strict) {
            return (typed, None);
        }
    }
    (strings, mixed)
}

/// The trimmed text of a column, missing values as nulls.
fn text_array(chunks: &[&StringArray], rows: usize) -> ArrayRef {
    let bytes: usize = chunks.iter().map(|c| c.value_data().len()).sum();
    let mut b = StringBuilder::with_capacity(rows, bytes);
    for value in chunks.iter().flat_map(|c| c.iter()) {
        let v = value.map(str::trim).unwrap_or("");
        if is_missing(v) { b.append_null() } else { b.append_value(v) }
    }
    Arc::new(b.finish())
}

/// The codecs the `parquet` features in Cargo.toml build in.
fn readable(codec: parquet::basic::Compression) -> bool {
    use parquet::basic::Compression::*;
    matches!(codec, UNCOMPRESSED | SNAPPY | LZ4 | LZ4_RAW | ZSTD(_))
}

/// A Parquet file, one top-level column of one row group at a time, so
/// that a damaged file's error names the row group and the column.
fn read_parquet(file: File, path: &Path, options: ReadOptions<'_>) -> Result<Frame, ReadError> {
    let io = |error: std::io::Error| ReadError::Io { path: path.into(), error };
    let size = file.metadata().map_err(io)?.len();
    if size > options.limit {
        return Err(io(std::io::Error::new(std::io::ErrorKind::FileTooLarge, "grew past the `input_size` limit while being read")));
    }
    let metadata = ArrowReaderMetadata::load(&file, Default::default()).map_err(|e| {
        let message = e.to_string();
        let message = if matches!(e, parquet::errors::ParquetError::EOF(_)) || message.contains("footer") {
            format!("not a Parquet file, or a truncated one: its footer is missing or damaged ({message})")
        } else {
            format!("cannot read the Parquet metadata: {message}")
        };
        ReadError::File { path: path.into(), message }
    })?;
    let schema = metadata.schema().clone();
    if schema.fields().len() > MAX_COLUMNS {
        let message = format!("the file has {} columns; Kiln reads at most {MAX_COLUMNS}", schema.fields().len());
        return Err(ReadError::File { path: path.into(), message });
    }
    if let Some(name) = duplicate_name(schema.fields()) {
        return Err(ReadError::File { path: path.into(), message: format!("column `{name}` appears twice") });
    }
    let row_groups = metadata.metadata().num_row_groups();
    // Compression can hide a table many times the file's size: the limit
    // holds for the decoded bytes the footer declares, too.
    let decoded: i64 = metadata.metadata().row_groups().iter().map(|g| g.total_byte_size()).sum();
    if decoded as u64 > options.limit {
        return Err(ReadError::File {
            path: path.into(),
            message: format!("the file decodes to {decoded} bytes, more than the {} byte `input_size` limit", options.limit),
        });
    }
    for (row_group, chunks) in metadata.metadata().row_groups().iter().enumerate() {
        if let Some(chunk) = chunks.columns().iter().find(|c| !readable(c.compression())) {
            let codec = chunk.compression().to_string();
            let codec = codec.split('(').next().unwrap_or_default();
            return Err(ReadError::File {
                path: path.into(),
                message: format!(
                    "row group {row_group} (of {row_groups}), column `{}`: compressed with {codec}, which kiln \
                     does not read (it reads uncompressed, Snappy, LZ4 and Zstandard Parquet)",
                    chunk.column_path().string()
                ),
            });
        }
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (index, field) in schema.fields().iter().enumerate() {
        let mut chunks: Vec<ArrayRef> = Vec::new();
        for row_group in 0..row_groups {
            let damaged = |e: &dyn fmt::Display| ReadError::File {
                path: path.into(),
                message: format!("row group {row_group} (of {row_groups}), column `{}`: {e}", field.name()),
            };
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file.try_clone().map_err(io)?, metadata.clone())
                .with_row_groups(vec![row_group])
                .with_projection(ProjectionMask::roots(metadata.parquet_schema(), [index]))
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| damaged(&e))?;
            for batch in reader {
                chunks.push(batch.map_err(|e| damaged(&e))?.column(0).clone());
            }
        }
        let refs: Vec<&dyn Array> = chunks.iter().map(|c| c.as_ref()).collect();
        let column = match refs.len() {
            0 => arrow_array::new_empty_array(field.data_type()),
            1 => chunks.pop().expect("one chunk"),
            _ => arrow_select::concat::concat(&refs).map_err(|e| ReadError::File { path: path.into(), message: e.to_string() })?,
        };
        columns.push(column);
    }
    let rows = columns.first().map_or(0, |c| c.len());
    Ok(Frame { rows, schema, columns })
}

fn duplicate_name(fields: &arrow_schema::Fields) -> Option<&str> {
    fields.iter().enumerate().find(|(i, f)| fields.iter().take(*i).any(|p| p.name() == f.name())).map(|(_, f)| f.name().as_str())
}

/// Turns arrow's CSV errors into `file:line: message` with the column's
/// name. Arrow words them as
/// - `incorrect number of fields for line 3, expected 2 got 1` (the line
///   counts records, the header being 1),
/// - `Encountered invalid UTF-8 data for line 3 and field 2` (fields
///   counted from 1).
///
/// Anything else keeps arrow's message.
fn csv_error(path: &Path, file: &File, delimiter: u8, names: &[String], lines_are_records: bool, e: ArrowError) -> ReadError {
    let at = |line: u64, message: String| ReadError::At { path: path.into(), line, message };
    let line_of = |record: u64| {
        if lines_are_records { record } else { physical_line(file, delimiter, record.saturating_sub(1)).unwrap_or(record) }
    };
    match &e {
        ArrowError::CsvError(message) => {
            if let (Some(line), Some(expected)) = (number_after(message, "for line "), number_after(message, ", expected ")) {
                let got = message.rsplit(" got ").next().unwrap_or("?");
                let missing = got
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| (n as u64) < expected)
                    .and_then(|n| names.get(n))
                    .map(|name| format!(" (column `{name}` and after are missing)"))
                    .unwrap_or_default();
                return at(line_of(line), format!("this row has {got} fields but the header has {expected}{missing}"));
            }
            if message.contains("UTF-8")
                && let Some(line) = number_after(message, " line ")
            {
                let field = number_after(message, "field ")
                    .and_then(|f| f.checked_sub(1))
                    .and_then(|f| names.get(f as usize).map(|name| format!(" in column `{name}` (field {})", f + 1)))
                    .unwrap_or_default();
                return at(line_of(line), format!("this row is not valid UTF-8{field}"));
            }
        }
        ArrowError::IoError(_, source) => {
            return ReadError::Io { path: path.into(), error: std::io::Error::new(source.kind(), source.to_string()) };
        }
        ArrowError::ExternalError(source) => {
            if let Some(source) = source.downcast_ref::<std::io::Error>() {
                return ReadError::Io { path: path.into(), error: std::io::Error::new(source.kind(), source.to_string()) };
            }
        }
        _ => {}
    }
    ReadError::File { path: path.into(), message: e.to_string() }
}

/// The physical line of the `row`-th data row (1-based), found by reading
/// the file again with the `csv` crate, which counts lines inside quoted
/// fields. On the error path only.
fn physical_line(file: &File, delimiter: u8, row: u64) -> Option<u64> {
    let mut file = file.try_clone().ok()?;
    file.rewind().ok()?;
    let mut reader = ::csv::ReaderBuilder::new().delimiter(delimiter).has_headers(true).flexible(true).from_reader(file);
    let mut record = ::csv::ByteRecord::new();
    for _ in 0..row {
        if !reader.read_byte_record(&mut record).ok()? {
            return None;
        }
    }
    record.position().map(|p| p.line())
}

fn digits_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let start = text.find(marker)? + marker.len();
    let rest = &text[start..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

fn number_after(text: &str, marker: &str) -> Option<u64> {
    digits_after(text, marker)?.parse().ok()
}

/// A frame as the [`Table`] plugins take: numbers as `f64` (missing values
/// NaN), everything else as text (missing values empty); a column named
/// in `categorical` is text whatever its type.
pub fn to_table(frame: Frame, path: &Path, categorical: &[String]) -> Result<Table, ReadError> {
    let rows = frame.rows;
    let mut columns = Vec::with_capacity(frame.columns.len());
    for (field, array) in frame.schema.fields().iter().zip(frame.columns) {
        let name = field.name().clone();
        let unreadable = |e: ArrowError| ReadError::File {
            path: path.into(),
            message: format!("column `{name}` of type {} cannot be read as numbers or text: {e}", field.data_type()),
        };
        let data = match array.data_type() {
            DataType::Null if !categorical.contains(&name) => ColumnData::Numeric(vec![f64::NAN; rows]),
            t if numeric(t) && !categorical.contains(&name) => {
                let floats = arrow_cast::cast(&array, &DataType::Float64).map_err(unreadable)?;
                drop(array);
                ColumnData::Numeric(float_values(floats))
            }
            _ => {
                let strings = arrow_cast::cast(&array, &DataType::Utf8).map_err(unreadable)?;
                ColumnData::Categorical(strings.as_string::<i32>().iter().map(|v| v.unwrap_or("").to_string()).collect())
            }
        };
        columns.push(Column { name, data });
    }
    Ok(Table { rows, columns })
}

/// A Float64 array's values with NaN for nulls; the array's own buffer
/// when nothing else holds it (no copy), else a copy.
fn float_values(array: ArrayRef) -> Vec<f64> {
    let floats = array.as_primitive::<Float64Type>().clone();
    drop(array);
    let (_, values, nulls) = floats.into_parts();
    let mut values = values.into_inner().into_vec::<f64>().unwrap_or_else(|buffer| buffer.typed_data::<f64>().to_vec());
    if let Some(nulls) = nulls {
        for row in nulls.iter().enumerate().filter(|(_, valid)| !valid).map(|(row, _)| row) {
            values[row] = f64::NAN;
        }
    }
    values
}

fn numeric(t: &DataType) -> bool {
    use DataType::*;
    matches!(
        t,
        Int8 | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float16
            | Float32
            | Float64
            | Decimal32(..)
            | Decimal64(..)
            | Decimal128(..)
            | Decimal256(..)
    )
}

/// Read the file at `path` as a [`Table`], its format by extension (a
/// file that is not `.csv`, `.tsv`, `.parquet` or `.pq` is read as CSV).
pub fn read_table(path: &Path, categorical: &[String]) -> Result<Table, ReadError> {
    let format = Format::of(path).unwrap_or(Format::Csv { delimiter: b',' });
    let frame = read(open(path)?, path, format, ReadOptions { categorical, purpose: Purpose::Pipeline, ..Default::default() })?;
    to_table(frame, path, categorical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files::write;

    fn table(content: &str) -> Result<Table, ReadError> {
        let (_d, p) = write("data.csv", content);
        read_table(&p, &[])
    }

    fn types(content: &str) -> Vec<String> {
        let (_d, p) = write("data.csv", content);
        let frame = read(open(&p).unwrap(), &p, Format::Csv { delimiter: b',' }, ReadOptions::default()).unwrap();
        frame.schema.fields().iter().map(|f| f.data_type().to_string()).collect()
    }

    #[test]
    fn reads_numeric_categorical_and_missing() {
        let t = table("a,b,c\n1,x,\n2.5,y,3\nNA,,4\n").unwrap();
        assert_eq!(t.rows, 3);
        let a = t.column("a").unwrap().as_numeric().unwrap();
        assert_eq!(a[..2], [1.0, 2.5]);
        assert!(a[2].is_nan());
        assert_eq!(t.column("b").unwrap().data, ColumnData::Categorical(vec!["x".into(), "y".into(), "".into()]));
        let c = t.column("c").unwrap().as_numeric().unwrap();
        assert!(c[0].is_nan() && c[1] == 3.0);
    }

    #[test]
    fn every_value_types_the_column_the_same_for_profiles_and_pipelines() {
        let csv = "i,f,late_float,b,d,ts,t,empty,mixed\n\
                   1,1.5,1,true,2024-01-01,2024-01-01T10:00:00,a,,1\n\
                   -2, 2 ,2,FALSE,2024-02-29,2024-01-01 11:30:00.5,b,NA,2\n\
                   +3,1e3,2.5,, ,,c,,x\n";
        assert_eq!(types(csv), ["Int64", "Float64", "Float64", "Boolean", "Date32", "Timestamp(ns)", "Utf8", "Null", "Utf8"]);
        let (_d, p) = write("data.csv", csv);
        let frame = read(open(&p).unwrap(), &p, Format::Csv { delimiter: b',' }, ReadOptions::default()).unwrap();
        let t = to_table(frame, &p, &[]).unwrap();
        assert_eq!(t.column("mixed").unwrap().data, ColumnData::Categorical(vec!["1".into(), "2".into(), "x".into()]));
        // A pipeline reads the same numbers, and text as written.
        let csv = csv.replace(",x\n", ",3\n");
        let (_d, p) = write("data.csv", &csv);
        let t = read_table(&p, &[]).unwrap();
        assert_eq!(t.column("i").unwrap().as_numeric().unwrap(), [1.0, -2.0, 3.0]);
        assert_eq!(t.column("f").unwrap().as_numeric().unwrap(), [1.5, 2.0, 1000.0]);
        assert!(t.column("empty").unwrap().as_numeric().unwrap().iter().all(|v| v.is_nan()));
        assert_eq!(t.column("b").unwrap().data, ColumnData::Categorical(vec!["true".into(), "FALSE".into(), "".into()]));
        let ts = t.column("ts").unwrap();
        assert_eq!(ts.data, ColumnData::Categorical(vec!["2024-01-01T10:00:00".into(), "2024-01-01 11:30:00.5".into(), "".into()]));
        // An impossible date keeps the column text.
        assert_eq!(types("d\n2024-02-31\n"), ["Utf8"]);
    }

    #[test]
    fn ragged_row_names_file_and_line() {
        let err = table("a,b\n1,2\n3\n").unwrap_err().to_string();
        assert!(err.ends_with("data.csv:3: this row has 1 fields but the header has 2 (column `b` and after are missing)"), "{err}");
    }

    #[test]
    fn a_word_in_a_numeric_column_names_line_and_column_for_a_pipeline() {
        let err = table("a,b\n1,2\n3,oops\n").unwrap_err().to_string();
        assert!(err.contains("data.csv:3:") && err.contains("column `b`") && err.contains("`oops`"), "{err}");
        // A quoted field spanning lines moves the physical line.
        let err = table("a,b\n\"x\ny\",2\nz,oops\n").unwrap_err().to_string();
        assert!(err.contains("data.csv:4:"), "{err}");
    }

    #[test]
    fn no_rows_and_missing_file() {
        assert!(table("a,b\n").unwrap_err().to_string().contains("no data rows"));
        // A profile of a header alone has no rows, not an error.
        let (_d, p) = write("data.csv", "a,b\n");
        let frame = read(open(&p).unwrap(), &p, Format::Csv { delimiter: b',' }, ReadOptions::default()).unwrap();
        assert_eq!((frame.rows, frame.columns.len()), (0, 2));
        let err = read_table(Path::new("/nonexistent/x.csv"), &[]).unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/x.csv:"), "{err}");
    }

    #[test]
    fn header_problems_are_refused() {
        let header: Vec<String> = (0..MAX_COLUMNS + 1).map(|i| format!("c{i}")).collect();
        let err = table(&format!("{}\n", header.join(","))).unwrap_err().to_string();
        assert!(err.contains("data.csv:1:") && err.contains("at most 10000"), "{err}");
        assert!(table("a,a\n1,2\n").unwrap_err().to_string().contains("column `a` appears twice"));
        assert!(table("a,\n1,2\n").unwrap_err().to_string().contains("column 2 has an empty name"));
        assert!(table("").unwrap_err().to_string().contains("empty (no header row)"));
    }

    #[test]
    fn a_large_file_split_across_cores_reads_and_reports_lines_like_a_small_one() {
        let rows = 300_000;
        let mut csv = String::from("a,b,c\n");
        for i in 0..rows {
            csv.push_str(&format!("{i},{}.25,text{}\n", i % 7, i % 3));
        }
        assert!(csv.len() as u64 > PARALLEL_SPLIT);
        let t = table(&csv).unwrap();
        assert_eq!(t.rows, rows);
        let a = t.column("a").unwrap().as_numeric().unwrap();
        assert!(a.iter().enumerate().all(|(i, v)| *v == i as f64), "rows stay in file order");
        assert_eq!(t.column("c").unwrap().data, ColumnData::Categorical((0..rows).map(|i| format!("text{}", i % 3)).collect()));
        // Errors deep in the file name the right line, from any part.
        let row = |i: usize| format!("\n{i},{}.25,text{}\n", i % 7, i % 3);
        let error = |csv: &str| table(csv).err().map(|e| e.to_string()).unwrap_or_else(|| "no error".into());
        let ragged = csv.replacen(&row(250_000), &format!("\n250000,{}.25\n", 250_000 % 7), 1);
        let err = error(&ragged);
        assert!(err.contains("data.csv:250002: this row has 2 fields"), "{err}");
        let word = csv.replacen(&row(280_000), &format!("\noops,{}.25,text{}\n", 280_000 % 7, 280_000 % 3), 1);
        let err = error(&word);
        assert!(err.contains("data.csv:280002:") && err.contains("`oops`"), "{err}");
    }

    #[test]
    fn a_large_numeric_file_takes_the_direct_path_with_the_same_types() {
        let rows = 400_000;
        let csv = |big: bool| {
            let mut csv = String::from(if big { "i,f,empty,big\n" } else { "i,f,empty\n" });
            for r in 0..rows {
                let f = if r % 10 == 3 { "NA".to_string() } else { format!("{}.5", r % 11) };
                let tail = if big { format!(",{}", 1_000_000_000_000_000i64 + r as i64) } else { String::new() };
                csv.push_str(&format!("{r},{f},{tail}\n"));
            }
            assert!(csv.len() as u64 > PARALLEL_SPLIT);
            csv
        };
        let frame = |csv: &str| {
            let (_d, p) = write("data.csv", csv);
            let frame = read(open(&p).unwrap(), &p, Format::Csv { delimiter: b',' }, ReadOptions::default()).unwrap();
            let types: Vec<String> = frame.schema.fields().iter().map(|f| f.data_type().to_string()).collect();
            (frame, types)
        };
        // Numbers only: read straight into typed columns.
        let (numbers, types) = frame(&csv(false));
        assert_eq!(types, ["Int64", "Float64", "Null"]);
        let p = Path::new("data.csv");
        let t = to_table(numbers, p, &[]).unwrap();
        let f = t.column("f").unwrap().as_numeric().unwrap();
        assert!(f[3].is_nan() && f[4] == 4.5 && f[rows - 1] == ((rows - 1) % 11) as f64 + 0.5);
        assert!(t.column("i").unwrap().as_numeric().unwrap().iter().enumerate().all(|(r, v)| *v == r as f64));
        // A 16-digit integer an f64 cannot hold: the general path, same types.
        let (big, types) = frame(&csv(true));
        assert_eq!(types, ["Int64", "Float64", "Null", "Int64"]);
        assert_eq!(big.columns[3].as_primitive::<arrow_array::types::Int64Type>().value(rows - 1), 1_000_000_000_000_000 + rows as i64 - 1);
    }

    #[test]
    fn the_direct_numeric_path_reads_every_value_as_the_general_path_does() {
        // Values the fast parser does not take whole go the general way.
        let csv = "a,b,c\n1,+2.5, 3 \n-0,.5,nan\nNA,1e5,NAN\r\n7,inf,\n8,5.,-Infinity\n00012,1E-3,N/A";
        let (_d, p) = write("data.csv", csv);
        let general = read(open(&p).unwrap(), &p, Format::Csv { delimiter: b',' }, ReadOptions::default()).unwrap();
        let names: Vec<String> = ["a", "b", "c"].map(String::from).into();
        let bytes = csv.as_bytes();
        let second_line = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
        let third_line = second_line + bytes[second_line..].iter().position(|b| *b == b'\n').unwrap() + 1;
        for cuts in [vec![0, bytes.len()], vec![0, second_line, third_line, bytes.len()]] {
            let direct = numbers(bytes, &cuts, b',', &names).expect("every value is a number or missing");
            assert_eq!(direct.schema, general.schema);
            for (d, g) in direct.columns.iter().zip(&general.columns) {
                assert_eq!(d.to_data(), g.to_data(), "{:?} vs {:?}", d, g);
            }
        }
        assert_eq!(general.schema.fields().iter().map(|f| f.data_type().to_string()).collect::<Vec<_>>(), ["Int64", "Float64", "Float64"]);
        // What the direct path leaves to the general one.
        for refused in ["a,b\n1,2\n\n3,4\n", "a,b\n1,2,3\n", "a,b\n1\n", "a,b\n1,x\n", "a,b\n1,1e\n", "a,b\n1,1234567890123456\n"] {
            let names: Vec<String> = ["a", "b"].map(String::from).into();
            assert!(numbers(refused.as_bytes(), &[0, refused.len()], b',', &names).is_none(), "{refused:?}");
        }
    }

    #[test]
    fn reading_stops_past_the_limit() {
        let (_d, p) = write("data.csv", "a,b\n1,2\n3,4\n");
        let options = ReadOptions { limit: 8, ..Default::default() };
        let err = read(open(&p).unwrap(), &p, Format::Csv { delimiter: b',' }, options).unwrap_err().to_string();
        assert!(err.contains("input_size"), "{err}");
    }

    #[test]
    fn declared_categorical_stays_text() {
        let (_d, p) = write("data.csv", "zip,v\n02139,1\n10001,2\n");
        let t = read_table(&p, &["zip".to_string()]).unwrap();
        assert_eq!(t.column("zip").unwrap().data, ColumnData::Categorical(vec!["02139".into(), "10001".into()]));
    }

    #[test]
    fn parquet_reads_as_the_same_table() {
        use arrow_array::{Float64Array, Int64Array};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("y", DataType::Float64, true),
            Field::new("c", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(Float64Array::from(vec![0.5, 1.5, 2.5])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), None])),
            ],
        )
        .unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let t = read_table(&path, &[]).unwrap();
        assert_eq!(t.rows, 3);
        let x = t.column("x").unwrap().as_numeric().unwrap();
        assert!(x[0] == 1.0 && x[1].is_nan() && x[2] == 3.0);
        assert_eq!(t.column("y").unwrap().as_numeric().unwrap(), [0.5, 1.5, 2.5]);
        assert_eq!(t.column("c").unwrap().data, ColumnData::Categorical(vec!["a".into(), "b".into(), "".into()]));
        let err = read_table(&dir.path().join("bad.parquet").with_extension("csv"), &[]).unwrap_err().to_string();
        assert!(err.contains("bad.csv"), "{err}");
    }
}
