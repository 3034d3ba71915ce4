//! Tabular data on the host side: reading files into the columnar
//! [`Table`] that crosses the plugin boundary, and splitting it.

pub mod read;
mod split;

pub use kiln_types::{Column, ColumnData, Table};
pub use read::{Format, ReadError, read_table};
pub use split::{Split, split_rows};

/// The rows at `idx`, in that order.
pub fn take_rows(table: &Table, idx: &[usize]) -> Table {
    let columns = table
        .columns
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            data: match &c.data {
                ColumnData::Numeric(v) => ColumnData::Numeric(idx.iter().map(|&i| v[i]).collect()),
                ColumnData::Categorical(v) => ColumnData::Categorical(idx.iter().map(|&i| v[i].clone()).collect()),
            },
        })
        .collect();
    Table { rows: idx.len(), columns }
}

/// Column names for a message: the first 20, and how many more.
pub fn list_names<S: AsRef<str>>(names: &[S]) -> String {
    const SHOWN: usize = 20;
    let mut out = names
        .iter()
        .take(SHOWN)
        .map(|n| {
            let n = n.as_ref();
            if n.chars().count() > 64 { format!("{}…", n.chars().take(64).collect::<String>()) } else { n.to_string() }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}

/// Split off the target column; what remains are the features.
pub fn features_and_target(table: &Table, target: &str) -> Result<(Table, Column), String> {
    let pos = table
        .columns
        .iter()
        .position(|c| c.name == target)
        .ok_or_else(|| format!("there is no target column `{target}`; the columns are: {}", list_names(&table.names())))?;
    let mut features = table.clone();
    let target = features.columns.remove(pos);
    Ok((features, target))
}

/// Stable content hash of a table, for cache keys.
pub fn content_hash(table: &Table) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&(table.rows as u64).to_le_bytes());
    for c in &table.columns {
        h.update(c.name.as_bytes());
        h.update(&[0]);
        match &c.data {
            ColumnData::Numeric(v) => {
                h.update(b"n");
                for x in v {
                    h.update(&x.to_bits().to_le_bytes());
                }
            }
            ColumnData::Categorical(v) => {
                h.update(b"c");
                for s in v {
                    h.update(&(s.len() as u64).to_le_bytes());
                    h.update(s.as_bytes());
                }
            }
        }
    }
    h.finalize().to_hex().to_string()
}
