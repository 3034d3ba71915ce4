use anyhow::{Context, Result};
use clap::Subcommand;
use kiln_services::app::App;
use kiln_services::data::{self, AddOptions, DataState, profile};
use kiln_services::output;
use kiln_services::views;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Version a file or a directory: store its content once, register a
    /// dataset version, write PATH.kiln for git and git-ignore PATH.
    Add {
        path: PathBuf,
        /// The dataset's name (default: the file stem or folder name).
        #[arg(long)]
        name: Option<String>,
        /// Store a CSV/Parquet file as opaque data, without schema and profile.
        #[arg(long)]
        no_profile: bool,
        /// Store the files as hard links instead of copies (instant, no
        /// second copy on disk; the files become read-only, since writing
        /// to them in place would change the stored version). Falls back
        /// to a copy across filesystems.
        #[arg(long)]
        hardlink: bool,
        #[arg(long)]
        json: bool,
    },
    /// Which tracked paths are unchanged, modified or missing.
    Status {
        paths: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Restore tracked paths to the versions their pointer files name.
    Checkout {
        paths: Vec<PathBuf>,
        /// Overwrite changes no version holds, and remove files a
        /// directory version does not have.
        #[arg(long)]
        force: bool,
        /// Hard-link files out of the blob store instead of copying them
        /// (instant; the files are read-only).
        #[arg(long)]
        hardlink: bool,
        #[arg(long)]
        json: bool,
    },
    /// Send the blobs the pointers name to a remote (kiln.toml), only
    /// those it lacks.
    Push {
        paths: Vec<PathBuf>,
        #[arg(long)]
        remote: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Fetch the blobs the pointers name from a remote, then check out.
    Pull {
        paths: Vec<PathBuf>,
        #[arg(long)]
        remote: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Datasets with their latest version.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A dataset version (NAME, NAME@VERSION or NAME@latest): its schema,
    /// column profile, and the runs that read it.
    Show {
        reference: String,
        #[arg(long)]
        json: bool,
    },
    /// Schema changes and profile shifts between two versions.
    Diff {
        old: String,
        new: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: DataCommand) -> Result<i32> {
    match cmd {
        DataCommand::Add { path, name, no_profile, hardlink, json } => {
            let app = App::open(true).await?;
            let added = data::add(&app, &path, AddOptions { name, profile: !no_profile, hardlink }).await?;
            let v = &added.version;
            if json {
                kiln_services::outln!(
                    "{}",
                    output::json(&serde_json::json!({
                        "name": v.name, "version": v.version, "hash": v.hash, "kind": v.kind, "size": v.size, "files": v.files,
                        "created": added.created, "pointer": added.pointer, "new_blobs": added.new_blobs, "new_bytes": added.new_bytes,
                    }))
                );
            } else {
                let what = if added.created { "added as" } else { "unchanged: already" };
                kiln_services::outln!(
                    "{} {what} {}@{} ({}, {} file{}, {} new in the blob store)",
                    path.display(),
                    v.name,
                    v.version,
                    output::bytes(v.size as u64),
                    v.files,
                    if v.files == 1 { "" } else { "s" },
                    output::bytes(added.new_bytes)
                );
                kiln_services::outln!("commit {} to git; {} is git-ignored", added.pointer.display(), path.display());
            }
            Ok(0)
        }
        DataCommand::Status { paths, json } => {
            let local = data::Local::open()?;
            let entries = data::status(&local, &paths)?;
            let changed = entries.iter().filter(|e| e.state != DataState::Unchanged).count();
            if json {
                kiln_services::outln!("{}", output::json(&entries));
            } else if entries.is_empty() {
                kiln_services::outln!("no tracked data (add some with `kiln data add PATH`)");
            } else {
                let rows = entries
                    .iter()
                    .map(|e| {
                        let state = serde_json::to_value(e.state).unwrap().as_str().unwrap_or("").to_string();
                        vec![e.path.clone(), format!("{}@{}", e.name, e.version), state, e.detail.clone()]
                    })
                    .collect();
                kiln_services::outln!("{}", output::table(&["path", "version", "state", "detail"], rows));
            }
            // Like `git diff --exit-code`: scripts can ask whether anything changed.
            Ok(if changed > 0 { 1 } else { 0 })
        }
        DataCommand::Checkout { paths, force, hardlink, json } => {
            let local = data::Local::open()?;
            let done = data::checkout(&local, &paths, force, hardlink)?;
            if json {
                kiln_services::outln!("{}", output::json(&done));
            } else {
                for d in &done {
                    let what = match (d.restored, d.removed) {
                        (0, 0) => "already up to date".to_string(),
                        (r, 0) => format!("restored {r} file{}", if r == 1 { "" } else { "s" }),
                        (r, x) => format!("restored {r}, removed {x}"),
                    };
                    kiln_services::outln!("{}  {}@{}  {what}", d.path, d.name, d.version);
                }
            }
            Ok(0)
        }
        DataCommand::Push { paths, remote, json } => {
            let local = data::Local::open()?;
            let t = data::push(&local, &paths, remote.as_deref()).await?;
            if json {
                kiln_services::outln!("{}", output::json(&t));
            } else {
                kiln_services::outln!("pushed {} of {} blobs ({}) to `{}`; it had the rest", t.copied, t.blobs, output::bytes(t.bytes), t.remote);
            }
            Ok(0)
        }
        DataCommand::Pull { paths, remote, json } => {
            let local = data::Local::open()?;
            let (t, done) = data::pull(&local, &paths, remote.as_deref()).await?;
            if json {
                kiln_services::outln!("{}", output::json(&serde_json::json!({"transfer": t, "checkout": done})));
            } else {
                kiln_services::outln!("pulled {} of {} blobs ({}) from `{}`", t.copied, t.blobs, output::bytes(t.bytes), t.remote);
                for d in &done {
                    kiln_services::outln!(
                        "{}  {}@{}  restored {} file{}",
                        d.path,
                        d.name,
                        d.version,
                        d.restored,
                        if d.restored == 1 { "" } else { "s" }
                    );
                }
            }
            Ok(0)
        }
        DataCommand::List { json } => {
            let app = App::open(true).await?;
            let list = app.store.list_datasets().await?;
            if json {
                let out: Vec<_> = list.iter().map(|(v, n)| serde_json::json!({"latest": views::DatasetVersion::from(v), "versions": n})).collect();
                kiln_services::outln!("{}", output::json(&out));
            } else {
                let rows = list
                    .iter()
                    .map(|(v, n)| {
                        vec![
                            v.name.clone(),
                            v.version.to_string(),
                            n.to_string(),
                            v.kind.clone(),
                            output::bytes(v.size as u64),
                            v.files.to_string(),
                            v.path.clone(),
                            output::time_ms(v.created_at),
                        ]
                    })
                    .collect();
                kiln_services::outln!("{}", output::table(&["name", "latest", "versions", "kind", "size", "files", "path", "added (UTC)"], rows));
            }
            Ok(0)
        }
        DataCommand::Show { reference, json } => {
            let app = App::open(true).await?;
            let (name, version) = data::parse_ref(&reference)?;
            let v = app.store.dataset_version(&name, version).await?;
            let runs = app.store.dataset_usage(&v.name, v.version).await?;
            let schema: Option<profile::Schema> =
                v.schema_json.as_deref().map(serde_json::from_str).transpose().context("reading the stored schema")?;
            let prof: Option<profile::Profile> =
                v.profile_json.as_deref().map(serde_json::from_str).transpose().context("reading the stored profile")?;
            if json {
                let runs: Vec<_> = runs.iter().map(|(r, i)| serde_json::json!({"run_id": r, "input": i})).collect();
                kiln_services::outln!(
                    "{}",
                    output::json(&serde_json::json!({"version": views::DatasetVersion::from(&v), "schema": schema, "profile": prof, "runs": runs}))
                );
                return Ok(0);
            }
            kiln_services::outln!("dataset  {}@{}", v.name, v.version);
            kiln_services::outln!("hash     {}", v.hash);
            kiln_services::outln!("kind     {} ({}, {} file{})", v.kind, output::bytes(v.size as u64), v.files, if v.files == 1 { "" } else { "s" });
            kiln_services::outln!("path     {}", v.path);
            kiln_services::outln!("added    {}", output::time_ms(v.created_at));
            if let Some(p) = &prof {
                kiln_services::outln!("rows     {}\n", p.rows);
                kiln_services::outln!("{}", render_profile(p));
            } else if v.format.is_empty() {
                kiln_services::outln!("\n(no profile: not a CSV or Parquet file)");
            } else {
                kiln_services::outln!("\n(no profile: added with --no-profile)");
            }
            if runs.is_empty() {
                kiln_services::outln!("\nno runs have read this version");
            } else {
                kiln_services::outln!("\nread by");
                for (r, i) in runs {
                    kiln_services::outln!("  run {r} (input `{i}`)");
                }
            }
            Ok(0)
        }
        DataCommand::Diff { old, new, json } => {
            let app = App::open(true).await?;
            let load = |r: &str| {
                let r = r.to_string();
                let app = app.clone();
                async move {
                    let (name, version) = data::parse_ref(&r)?;
                    let v = app.store.dataset_version(&name, version).await?;
                    let (Some(s), Some(p)) = (v.schema_json.as_deref(), v.profile_json.as_deref()) else {
                        anyhow::bail!(
                            "{}@{} has no profile to compare (it is not a CSV or Parquet file, or was added with --no-profile)",
                            v.name,
                            v.version
                        );
                    };
                    Ok::<_, anyhow::Error>((v.clone(), (serde_json::from_str::<profile::Schema>(s)?, serde_json::from_str::<profile::Profile>(p)?)))
                }
            };
            let (a, pa) = load(&old).await?;
            let (b, pb) = load(&new).await?;
            let d = profile::diff(&pa, &pb);
            if json {
                kiln_services::outln!("{}", output::json(&d));
            } else {
                kiln_services::outln!("{}@{} → {}@{}\n", a.name, a.version, b.name, b.version);
                kiln_services::outln!("{}", render_diff(&d));
            }
            Ok(0)
        }
    }
}

/// The diff as `kiln data diff` prints it: row counts, schema changes,
/// then one line per shared column.
fn render_diff(d: &profile::Diff) -> String {
    use output::num;
    use std::fmt::Write;
    let mut f = String::new();
    writeln!(f, "rows: {} -> {}", d.rows_before, d.rows_after).unwrap();
    for c in &d.added {
        writeln!(f, "added: {} ({})", c.name, c.data_type).unwrap();
    }
    for c in &d.removed {
        writeln!(f, "removed: {} ({})", c.name, c.data_type).unwrap();
    }
    for c in &d.type_changed {
        writeln!(f, "type changed: {} ({} -> {})", c.name, c.before, c.after).unwrap();
    }
    if d.columns.is_empty() {
        return f;
    }
    let percent = |share: f64| format!("{}%", num(share * 100.0));
    let optional = |value: Option<f64>, show: &dyn Fn(f64) -> String| value.map_or("-".to_string(), show);
    let rows = d
        .columns
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                format!("{} -> {}", percent(c.missing_before), percent(c.missing_after)),
                optional(c.mean_shift, &|v| format!("{}{} std", if v > 0.0 { "+" } else { "" }, num(v))),
                optional(c.psi, &num),
                optional(c.new_value_share, &percent),
            ]
        })
        .collect();
    write!(f, "\n{}", output::table(&["column", "missing", "mean shift", "psi", "new values"], rows)).unwrap();
    f
}

