//! The columnar table that crosses the plugin boundary.

use crate::{PluginError, Result};

/// The values of one column: numbers (NaN = missing) or categories.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// Numeric values; NaN marks a missing value.
    Numeric(Vec<f64>),
    /// Categorical values; the empty string marks a missing value.
    Categorical(Vec<String>),
}

impl ColumnData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Numeric(v) => v.len(),
            ColumnData::Categorical(v) => v.len(),
        }
    }
    /// Whether the column has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Its values.
    pub data: ColumnData,
}

impl Column {
    /// A numeric column.
    pub fn numeric(name: impl Into<String>, values: Vec<f64>) -> Self {
        Column { name: name.into(), data: ColumnData::Numeric(values) }
    }
    /// A categorical column.
    pub fn categorical(name: impl Into<String>, values: Vec<String>) -> Self {
        Column { name: name.into(), data: ColumnData::Categorical(values) }
    }
    /// The values, or an error naming the column if it is categorical.
    pub fn as_numeric(&self) -> Result<&[f64]> {
        match &self.data {
            ColumnData::Numeric(v) => Ok(v),
            ColumnData::Categorical(_) => Err(PluginError::invalid_column(&self.name, format!("column `{}` must be numeric", self.name))),
        }
    }
}

/// A columnar table; every column holds `rows` values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Number of rows.
    pub rows: usize,
    /// The columns, in order.
    pub columns: Vec<Column>,
}

impl Table {
    /// A table from columns; errors if their lengths differ.
    pub fn new(columns: Vec<Column>) -> Result<Self> {
        let rows = columns.first().map_or(0, |c| c.data.len());
        if let Some(bad) = columns.iter().find(|c| c.data.len() != rows) {
            return Err(PluginError::invalid_column(&bad.name, format!("column `{}` has {} values, expected {rows}", bad.name, bad.data.len())));
        }
        Ok(Table { rows, columns })
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// All columns as numeric slices, or an error naming the first
    /// categorical column (for plugins that only take numbers).
    pub fn numeric_columns(&self) -> Result<Vec<&[f64]>> {
        self.columns.iter().map(Column::as_numeric).collect()
    }

    /// Row-major copy of the numeric features: `rows` rows of
    /// `columns.len()` values each.
    pub fn to_rows(&self) -> Result<Vec<Vec<f64>>> {
        let cols = self.numeric_columns()?;
        Ok((0..self.rows).map(|r| cols.iter().map(|c| c[r]).collect()).collect())
    }

    /// Column names in order.
    pub fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }
}

/// Check a trainer's input: rows present, one finite target value per row.
/// Returns the target values.
pub fn training_target<'a>(features: &Table, target: &'a Column) -> Result<&'a [f64]> {
    let y = target.as_numeric()?;
    if features.rows == 0 {
        return Err(PluginError::invalid_input("cannot train on a table with no rows"));
    }
    if y.len() != features.rows {
        return Err(PluginError::invalid_input(format!("{} feature rows but {} target values", features.rows, y.len())));
    }
    if let Some(row) = y.iter().position(|v| !v.is_finite()) {
        return Err(PluginError::invalid_column(&target.name, format!("target is missing or not finite at row {}", row + 1)));
    }
    Ok(y)
}
