//! The schema and column profile of a CSV or Parquet file, and the diff of
//! two profiles.
//!
//! A data version records both (as JSON); monitoring later compares new data
//! against the profile as its reference distribution. A profile holds, per
//! column, the counts, the moments, exact quantiles, a 20-bin histogram
//! (numeric columns) or the distinct count and the most frequent values
//! (text and boolean columns).
//!
//! Files are read by `dataset::read`, the reader pipelines use too, so a
//! column has the same type in a profile and in a pipeline; each column's
//! array feeds an accumulator. Missing values are nulls (in CSV: empty,
//! `NA`, `N/A`, `NaN`, `nan`, `null`, `NULL`, `None`) and, in numeric
//! columns, NaN and ±infinity: neither has a place in a mean or a
//! histogram, and JSON cannot write them. Dates, times, timestamps and
//! durations are profiled as numbers in their own unit (days since the
//! epoch for `Date32`, the timestamp's unit since the epoch, …); the
//! column's `data_type` says which.

use crate::dataset::read::{self, Format, ReadOptions};
use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_schema::{ArrowError, DataType};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The quantiles every numeric column records.
pub const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];
/// Equal-width bins between a numeric column's min and max.
pub const HISTOGRAM_BINS: usize = 20;
/// How many of a text column's most frequent values are kept.
pub const TOP_VALUES: usize = 10;
/// What a proportion of zero counts as in the PSI (whose log would otherwise
/// be infinite); the value most PSI implementations use.
const PSI_FLOOR: f64 = 1e-4;

/// A file's columns, in file order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub columns: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    /// Arrow's name for the type: `Int64`, `Float64`, `Utf8`, `Boolean`,
    /// `Date32`, `Timestamp(ns)`, …
    pub data_type: String,
    pub nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub rows: u64,
    /// In schema order.
    pub columns: Vec<ColumnProfile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub name: String,
    pub data_type: String,
    /// Values present (`count + missing == rows`).
    pub count: u64,
    pub missing: u64,
    /// For numeric and temporal columns with at least one value.
    pub numeric: Option<NumericStats>,
    /// For text and boolean columns.
    pub text: Option<TextStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericStats {
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for a single value.
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// `(q, value)` for each of [`QUANTILES`]: exact, interpolated linearly
    /// between the two nearest values as numpy's default does.
    pub quantiles: Vec<(f64, f64)>,
    pub histogram: Histogram,
}

/// Equal-width bins as numpy's `histogram(values, bins=20)`: every bin is
/// half-open `[edge, next)` but the last, which includes the max. A constant
/// column gets the range `value ± 0.5`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// `counts.len() + 1` edges, ascending.
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextStats {
    pub distinct: u64,
    /// The [`TOP_VALUES`] most frequent values with their counts, most
    /// frequent first, ties in value order. Booleans are `"true"`/`"false"`.
    pub top: Vec<(String, u64)>,
}

/// A profile fails as the read does.
pub type ProfileError = read::ReadError;

/// Profiles a file by its extension: `.csv`, `.tsv` (tab-separated),
/// `.parquet` and `.pq`, in any case. Any other file is `None`: data kept
/// as opaque bytes.
pub fn profile_path(path: &Path) -> Result<Option<(Schema, Profile)>, ProfileError> {
    profile_as(path, format_of(path))
}

/// The profiled format a file name says, by extension: `csv`, `tsv` or
/// `parquet`; `None` for anything else.
pub fn format_of(path: &Path) -> Option<&'static str> {
    Format::of(path).map(Format::name)
}

/// Profiles `path` as `format` (from [`format_of`]) whatever its own name
/// is (an uploaded blob has none); `None` profiles nothing.
pub fn profile_as(path: &Path, format: Option<&str>) -> Result<Option<(Schema, Profile)>, ProfileError> {
    let Some(format) = format.and_then(Format::from_name) else { return Ok(None) };
    let frame = read::read(read::open(path)?, path, format, ReadOptions::default())?;
    let mut columns = Vec::with_capacity(frame.columns.len());
    // Each column's array is let go once it is accumulated.
    for (field, array) in frame.schema.fields().iter().zip(frame.columns) {
        let mut column = ColumnAccumulator::new(field);
        column.add(&array).map_err(|e| ProfileError::File { path: path.into(), message: format!("column `{}`: {e}", field.name()) })?;
        columns.push(column);
    }
    let fields = frame
        .schema
        .fields()
        .iter()
        .map(|f| Field { name: f.name().clone(), data_type: f.data_type().to_string(), nullable: f.is_nullable() })
        .collect();
    Ok(Some((Schema { columns: fields }, Profile { rows: frame.rows as u64, columns: columns.into_iter().map(ColumnAccumulator::finish).collect() })))
}

