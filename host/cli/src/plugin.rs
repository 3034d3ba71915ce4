use anyhow::{Context, Result};
use clap::Subcommand;
use kiln_services::app::App;
use kiln_services::output;
use kiln_services::plugins::{self, LimitOverrides};
use kiln_services::views;
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
        #[arg(long, value_parser = kiln_services::runtime::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Memory cap for each call (e.g. 512MiB, 2GiB).
        #[arg(long, value_parser = kiln_services::runtime::parse_memory)]
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
    /// Grant a deployer plugin capabilities for every deployment it makes
    /// (a deployment's own --allow-dir wins over these), or take them back.
    Grant {
        /// The deployer's name (every version of it).
        plugin: String,
        /// A directory it may write in, as its `/out`.
        #[arg(long, value_name = "DIR", required_unless_present_any = ["revoke", "allow_http"])]
        allow_dir: Option<PathBuf>,
        /// A HOST:PORT it may send HTTP requests to (repeatable).
        #[arg(long, value_name = "HOST:PORT")]
        allow_http: Vec<String>,
        /// Take back everything granted to it.
        #[arg(long, conflicts_with_all = ["allow_dir", "allow_http"])]
        revoke: bool,
    },
}

pub async fn run(cmd: PluginCommand) -> Result<i32> {
    let app = App::open(true).await?;
    plugins::ensure_bundled(&app).await?;
    match cmd {
        PluginCommand::List { json } => {
            let list = app.store.list_plugins().await?;
            if json {
                kiln_services::outln!("{}", output::json(&views::all::<_, views::Plugin>(&list)));
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
                kiln_services::outln!("{}", output::table(&["name", "version", "kind", "origin", "digest", "summary"], rows));
            }
        }
        PluginCommand::Add { file, timeout, memory, json } => {
            let bytes = kiln_services::limits::read_bytes(&file, app.limits.plugin_size, Some("plugin_size"))
                .with_context(|| format!("reading {}", file.display()))?;
            let (record, inserted) = plugins::add(&app, &bytes, false, LimitOverrides { timeout, memory_bytes: memory })
                .await
                .with_context(|| format!("{} was not registered", file.display()))?;
            if json {
                kiln_services::outln!("{}", output::json(&views::Plugin::from(&record)));
            } else if inserted {
                kiln_services::outln!("Registered {}@{} ({}, {}) from {}", record.name, record.version, record.kind, record.digest, file.display());
            } else {
                kiln_services::outln!("{}@{} is already registered ({})", record.name, record.version, record.digest);
            }
        }
        PluginCommand::Inspect { plugin, json } => {
            let p = plugins::resolve(&app, &plugin).await?;
            let schema: serde_json::Value = serde_json::from_str(&p.params_schema).unwrap_or_default();
            if json {
                let mut v = serde_json::to_value(views::Plugin::from(&p))?;
                v["params_schema"] = schema;
                kiln_services::outln!("{}", output::json(&v));
            } else {
                kiln_services::outln!("name:         {}", p.name);
                kiln_services::outln!("version:      {}", p.version);
                kiln_services::outln!("kind:         {}", p.kind);
                kiln_services::outln!("wit:          kiln:plugin@{}", p.wit_version);
                kiln_services::outln!("digest:       {}", p.digest);
                kiln_services::outln!("size:         {}", output::bytes(p.size as u64));
                kiln_services::outln!("origin:       {}", if p.bundled { "bundled with kiln" } else { "added" });
                kiln_services::outln!("summary:      {}", p.summary);
                let limits = plugins::limits_for(&p, LimitOverrides::default());
                kiln_services::outln!("limits:       {:?} per call, {} memory", limits.timeout, output::bytes(limits.memory_bytes));
                kiln_services::outln!("imports:");
                for i in &p.imports {
                    kiln_services::outln!("  {i}");
                }
                kiln_services::outln!("params schema:\n{}", output::json(&schema));
            }
        }
        PluginCommand::Remove { plugin } => {
            let removed = plugins::remove(&app, &plugin).await?;
            kiln_services::outln!("Removed {}@{} ({})", removed.name, removed.version, removed.digest);
        }
        PluginCommand::Grant { plugin, allow_dir, allow_http, revoke } => {
            use kiln_services::serving::target::{self, GrantSet};
            if revoke {
                target::grant(&app, &plugin, None).await?;
                kiln_services::outln!("{plugin} is granted nothing");
            } else {
                let grants = GrantSet::new(allow_dir.as_deref(), &allow_http)?;
                target::grant(&app, &plugin, Some(&grants)).await?;
                let mut may = Vec::new();
                if let Some(d) = &grants.dir {
                    may.push(format!("write in {d} (as /out)"));
                }
                if !grants.http.is_empty() {
                    may.push(format!("send HTTP requests to {}", grants.http.join(", ")));
                }
                kiln_services::outln!("{plugin} may {} for every deployment", may.join(" and "));
            }
        }
    }
    Ok(0)
}