/// One row per column: type, count, missing, then numbers or top values.
fn render_profile(p: &profile::Profile) -> String {
    let rows = p
        .columns
        .iter()
        .map(|c| {
            let mut row = vec![c.name.clone(), c.data_type.clone(), c.count.to_string(), c.missing.to_string()];
            match (&c.numeric, &c.text) {
                (Some(n), _) => {
                    let median = n.quantiles.iter().find(|(q, _)| *q == 0.5).map(|(_, v)| output::num(*v)).unwrap_or_default();
                    row.extend([output::num(n.mean), output::num(n.std), output::num(n.min), median, output::num(n.max), String::new()]);
                }
                (None, Some(t)) => {
                    let top: Vec<String> = t.top.iter().take(3).map(|(v, n)| format!("{v} ({n})")).collect();
                    row.extend(["".into(), "".into(), "".into(), "".into(), "".into(), format!("{} distinct: {}", t.distinct, top.join(", "))]);
                }
                _ => row.extend(std::iter::repeat_n(String::new(), 6)),
            }
            row
        })
        .collect();
    output::table(&["column", "type", "count", "missing", "mean", "std", "min", "median", "max", "top values"], rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use profile::{ColumnShift, Diff, Field, TypeChange};

    #[test]
    fn a_diff_is_shown_with_schema_changes_then_one_row_per_column() {
        let field = |name: &str, data_type: &str| Field { name: name.into(), data_type: data_type.into(), nullable: false };
        let shift = |name: &str, mean_shift| ColumnShift {
            name: name.into(),
            missing_before: 0.0,
            missing_after: 0.1,
            mean_shift,
            psi: mean_shift.map(|_| 0.31),
            new_value_share: None,
        };
        let d = Diff {
            rows_before: 2,
            rows_after: 3,
            added: vec![field("d", "Int64")],
            removed: vec![field("b", "Utf8")],
            type_changed: vec![TypeChange { name: "c".into(), before: "Int64".into(), after: "Utf8".into() }],
            columns: vec![shift("a", Some(1.037)), shift("c", None)],
        };
        let shown = render_diff(&d);
        for line in ["rows: 2 -> 3", "added: d (Int64)", "removed: b (Utf8)", "type changed: c (Int64 -> Utf8)", "+1.037 std", "0% -> 10%"] {
            assert!(shown.contains(line), "{line} not in\n{shown}");
        }
        assert!(shown.contains("COLUMN") && shown.contains("PSI"), "{shown}");
        let only_rows = render_diff(&Diff { columns: vec![], added: vec![], removed: vec![], type_changed: vec![], ..d });
        assert_eq!(only_rows, "rows: 2 -> 3\n");
    }
}