/// What a column's values are summarised as.
enum Values {
    /// Every present value: exact quantiles need them all. 8 bytes a value,
    /// which is fine for the files we version today; a streaming sketch
    /// (t-digest, KLL) replaces this when files outgrow memory.
    Numeric(Vec<f64>),
    /// A count per distinct value. Holds every distinct value, so an id
    /// column costs its size in memory; a bounded heavy-hitters sketch
    /// would cap that.
    Text(HashMap<String, u64>),
    /// Counted, not summarised (binary, lists, structs, …).
    Other,
}

struct ColumnAccumulator {
    name: String,
    data_type: DataType,
    count: u64,
    missing: u64,
    values: Values,
}

impl ColumnAccumulator {
    fn new(field: &arrow_schema::Field) -> Self {
        let values = match summary_kind(field.data_type()) {
            Kind::Numeric | Kind::Temporal => Values::Numeric(Vec::new()),
            Kind::Text => Values::Text(HashMap::new()),
            Kind::Other => Values::Other,
        };
        ColumnAccumulator { name: field.name().clone(), data_type: field.data_type().clone(), count: 0, missing: 0, values }
    }

    fn add(&mut self, array: &dyn Array) -> Result<(), ArrowError> {
        match &mut self.values {
            Values::Numeric(values) => {
                let floats = match summary_kind(&self.data_type) {
                    Kind::Temporal => {
                        let integers = arrow_cast::cast(array, &DataType::Int64)?;
                        arrow_cast::cast(&integers, &DataType::Float64)?
                    }
                    _ => arrow_cast::cast(array, &DataType::Float64)?,
                };
                let before = values.len();
                values.extend(floats.as_primitive::<Float64Type>().iter().flatten().filter(|v| v.is_finite()));
                let present = (values.len() - before) as u64;
                self.count += present;
                self.missing += array.len() as u64 - present;
            }
            Values::Text(counts) => {
                let strings = arrow_cast::cast(array, &DataType::Utf8)?;
                for value in strings.as_string::<i32>().iter() {
                    match value {
                        Some(v) => {
                            self.count += 1;
                            match counts.get_mut(v) {
                                Some(n) => *n += 1,
                                None => {
                                    counts.insert(v.to_string(), 1);
                                }
                            }
                        }
                        None => self.missing += 1,
                    }
                }
            }
            Values::Other => {
                let nulls = array.logical_null_count() as u64;
                self.missing += nulls;
                self.count += array.len() as u64 - nulls;
            }
        }
        Ok(())
    }

    fn finish(self) -> ColumnProfile {
        let (numeric, text) = match self.values {
            Values::Numeric(mut values) => (numeric_stats(&mut values), None),
            Values::Text(counts) => (None, Some(text_stats(counts))),
            Values::Other => (None, None),
        };
        ColumnProfile { name: self.name, data_type: self.data_type.to_string(), count: self.count, missing: self.missing, numeric, text }
    }
}

enum Kind {
    Numeric,
    Temporal,
    Text,
    Other,
}

fn summary_kind(data_type: &DataType) -> Kind {
    use DataType::*;
    match data_type {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32 | Float64 => Kind::Numeric,
        Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => Kind::Numeric,
        Date32 | Date64 | Timestamp(..) | Time32(_) | Time64(_) | Duration(_) => Kind::Temporal,
        Boolean | Utf8 | LargeUtf8 | Utf8View => Kind::Text,
        Dictionary(_, values) => match summary_kind(values) {
            // Casting a dictionary of dates to Int64 is not supported; its
            // values are still counted.
            Kind::Temporal => Kind::Other,
            kind => kind,
        },
        _ => Kind::Other,
    }
}

