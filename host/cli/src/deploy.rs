//! `kiln deploy` and `kiln deployments`: put a registered model version
//! behind `POST /deployments/{name}/invocations` of `kiln serve`.

use anyhow::Result;
use clap::{Args, Subcommand};
use kiln_services::app::App;
use kiln_services::serving::{self, DeployOptions};
use kiln_services::{output, views};
use std::time::Duration;

#[derive(Args)]
pub struct DeployArgs {
    /// The deployment's name: it is served at /deployments/NAME/invocations.
    pub name: String,
    /// MODEL@VERSION, MODEL@ALIAS, MODEL@latest or MODEL@Production.
    #[arg(long)]
    pub model: String,
    /// Warm instances (each holds the model loaded).
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
    /// Stop serving a deployment.
    Delete { name: String },
}

pub async fn deploy(args: DeployArgs) -> Result<i32> {
    let app = App::open(true).await?;
    let options = DeployOptions { instances: args.instances, timeout: args.timeout, max_rows: args.max_rows };
    let d = serving::deploy(&app, &args.name, &args.model, &options).await?;
    if args.json {
        kiln_services::outln!("{}", output::json(&views::Deployment::from(&d)));
    } else {
        kiln_services::outln!(
            "Deployment {} serves {} version {} ({} instances) at POST /deployments/{}/invocations of `kiln serve`",
            d.name,
            d.model_name,
            d.version,
            d.instances,
            d.name
        );
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
            if json {
                kiln_services::outln!("{}", output::json(&serde_json::json!({"deployment": views::Deployment::from(&d), "version": version})));
            } else {
                kiln_services::outln!(
                    "deployment  {}\nserves      {} version {} (deployed as {}@{})",
                    d.name,
                    d.model_name,
                    d.version,
                    d.model_name,
                    d.model_ref
                );
                kiln_services::outln!("instances   {}\nendpoint    POST /deployments/{}/invocations", d.instances, d.name);
                let inputs = version.signature.as_ref().and_then(|s| s["inputs"].as_array().cloned()).unwrap_or_default();
                let rows =
                    inputs.iter().map(|i| vec![i["name"].as_str().unwrap_or("").to_string(), i["type"].as_str().unwrap_or("").to_string()]).collect();
                kiln_services::outln!("\n{}", output::table(&["input", "type"], rows));
            }
        }
        DeploymentsCommand::Delete { name } => {
            app.store.delete_deployment(&name).await?;
            kiln_services::outln!("Deployment {name} deleted");
        }
    }
    Ok(0)
}
