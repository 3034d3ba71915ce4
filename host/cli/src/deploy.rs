//! `kiln deploy` and `kiln deployments`: put a registered model version
//! behind `POST /deployments/{name}/invocations` of `kiln serve`.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use kiln_services::app::App;
use kiln_services::serving::rollout::{self, Policy};
use kiln_services::serving::target::{self, GrantSet, TargetOptions};
use kiln_services::serving::{self, DeployOptions};
use kiln_services::{output, views};
use std::time::Duration;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DeployArgs {
    #[command(subcommand)]
    pub history: Option<DeployHistory>,
    /// The deployment's name: it is served at /deployments/NAME/invocations.
    #[arg(required = true)]
    pub name: Option<String>,
    /// MODEL@VERSION, MODEL@ALIAS, MODEL@latest or MODEL@Production: what
    /// the deployment serves (its stable version).
    #[arg(long, required_unless_present_any = ["canary", "shadow", "no_shadow", "promote", "rollback", "target"])]
    pub model: Option<String>,
    /// Deploy through this deployer plugin too (`bundle`, or one of
    /// yours); it runs sandboxed with only what is granted below or by
    /// `kiln plugin grant`.
    #[arg(long, value_name = "PLUGIN", conflicts_with_all = ["canary", "shadow", "no_shadow", "promote", "rollback"])]
    pub target: Option<String>,
    /// A param for the deployer (repeatable): KEY=VALUE, VALUE read as
    /// JSON when it is JSON (`--with folder=churn`, `--with replicas=3`).
    #[arg(long = "with", value_name = "KEY=VALUE", requires = "target", value_parser = key_value)]
    pub with: Vec<(String, serde_json::Value)>,
    /// Grant the deployer this directory, read-write, as its `/out`
    /// (nothing outside it is reachable).
    #[arg(long, value_name = "DIR", requires = "target")]
    pub allow_dir: Option<std::path::PathBuf>,
    /// Let the deployer send HTTP requests to HOST:PORT (repeatable);
    /// every other address stays unreachable.
    #[arg(long, value_name = "HOST:PORT", requires = "target")]
    pub allow_http: Vec<String>,
    /// Start a rollout: this version takes --percent of the traffic and is
    /// promoted or rolled back by the policy below.
    #[arg(long, value_name = "MODEL@VERSION", requires = "percent")]
    pub canary: Option<String>,
    /// The canary's share of requests (0 to 100). Requests with the same
    /// `x-kiln-route-key` header always get the same version.
    #[arg(long, requires = "canary")]
    pub percent: Option<f64>,
    /// Judge the canary once it has answered this many requests (default 200)…
    #[arg(long, requires = "canary")]
    pub promote_after_requests: Option<u64>,
    /// …or once this long has passed (`10m`), whichever comes first.
    #[arg(long, requires = "canary", value_parser = kiln_services::runtime::parse_duration)]
    pub promote_after: Option<Duration>,
    /// Roll back if the canary's error rate exceeds the stable version's by
    /// more than this (default 0.01).
    #[arg(long, requires = "canary")]
    pub max_error_rate_increase: Option<f64>,
    /// Roll back if the canary's p99 latency is above this many times the
    /// stable version's, plus --p99-allowance-ms (defaults 1.5 and 1).
    #[arg(long, requires = "canary")]
    pub max_p99_ratio: Option<f64>,
    #[arg(long, requires = "canary")]
    pub p99_allowance_ms: Option<f64>,
    /// Never decide by itself: wait for --promote or --rollback.
    #[arg(long, requires = "canary")]
    pub manual: bool,
    /// Mirror every request to this version; its answers are recorded and
    /// compared, never returned.
    #[arg(long, value_name = "MODEL@VERSION", conflicts_with = "no_shadow")]
    pub shadow: Option<String>,
    /// Stop mirroring.
    #[arg(long)]
    pub no_shadow: bool,
    /// Make the canary the stable version now (the alias or stage the
    /// deployment follows moves to it).
    #[arg(long, conflicts_with_all = ["model", "canary", "rollback"])]
    pub promote: bool,
    /// Stop the canary now; its traffic returns to the stable version.
    #[arg(long, conflicts_with_all = ["model", "canary"])]
    pub rollback: bool,
    /// Why (recorded in the history with --promote or --rollback).
    #[arg(long)]
    pub reason: Option<String>,
    /// Warm instances per version (each holds the model loaded).
    #[arg(long)]
    pub instances: Option<i64>,
    /// A request's deadline (default 30s).
    #[arg(long, value_parser = kiln_services::runtime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Rows per request at most (default 10000).
    #[arg(long)]
    pub max_rows: Option<i64>,
    #[arg(long)]
    pub json: bool,
}