fn numeric_stats(values: &mut [f64]) -> Option<NumericStats> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = if values.len() > 1 { (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    Some(NumericStats {
        mean,
        std,
        min: values[0],
        max: values[values.len() - 1],
        quantiles: QUANTILES.iter().map(|&q| (q, quantile(values, q))).collect(),
        histogram: histogram(values),
    })
}

/// numpy's `quantile(values, q)` (method `linear`) of sorted values,
/// including its way of interpolating (from the nearer neighbour).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = (sorted.len() - 1) as f64 * q;
    let below = position.floor();
    let i = below as usize;
    if i + 1 >= sorted.len() {
        return sorted[sorted.len() - 1];
    }
    let (a, b, t) = (sorted[i], sorted[i + 1], position - below);
    if t >= 0.5 { b - (b - a) * (1.0 - t) } else { a + (b - a) * t }
}

/// numpy's `histogram(sorted, bins=HISTOGRAM_BINS)`: the same edges (as
/// `linspace` computes them) and the same bin for a value on an edge.
fn histogram(sorted: &[f64]) -> Histogram {
    let (mut first, mut last) = (sorted[0], sorted[sorted.len() - 1]);
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    let step = (last - first) / HISTOGRAM_BINS as f64;
    let mut edges: Vec<f64> = (0..=HISTOGRAM_BINS).map(|i| i as f64 * step + first).collect();
    edges[HISTOGRAM_BINS] = last;
    let mut counts = vec![0u64; HISTOGRAM_BINS];
    for &v in sorted {
        let guess = ((v - first) / (last - first) * HISTOGRAM_BINS as f64) as usize;
        let mut bin = guess.min(HISTOGRAM_BINS - 1);
        if v < edges[bin] {
            bin -= 1;
        } else if bin != HISTOGRAM_BINS - 1 && v >= edges[bin + 1] {
            bin += 1;
        }
        counts[bin] += 1;
    }
    Histogram { edges, counts }
}

fn text_stats(counts: HashMap<String, u64>) -> TextStats {
    let distinct = counts.len() as u64;
    let mut top: Vec<(String, u64)> = counts.into_iter().collect();
    let by_count = |a: &(String, u64), b: &(String, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0));
    if top.len() > TOP_VALUES {
        top.select_nth_unstable_by(TOP_VALUES - 1, by_count);
        top.truncate(TOP_VALUES);
    }
    top.sort_unstable_by(by_count);
    TextStats { distinct, top }
}

/// What changed between two versions of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    pub rows_before: u64,
    pub rows_after: u64,
    /// Columns only the new version has, in its order.
    pub added: Vec<Field>,
    /// Columns only the old version has, in its order.
    pub removed: Vec<Field>,
    pub type_changed: Vec<TypeChange>,
    /// Every column both versions have, in the new version's order.
    pub columns: Vec<ColumnShift>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeChange {
    pub name: String,
    pub before: String,
    pub after: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnShift {
    pub name: String,
    /// Share of rows missing, 0 to 1 (0 for a file with no rows).
    pub missing_before: f64,
    pub missing_after: f64,
    /// (new mean − old mean) / old std. Numeric on both sides only; `None`
    /// also when the old column was constant and the mean moved.
    pub mean_shift: Option<f64>,
    /// Population stability index of the new values over the old
    /// histogram's bins (the outer bins open-ended), numeric columns only.
    /// The new values are known through their own histogram, taken as
    /// uniform within each bin. Rule of thumb: below 0.1 stable, above 0.25
    /// a real shift.
    pub psi: Option<f64>,
    /// Share of the new values (present ones) whose value is not among the
    /// old top values, text columns only. Exact when the new column has at
    /// most [`TOP_VALUES`] distinct values; otherwise an upper bound, since
    /// an old value that left the new top list counts as new.
    pub new_value_share: Option<f64>,
}

/// Compares two profiled versions: `old` is the reference.
pub fn diff(old: &(Schema, Profile), new: &(Schema, Profile)) -> Diff {
    let (old_schema, old_profile) = old;
    let (new_schema, new_profile) = new;
    let find = |fields: &'_ [Field], name: &str| fields.iter().find(|f| f.name == name).cloned();
    let added = new_schema.columns.iter().filter(|f| find(&old_schema.columns, &f.name).is_none()).cloned().collect();
    let removed = old_schema.columns.iter().filter(|f| find(&new_schema.columns, &f.name).is_none()).cloned().collect();
    let type_changed = new_schema
        .columns
        .iter()
        .filter_map(|f| {
            let before = find(&old_schema.columns, &f.name)?;
            (before.data_type != f.data_type).then(|| TypeChange { name: f.name.clone(), before: before.data_type, after: f.data_type.clone() })
        })
        .collect();
    let share = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 / whole as f64 };
    let columns = new_profile
        .columns
        .iter()
        .filter_map(|after| {
            let before = old_profile.columns.iter().find(|c| c.name == after.name)?;
            let (mean_shift, psi) = match (&before.numeric, &after.numeric) {
                (Some(b), Some(a)) => {
                    let moved = a.mean - b.mean;
                    let shift = if b.std > 0.0 {
                        Some(moved / b.std)
                    } else if moved == 0.0 {
                        Some(0.0)
                    } else {
                        None
                    };
                    (shift, Some(psi(&b.histogram, &a.histogram)))
                }
                _ => (None, None),
            };
            let new_value_share = match (&before.text, &after.text) {
                (Some(b), Some(a)) if after.count > 0 => {
                    let known: u64 = a.top.iter().filter(|(v, _)| b.top.iter().any(|(old, _)| old == v)).map(|(_, n)| n).sum();
                    Some(1.0 - known as f64 / after.count as f64)
                }
                _ => None,
            };
            Some(ColumnShift {
                name: after.name.clone(),
                missing_before: share(before.missing, old_profile.rows),
                missing_after: share(after.missing, new_profile.rows),
                mean_shift,
                psi,
                new_value_share,
            })
        })
        .collect();
    Diff { rows_before: old_profile.rows, rows_after: new_profile.rows, added, removed, type_changed, columns }
}

