use crate::app::App;
use crate::output;
use crate::plugins::{self, LimitOverrides};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// List registered plugins (the bundled first-party ones included).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Check and register a plugin component (.wasm).
    Add {
        file: PathBuf,
        /// Deadline for each call to this plugin (e.g. 30s, 5m).
        #[arg(long, value_parser = crate::runtime::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Memory cap for each call (e.g. 512MiB, 2GiB).
        #[arg(long, value_parser = crate::runtime::parse_memory)]
        memory: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Show a plugin: kind, version, WIT version, digest, imports, params schema.
    Inspect {
        /// NAME, NAME@VERSION or sha256:DIGEST
        plugin: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove NAME@VERSION if no run or model references it.
    Remove { plugin: String },
}

pub async fn run(cmd: PluginCommand) -> Result<i32> {
    let app = App::open(true).await?;
    plugins::ensure_bundled(&app).await?;
    match cmd {
        PluginCommand::List { json } => {
            let list = app.store.list_plugins().await?;
            if json {
                crate::outln!("{}", output::json(&list));
            } else {
                let rows = list
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.version.clone(),
                            p.kind.clone(),
                            if p.bundled { "bundled".into() } else { "added".into() },
                            output::short(&p.digest, 19).to_string(),
                            p.summary.clone(),
                        ]
                    })
                    .collect();
                crate::outln!("{}", output::table(&["name", "version", "kind", "origin", "digest", "summary"], rows));
            }
        }
        PluginCommand::Add { file, timeout, memory, json } => {
            let bytes = read_component(&file, app.limits.plugin_size)?;
            let (record, inserted) = plugins::add(&app, &bytes, false, LimitOverrides { timeout, memory_bytes: memory })
                .await
                .with_context(|| format!("{} was not registered", file.display()))?;
            if json {
                crate::outln!("{}", output::json(&record));
            } else if inserted {
                crate::outln!("Registered {}@{} ({}, {}) from {}", record.name, record.version, record.kind, record.digest, file.display());
            } else {
                crate::outln!("{}@{} is already registered ({})", record.name, record.version, record.digest);
            }
        }
        PluginCommand::Inspect { plugin, json } => {
            let p = plugins::resolve(&app, &plugin).await?;
            let schema: serde_json::Value = serde_json::from_str(&p.params_schema).unwrap_or_default();
            if json {
                let mut v = serde_json::to_value(&p)?;
                v["params_schema"] = schema;
                crate::outln!("{}", output::json(&v));
            } else {
                crate::outln!("name:         {}", p.name);
                crate::outln!("version:      {}", p.version);
                crate::outln!("kind:         {}", p.kind);
                crate::outln!("wit:          kiln:plugin@{}", p.wit_version);
                crate::outln!("digest:       {}", p.digest);
                crate::outln!("size:         {}", output::bytes(p.size as u64));
                crate::outln!("origin:       {}", if p.bundled { "bundled with kiln" } else { "added" });
                crate::outln!("summary:      {}", p.summary);
                let limits = plugins::limits_for(&p, LimitOverrides::default());
                crate::outln!("limits:       {:?} per call, {} memory", limits.timeout, output::bytes(limits.memory_bytes));
                crate::outln!("imports:");
                for i in &p.imports {
                    crate::outln!("  {i}");
                }
                crate::outln!("params schema:\n{}", output::json(&schema));
            }
        }
        PluginCommand::Remove { plugin } => {
            let removed = plugins::remove(&app, &plugin).await?;
            crate::outln!("Removed {}@{} ({})", removed.name, removed.version, removed.digest);
        }
    }
    Ok(0)
}

/// A component file's bytes: a regular file of at most `limit` bytes.
fn read_component(file: &std::path::Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = crate::limits::open_regular(file, limit, "plugin_size").with_context(|| format!("reading {}", file.display()))?;
    let mut bytes = Vec::new();
    // `take`: a file that grows after the size check is still read only
    // up to the limit (and then refused as not a whole component).
    f.take(limit).read_to_end(&mut bytes).with_context(|| format!("reading {}", file.display()))?;
    Ok(bytes)
}