/// `KEY=VALUE` → (key, JSON value or string).
pub fn key_value(s: &str) -> Result<(String, serde_json::Value), String> {
    let Some((k, v)) = s.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
        return Err(format!("`{s}` is not KEY=VALUE"));
    };
    let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
    Ok((k.trim().to_string(), value))
}

#[derive(Subcommand)]
pub enum DeployHistory {
    /// Every change to a deployment, with its reason, oldest first.
    History {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum DeploymentsCommand {
    /// Every deployment and the version it serves.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One deployment: the version it serves and the input that version
    /// takes (its columns and kinds).
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Every change to a deployment, with its reason (as `kiln deploy history`).
    History {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop serving a deployment.
    Delete { name: String },
}

pub async fn deploy(args: DeployArgs) -> Result<i32> {
    if let Some(DeployHistory::History { name, json }) = args.history {
        return history(&name, json).await;
    }
    let name = args.name.expect("clap requires it");
    let app = App::open(true).await?;
    let mut d = None;
    let mut said = Vec::new();
    if let Some(model) = &args.model {
        let options = DeployOptions { instances: args.instances, timeout: args.timeout, max_rows: args.max_rows };
        let done = serving::deploy(&app, &name, model, &options).await?;
        said.push(format!(
            "Deployment {} serves {} version {} ({} instances) at POST /deployments/{}/invocations of `kiln serve`",
            done.name, done.model_name, done.version, done.instances, done.name
        ));
        d = Some(done);
    }
    let targeted = match &args.target {
        Some(plugin) => {
            let options = TargetOptions {
                plugin: plugin.clone(),
                params: serde_json::Value::Object(args.with.iter().cloned().collect()),
                grants: GrantSet::new(args.allow_dir.as_deref(), &args.allow_http)?,
            };
            Some(target::deploy_to(&app, &name, &options).await?)
        }
        // A deployment that has a target follows its new version there.
        None if args.model.is_some() => target::redeploy(&app, &name).await?,
        None => None,
    };
    if let Some((t, outcome)) = &targeted {
        let at = outcome.endpoint.as_ref().map(|e| format!(" at {e}")).unwrap_or_default();
        said.push(format!("{} deployed {} version {} through {}: {}{at}", name, t.model_name, t.version, t.plugin_name, outcome.status));
        if d.is_none() {
            d = Some(app.store.deployment(&name).await?);
        }
    }
    if let Some(canary) = &args.canary {
        let defaults = Policy::default();
        let policy = Policy {
            auto: !args.manual,
            after_requests: args.promote_after_requests.unwrap_or(if args.promote_after.is_some() { 0 } else { defaults.after_requests }),
            after_ms: args.promote_after.map(|t| t.as_millis() as u64),
            max_error_rate_increase: args.max_error_rate_increase.unwrap_or(defaults.max_error_rate_increase),
            max_p99_ratio: args.max_p99_ratio.unwrap_or(defaults.max_p99_ratio),
            p99_allowance_ms: args.p99_allowance_ms.unwrap_or(defaults.p99_allowance_ms),
        };
        let done = rollout::start_canary(&app, &name, canary, args.percent.expect("clap requires it"), &policy).await?;
        let c = done.canary.clone().expect("just started");
        let when = if policy.auto { "the policy promotes or rolls it back by itself" } else { "promote or roll back with --promote / --rollback" };
        said.push(format!("Canary {} version {} takes {}% of {name}'s requests; {when}", c.model_name, c.version, done.canary_percent));
        d = Some(done);
    }
    if args.shadow.is_some() || args.no_shadow {
        let done = rollout::set_shadow(&app, &name, args.shadow.as_deref()).await?;
        said.push(match &done.shadow {
            Some(s) => format!("Every request to {name} is mirrored to {} version {}", s.model_name, s.version),
            None => format!("Requests to {name} are no longer mirrored"),
        });
        d = Some(done);
    }
    if args.promote || args.rollback {
        let reason = args.reason.clone().unwrap_or_else(|| format!("{} by hand", if args.promote { "promoted" } else { "rolled back" }));
        let done =
            if args.promote { rollout::promote(&app, &name, None, &reason).await? } else { rollout::roll_back(&app, &name, None, &reason).await? };
        let Some(done) = done else { bail!("deployment `{name}` has no canary to {}", if args.promote { "promote" } else { "roll back" }) };
        said.push(if args.promote {
            format!("Deployment {name} now serves {} version {}", done.model_name, done.version)
        } else {
            format!("Canary rolled back: deployment {name} serves {} version {}", done.model_name, done.version)
        });
        d = Some(done);
    }
    let d = d.expect("clap requires one action");
    if args.json {
        let mut out = serde_json::json!(views::Deployment::from(&d));
        if let Some((t, _)) = &targeted {
            out["target"] = serde_json::json!(views::DeployTarget::from(t));
        }
        kiln_services::outln!("{}", output::json(&out));
    } else {
        kiln_services::outln!("{}", said.join("\n"));
    }
    Ok(0)
}

async fn history(name: &str, json: bool) -> Result<i32> {
    let app = App::open(true).await?;
    let events: Vec<views::DeploymentEvent> = views::all(&serving::history(&app, name).await?);
    if json {
        kiln_services::outln!("{}", output::json(&events));
    } else {
        let rows = events
            .iter()
            .map(|e| vec![output::time_ms(e.at), e.action.clone(), format!("{} version {}", e.model, e.version), e.reason.clone()])
            .collect();
        kiln_services::outln!("{}", output::table(&["at (UTC)", "action", "version", "reason"], rows));
    }
    Ok(0)
}

pub async fn run(cmd: DeploymentsCommand) -> Result<i32> {
    let app = App::open(true).await?;
    match cmd {
        DeploymentsCommand::List { json } => {
            let all: Vec<views::Deployment> = views::all(&app.store.deployments().await?);
            if json {
                kiln_services::outln!("{}", output::json(&all));
            } else {
                let rows = all
                    .iter()
                    .map(|d| {
                        vec![
                            d.name.clone(),
                            format!("{}@{}", d.model, d.model_ref),
                            d.version.to_string(),
                            d.instances.to_string(),
                            output::time_ms(d.updated_at),
                        ]
                    })
                    .collect();
                kiln_services::outln!("{}", output::table(&["name", "deployed", "version", "instances", "updated (UTC)"], rows));
            }
        }
        DeploymentsCommand::Show { name, json } => {
            let d = app.store.deployment(&name).await?;
            let v = app.store.version(&d.model_name, d.version).await?;
            let version = views::ModelVersion::from(&v);
            let traffic = views::RoleTraffic::of(&app.store.rollout_stats(&name, d.rollout).await?);
            let target = app.store.deploy_target(&name).await?.map(|t| views::DeployTarget::from(&t));
            if json {
                let shown = serde_json::json!({"deployment": views::Deployment::from(&d), "version": version, "traffic": traffic, "target": target});
                kiln_services::outln!("{}", output::json(&shown));
            } else {
                kiln_services::outln!(
                    "deployment  {}\nserves      {} version {} (deployed as {}@{})",
                    d.name,
                    d.model_name,
                    d.version,
                    d.model_name,
                    d.model_ref
                );
                if let Some(c) = &d.canary {
                    kiln_services::outln!("canary      {} version {} takes {}% of requests", c.model_name, c.version, d.canary_percent);
                }
                if let Some(s) = &d.shadow {
                    kiln_services::outln!("shadow      {} version {} (every request mirrored)", s.model_name, s.version);
                }
                kiln_services::outln!("instances   {}\nendpoint    POST /deployments/{}/invocations", d.instances, d.name);
                if let Some(t) = &target {
                    let at = t.endpoint.as_ref().map(|e| format!(" at {e}")).unwrap_or_default();
                    kiln_services::outln!("target      {} ({} version {}): {}{at}", t.plugin, t.model, t.version, t.status);
                }
                if !traffic.is_empty() {
                    let ms = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_default();
                    let rows = traffic
                        .iter()
                        .map(|t| {
                            vec![
                                t.role.to_string(),
                                t.version.to_string(),
                                t.requests.to_string(),
                                format!("{:.4}", t.error_rate),
                                ms(t.p50_ms),
                                ms(t.p99_ms),
                                t.agreed.map(|a| a.to_string()).unwrap_or_default(),
                            ]
                        })
                        .collect();
                    let headers = ["role", "version", "requests", "error rate", "p50 ms", "p99 ms", "agreed"];
                    kiln_services::outln!("\nthis rollout\n{}", output::table(&headers, rows));
                }
                let inputs = version.signature.as_ref().and_then(|s| s["inputs"].as_array().cloned()).unwrap_or_default();
                let rows =
                    inputs.iter().map(|i| vec![i["name"].as_str().unwrap_or("").to_string(), i["type"].as_str().unwrap_or("").to_string()]).collect();
                kiln_services::outln!("\n{}", output::table(&["input", "type"], rows));
            }
        }
        DeploymentsCommand::History { name, json } => return history(&name, json).await,
        DeploymentsCommand::Delete { name } => {
            app.store.delete_deployment(&name).await?;
            kiln_services::outln!("Deployment {name} deleted");
        }
    }
    Ok(0)
}