/// PSI = Σ (new − old) · ln(new / old) over the old bins, proportions of
/// zero counted as [`PSI_FLOOR`].
fn psi(old: &Histogram, new: &Histogram) -> f64 {
    let old_total = old.counts.iter().sum::<u64>() as f64;
    let new_total = new.counts.iter().sum::<u64>() as f64;
    let bins = old.counts.len();
    // How many new values lie below each inner edge of the old histogram.
    // Counts, not shares, so that identical histograms give exactly 0.
    let mut below: Vec<f64> = vec![0.0];
    below.extend(old.edges[1..bins].iter().map(|&edge| count_below(new, edge)));
    below.push(new_total);
    (0..bins)
        .map(|i| {
            let p = (old.counts[i] as f64 / old_total).max(PSI_FLOOR);
            let q = ((below[i + 1] - below[i]) / new_total).max(PSI_FLOOR);
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// How many of a histogram's values lie below `x`, taking them as uniform
/// within each bin.
fn count_below(h: &Histogram, x: f64) -> f64 {
    let mut below = 0.0;
    for (i, &count) in h.counts.iter().enumerate() {
        let (lo, hi) = (h.edges[i], h.edges[i + 1]);
        if x >= hi {
            below += count as f64;
        } else {
            if x > lo {
                below += count as f64 * (x - lo) / (hi - lo);
            }
            break;
        }
    }
    below
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files::write;
    use arrow_array::{ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::arrow_reader::ArrowReaderMetadata;
    use std::fs::File;
    use std::sync::Arc;

    fn profile(path: &Path) -> (Schema, Profile) {
        profile_path(path).unwrap().expect("a profiled format")
    }

    fn column<'a>(p: &'a Profile, name: &str) -> &'a ColumnProfile {
        p.columns.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no column {name}"))
    }

    fn close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
    }

    // x: 2 4 4 4 5 5 7 9 (mean 5, sample std sqrt(32/7)).
    // y: 1.5 2.5 3.5 4.5 and four missing ways (empty, NA, NaN, empty).
    // c: a 3×, b 2×, d and c once each (d first in the file), one missing.
    const KNOWN: &str = "x,y,c,flag,day\n\
        2,1.5,a,true,2024-01-01\n\
        4,,b,false,2024-01-02\n\
        4,2.5,a,true,\n\
        4,NA,d,true,2024-01-04\n\
        5,NaN,a,false,2024-01-05\n\
        5,3.5,b,true,2024-01-06\n\
        7,4.5,,true,2024-01-07\n\
        9,,c,false,2024-01-08\n";

    #[test]
    fn numeric_column_matches_hand_computed_stats() {
        let (_d, path) = write("known.csv", KNOWN);
        let (schema, p) = profile(&path);
        let types: Vec<_> = schema.columns.iter().map(|f| (f.name.as_str(), f.data_type.as_str())).collect();
        assert_eq!(types, [("x", "Int64"), ("y", "Float64"), ("c", "Utf8"), ("flag", "Boolean"), ("day", "Date32")]);
        assert_eq!(p.rows, 8);
        let x = column(&p, "x");
        assert_eq!((x.count, x.missing), (8, 0));
        let s = x.numeric.as_ref().unwrap();
        close(s.mean, 5.0);
        close(s.std, (32.0f64 / 7.0).sqrt());
        assert_eq!((s.min, s.max), (2.0, 9.0));
        // numpy.quantile([2,4,4,4,5,5,7,9], q): position 7q, linear between neighbours.
        let expected = [(0.01, 2.14), (0.05, 2.7), (0.25, 4.0), (0.5, 4.5), (0.75, 5.5), (0.95, 8.3), (0.99, 8.86)];
        assert_eq!(s.quantiles.len(), expected.len());
        for ((q, v), (eq, ev)) in s.quantiles.iter().zip(expected) {
            assert_eq!(*q, eq);
            close(*v, ev);
        }
        // Bins of width 0.35 from 2: 2 → 0, 4 → 5, 5 → 8, 7 → 14, 9 → the last (closed) bin.
        let mut counts = vec![0u64; 20];
        counts[0] = 1;
        counts[5] = 3;
        counts[8] = 2;
        counts[14] = 1;
        counts[19] = 1;
        assert_eq!(s.histogram.counts, counts);
        assert_eq!(s.histogram.edges.len(), 21);
        assert_eq!((s.histogram.edges[0], s.histogram.edges[20]), (2.0, 9.0));
        close(s.histogram.edges[1], 2.35);
        assert!(x.text.is_none());
    }

    #[test]
    fn missing_values_are_counted_not_summarised() {
        let (_d, path) = write("known.csv", KNOWN);
        let (_, p) = profile(&path);
        let y = column(&p, "y");
        assert_eq!((y.count, y.missing), (4, 4));
        let s = y.numeric.as_ref().unwrap();
        close(s.mean, 3.0);
        close(s.std, (5.0f64 / 3.0).sqrt());
        assert_eq!((s.min, s.max), (1.5, 4.5));
        assert_eq!(s.histogram.counts.iter().sum::<u64>(), 4);
        let day = column(&p, "day");
        assert_eq!((day.count, day.missing), (7, 1));
        // 2024-01-01 is day 19723 since the epoch.
        let s = day.numeric.as_ref().unwrap();
        assert_eq!((s.min, s.max), (19723.0, 19730.0));
        for c in &p.columns {
            assert_eq!(c.count + c.missing, p.rows, "{}", c.name);
        }
        // A column with nothing in it has no stats, and still round-trips through JSON.
        let (_d, path) = write("empty_col.csv", "a,b\n1,\n2,NA\n");
        let (schema, p) = profile(&path);
        let b = column(&p, "b");
        assert_eq!((b.count, b.missing, b.numeric.is_none(), b.text.is_none()), (0, 2, true, true));
        let json = serde_json::to_string(&(&schema, &p)).unwrap();
        let back: (Schema, Profile) = serde_json::from_str(&json).unwrap();
        assert_eq!(back, (schema, p));
    }

    #[test]
    fn text_and_boolean_columns_keep_top_values() {
        let (_d, path) = write("known.csv", KNOWN);
        let (_, p) = profile(&path);
        let c = column(&p, "c");
        assert_eq!((c.count, c.missing), (7, 1));
        let t = c.text.as_ref().unwrap();
        assert_eq!(t.distinct, 4);
        let top: Vec<_> = t.top.iter().map(|(v, n)| (v.as_str(), *n)).collect();
        assert_eq!(top, [("a", 3), ("b", 2), ("c", 1), ("d", 1)]);
        assert!(c.numeric.is_none());
        let flag = column(&p, "flag").text.as_ref().unwrap();
        assert_eq!(flag.top, [("true".to_string(), 5), ("false".to_string(), 3)]);

        // Value i appears i + 1 times: the top 10 are v11 … v2.
        let mut csv = String::from("k\n");
        for i in 0..12 {
            for _ in 0..=i {
                csv.push_str(&format!("v{i}\n"));
            }
        }
        let (_d, path) = write("many.csv", &csv);
        let (_, p) = profile(&path);
        let t = column(&p, "k").text.as_ref().unwrap();
        assert_eq!(t.distinct, 12);
        let expected: Vec<_> = (2..12).rev().map(|i| (format!("v{i}"), i as u64 + 1)).collect();
        assert_eq!(t.top, expected);
    }

    #[test]
    fn constant_column_and_many_batches() {
        let (_d, path) = write("one.tsv", "v\tw\n3\tx\n");
        let (schema, p) = profile(&path);
        assert_eq!(schema.columns.len(), 2, "tab-separated");
        let s = column(&p, "v").numeric.clone().unwrap();
        assert_eq!((s.mean, s.std, s.min, s.max), (3.0, 0.0, 3.0, 3.0));
        assert!(s.quantiles.iter().all(|(_, v)| *v == 3.0));
        // numpy: range 3 ± 0.5, the value in bin 10.
        assert_eq!((s.histogram.edges[0], s.histogram.edges[20]), (2.5, 3.5));
        assert_eq!(s.histogram.counts.iter().position(|&n| n == 1), Some(10));

        // 20,000 rows span three batches; every bin of 0..19999 holds 1,000.
        let mut csv = String::from("i\n");
        for i in 0..20_000 {
            csv.push_str(&format!("{i}\n"));
        }
        let (_d, path) = write("long.csv", &csv);
        let (_, p) = profile(&path);
        assert_eq!(p.rows, 20_000);
        let s = column(&p, "i").numeric.clone().unwrap();
        close(s.mean, 9999.5);
        assert_eq!((s.min, s.max), (0.0, 19999.0));
        close(s.quantiles[3].1, 9999.5);
        close(s.quantiles[0].1, 199.99);
        assert_eq!(s.histogram.counts, vec![1000; 20]);
    }

    #[test]
    fn unknown_extension_is_opaque_and_errors_name_the_file() {
        let (_d, path) = write("model.bin", "\x00\x01");
        assert!(profile_path(&path).unwrap().is_none());
        let (_d, path) = write("UPPER.CSV", "a\n1\n");
        assert!(profile_path(&path).unwrap().is_some());
        let err = profile_path(Path::new("/nonexistent/x.csv")).unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/x.csv: No such file"), "{err}");
        let (_d, path) = write("empty.csv", "");
        let err = profile_path(&path).unwrap_err().to_string();
        assert!(err.ends_with("empty.csv: the file is empty (no header row)"), "{err}");
        let (_d, path) = write("dup.csv", "a,b,a\n1,2,3\n");
        let err = profile_path(&path).unwrap_err().to_string();
        assert!(err.ends_with("dup.csv:1: column `a` appears twice in the header"), "{err}");
    }

    #[test]
    fn ragged_csv_row_names_line_and_column() {
        let (_d, path) = write("data.csv", "a,b,c\n1,2,3\n4\n");
        let err = profile_path(&path).unwrap_err().to_string();
        assert!(err.ends_with("data.csv:3: this row has 1 fields but the header has 3 (column `b` and after are missing)"), "{err}");
        let (_d, path) = write("data.csv", "a,b\n1,2\n3,4\n5,6,7\n");
        let err = profile_path(&path).unwrap_err().to_string();
        assert!(err.ends_with("data.csv:4: this row has 3 fields but the header has 2"), "{err}");
    }

    #[test]
    fn values_that_only_look_like_dates_keep_the_column_text() {
        // Matches the date pattern but is no date: the column is text, as it
        // is for a pipeline reading the same file.
        let (_d, path) = write("data.csv", "a,d\n1,2024-01-31\n2,2024-02-30\n");
        let (schema, _) = profile(&path);
        assert_eq!(schema.columns[1].data_type, "Utf8");
        let (_d, path) = write("data.csv", "a,t\n1,2024-01-01T00:00:00\n2,2024-01-01T25:00:00\n");
        assert_eq!(profile(&path).0.columns[1].data_type, "Utf8");
        let (_d, path) = write("data.csv", "a,t\n1,2024-01-01T00:00:00\n2,2024-01-01 23:00:00.25\n");
        assert_eq!(profile(&path).0.columns[1].data_type, "Timestamp(ns)");
        // A word far down a numeric column makes it text too.
        let mut csv = String::from("x\n");
        for i in 0..10_000 {
            csv.push_str(&format!("{i}\n"));
        }
        csv.push_str("oops\n");
        let (_d, path) = write("data.csv", &csv);
        let (schema, p) = profile(&path);
        assert_eq!((schema.columns[0].data_type.as_str(), p.columns[0].text.as_ref().unwrap().distinct), ("Utf8", 10_001));
    }

    #[test]
    fn invalid_utf8_names_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.csv");
        std::fs::write(&path, b"a,b\n1,x\n2,\xff\n").unwrap();
        let err = profile_path(&path).unwrap_err().to_string();
        assert!(err.ends_with("data.csv:3: this row is not valid UTF-8 in column `b` (field 2)"), "{err}");
    }

    fn known_batch() -> RecordBatch {
        let x: ArrayRef = Arc::new(Int64Array::from(vec![2, 4, 4, 4, 5, 5, 7, 9]));
        let y: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.5), None, Some(2.5), None, None, Some(3.5), Some(4.5), None]));
        let c: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), Some("b"), Some("a"), Some("d"), Some("a"), Some("b"), None, Some("c")]));
        let flag: ArrayRef = Arc::new(BooleanArray::from(vec![true, false, true, true, false, true, true, false]));
        let day: ArrayRef =
            Arc::new(Date32Array::from(vec![Some(19723), Some(19724), None, Some(19726), Some(19727), Some(19728), Some(19729), Some(19730)]));
        RecordBatch::try_from_iter_with_nullable(vec![("x", x, true), ("y", y, true), ("c", c, true), ("flag", flag, true), ("day", day, true)])
            .unwrap()
    }

    fn write_parquet(path: &Path, batch: &RecordBatch) {
        write_parquet_with(path, batch, parquet::basic::Compression::SNAPPY)
    }

    fn write_parquet_with(path: &Path, batch: &RecordBatch, codec: parquet::basic::Compression) {
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::WriterProperties;
        let props = WriterProperties::builder().set_compression(codec).set_max_row_group_row_count(Some(3)).build();
        let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn parquet_profiles_like_the_same_csv() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known.parquet");
        write_parquet(&path, &known_batch());
        let metadata = ArrowReaderMetadata::load(&File::open(&path).unwrap(), Default::default()).unwrap();
        assert_eq!(metadata.metadata().num_row_groups(), 3, "several row groups are read");
        let from_parquet = profile(&path);
        let (_d, csv) = write("known.csv", KNOWN);
        let from_csv = profile(&csv);
        assert_eq!(from_parquet, from_csv);
        assert_eq!(column(&from_parquet.1, "x").numeric.as_ref().unwrap().histogram.counts[5], 3);
        // Zstandard (polars' default) reads the same.
        let zstd = dir.path().join("zstd.parquet");
        write_parquet_with(&zstd, &known_batch(), parquet::basic::Compression::ZSTD(Default::default()));
        assert_eq!(profile(&zstd), from_csv);
    }

    #[test]
    fn parquet_nan_and_infinity_count_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nan.pq");
        let v: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.0), Some(f64::NAN), None, Some(3.0), Some(f64::INFINITY)]));
        write_parquet(&path, &RecordBatch::try_from_iter(vec![("v", v)]).unwrap());
        let (_, p) = profile(&path);
        let v = column(&p, "v");
        assert_eq!((p.rows, v.count, v.missing), (5, 2, 3));
        close(v.numeric.as_ref().unwrap().mean, 2.0);
    }

    #[test]
    fn truncated_parquet_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.parquet");
        write_parquet(&path, &known_batch());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = profile_path(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: not a Parquet file, or a truncated one", path.display())), "{err}");
    }

    #[test]
    fn damaged_parquet_page_names_row_group_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        write_parquet(&path, &known_batch());
        let mut bytes = std::fs::read(&path).unwrap();
        // The first column chunk (`x` of row group 0) starts after the 4-byte magic.
        bytes[4..24].fill(0xff);
        std::fs::write(&path, &bytes).unwrap();
        let err = profile_path(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: row group 0 (of 3), column `x`: ", path.display())), "{err}");
    }

    #[test]
    fn unsupported_codec_is_named_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gzip.parquet");
        write_parquet(&path, &known_batch());
        let mut bytes = std::fs::read(&path).unwrap();
        // In the footer, column `x`'s metadata: path_in_schema ["x"] (list
        // header 0x18, length 1, "x"), then codec (field header 0x15) SNAPPY
        // (zigzag 2); make it GZIP (zigzag 4). Once per row group.
        let snappy_x = [0x18, 0x01, b'x', 0x15, 0x02];
        let mut patched = 0;
        for i in 0..bytes.len() - snappy_x.len() {
            if bytes[i..i + snappy_x.len()] == snappy_x {
                bytes[i + 4] = 0x04;
                patched += 1;
            }
        }
        assert_eq!(patched, 3, "the footer layout changed");
        std::fs::write(&path, &bytes).unwrap();
        let err = profile_path(&path).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "gzip.parquet: row group 0 (of 3), column `x`: compressed with GZIP, which kiln does not read \
                 (it reads uncompressed, Snappy, LZ4 and Zstandard Parquet)"
            ),
            "{err}"
        );
    }

    fn versions(old: &str, new: &str) -> ((Schema, Profile), (Schema, Profile)) {
        let (_a, a) = write("old.csv", old);
        let (_b, b) = write("new.csv", new);
        (profile(&a), profile(&b))
    }

    #[test]
    fn diff_reports_schema_changes() {
        let (old, new) = versions("a,b,c\n1,x,3\n2,y,4\n", "a,c,d\n1,z,5\n2,3,6\n3,4,7\n");
        let d = diff(&old, &new);
        assert_eq!((d.rows_before, d.rows_after), (2, 3));
        let names = |fields: &[Field]| fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&d.added), ["d"]);
        assert_eq!(names(&d.removed), ["b"]);
        assert_eq!(d.type_changed, [TypeChange { name: "c".into(), before: "Int64".into(), after: "Utf8".into() }]);
        assert_eq!(d.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        let c = &d.columns[1];
        assert!(c.psi.is_none() && c.mean_shift.is_none() && c.new_value_share.is_none(), "{c:?}");
    }

    #[test]
    fn diff_measures_shifts() {
        let data = |offset: i64| {
            let mut csv = String::from("v,k\n");
            for i in 0..200 {
                let k = if offset == 0 { ["a", "b"][i % 2] } else { ["a", "c", "c", "c"][i % 4] };
                csv.push_str(&format!("{},{k}\n", i as i64 + offset));
            }
            csv
        };
        let (old, same) = versions(&data(0), &data(0));
        let d = diff(&old, &same);
        let v = &d.columns[0];
        assert_eq!(v.psi, Some(0.0), "{v:?}");
        assert_eq!(v.mean_shift, Some(0.0));
        assert_eq!(d.columns[1].new_value_share, Some(0.0));
        assert!(d.added.is_empty() && d.removed.is_empty() && d.type_changed.is_empty());

        let (old, shifted) = versions(&data(0), &data(60));
        let d = diff(&old, &shifted);
        let v = &d.columns[0];
        let std = old.1.columns[0].numeric.as_ref().unwrap().std;
        close(v.mean_shift.unwrap(), 60.0 / std);
        assert!(v.psi.unwrap() > 0.25, "{v:?}");
        // "c" was not an old category: three quarters of the new values.
        close(d.columns[1].new_value_share.unwrap(), 0.75);
        assert_eq!((v.missing_before, v.missing_after), (0.0, 0.0));
    }

    #[test]
    fn diff_small_shift_has_small_psi_and_missing_shares() {
        let old: String = std::iter::once("v\n".to_string()).chain((0..1000).map(|i| format!("{i}\n"))).collect();
        let new: String = std::iter::once("v\n".to_string())
            .chain((0..1000).map(|i| if i % 10 == 0 { "NA\n".to_string() } else { format!("{}\n", i + 5) }))
            .collect();
        let (old, new) = versions(&old, &new);
        let v = &diff(&old, &new).columns[0];
        assert!(v.psi.unwrap() < 0.1, "{v:?}");
        assert_eq!((v.missing_before, v.missing_after), (0.0, 0.1));
    }

    #[test]
    fn profiles_the_quickstart_data() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/breast_cancer.csv");
        let (schema, p) = profile(&path);
        assert_eq!((p.rows, schema.columns.len(), p.columns.len()), (569, 31, 31));
        // The same column read independently.
        let mut reader = ::csv::Reader::from_path(&path).unwrap();
        let index = reader.headers().unwrap().iter().position(|h| h == "mean_area").unwrap();
        let values: Vec<f64> = reader.records().map(|r| r.unwrap()[index].parse().unwrap()).collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let area = column(&p, "mean_area");
        assert_eq!((area.data_type.as_str(), area.count, area.missing), ("Float64", 569, 0));
        let s = area.numeric.as_ref().unwrap();
        assert_eq!((s.min, s.max), (min, max));
        assert!((s.mean - mean).abs() < 1e-9 * mean, "{} vs {mean}", s.mean);
        assert_eq!(s.histogram.counts.iter().sum::<u64>(), 569);
    }
}
