use anyhow::Result;
use clap::Subcommand;
use kiln_services::app::App;
use kiln_services::{output, registry, views};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Registered models with their latest version and aliases.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One model's versions: stage, aliases, source run.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Register the model a run's trainer stage made as the next version
    /// of NAME (creating the model); the run must have finished.
    Register {
        run_id: String,
        stage: String,
        name: String,
        /// Also point this alias at the new version.
        #[arg(long)]
        alias: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Register a model trained elsewhere: an ONNX file (scikit-learn via
    /// skl2onnx, PyTorch's exporter) or a folder MLflow saved with an
    /// `onnx` flavour. The bundled `onnx` plugin serves it in the sandbox.
    Import {
        name: String,
        /// model.onnx, or an MLflow model folder (with its MLmodel file).
        path: std::path::PathBuf,
        /// The input tensor's columns, in order (default: MLflow's
        /// signature's; without either, requests give values in order).
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
        /// Also point this alias at the new version.
        #[arg(long)]
        alias: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Point ALIAS of model NAME at VERSION (`champion`, `challenger`, …).
    Alias {
        name: String,
        // Not `version`: every command has clap's `--version` flag.
        #[arg(id = "model_version", value_name = "VERSION")]
        version: i64,
        alias: String,
    },
    /// Move VERSION of model NAME to a stage (None, Staging, Production,
    /// Archived), as MLflow's stages.
    Stage {
        name: String,
        #[arg(id = "model_version", value_name = "VERSION")]
        version: i64,
        stage: String,
        /// Archive the versions already in that stage.
        #[arg(long)]
        archive_existing: bool,
    },
    /// Models logged by MLflow 3 clients (`log_model`): the run that made
    /// each, its status, and the registered versions made from it.
    Logged {
        /// Only this experiment's (by name).
        #[arg(long)]
        experiment: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: ModelsCommand) -> Result<i32> {
    let app = App::open(true).await?;
    match cmd {
        ModelsCommand::List { json } => {
            let out = registry::summaries(&app.store).await?;
            let rows = out
                .iter()
                .map(|m| {
                    vec![
                        m.name.clone(),
                        m.latest_version.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                        m.aliases.iter().map(|(a, v)| format!("{a}=v{v}")).collect::<Vec<_>>().join(" "),
                        output::time_ms(m.updated_at),
                    ]
                })
                .collect();
            if json {
                kiln_services::outln!("{}", output::json(&out));
            } else {
                kiln_services::outln!("{}", output::table(&["name", "latest", "aliases", "updated (UTC)"], rows));
            }
        }
        ModelsCommand::Show { name, json } => {
            let model = app.store.model(&name).await?;
            let versions = app.store.versions(&name).await?;
            let aliases = app.store.aliases(&name).await?;
            if json {
                kiln_services::outln!("{}", output::json(&views::ModelDetail::new(&model, &versions, &aliases)));
            } else {
                kiln_services::outln!("model  {}\n", model.name);
                let rows = versions
                    .iter()
                    .map(|v| {
                        let a: Vec<&str> = aliases.iter().filter(|(_, n)| *n == v.version).map(|(a, _)| a.as_str()).collect();
                        vec![v.version.to_string(), v.stage.clone(), a.join(" "), v.run_id.clone().unwrap_or_default(), v.source.clone()]
                    })
                    .collect();
                kiln_services::outln!("{}", output::table(&["version", "stage", "aliases", "run", "source"], rows));
            }
        }
        ModelsCommand::Register { run_id, stage, name, alias, json } => {
            let v = kiln_services::serving::register(&app, &run_id, &stage, &name, alias.as_deref()).await?;
            if json {
                kiln_services::outln!("{}", output::json(&views::ModelVersion::from(&v)));
            } else {
                let also = alias.map(|a| format!(" (alias {a})")).unwrap_or_default();
                kiln_services::outln!("Registered {name} version {}{also} from stage `{stage}` of run {run_id}", v.version);
            }
        }
        ModelsCommand::Import { name, path, columns, alias, json } => {
            let v = kiln_services::serving::import::import(&app, &name, &path, columns, alias.as_deref()).await?;
            if json {
                kiln_services::outln!("{}", output::json(&views::ModelVersion::from(&v)));
            } else {
                let also = alias.map(|a| format!(" (alias {a})")).unwrap_or_default();
                kiln_services::outln!(
                    "Imported {} as {name} version {}{also}; deploy it with `kiln deploy NAME --model {name}@{}`",
                    path.display(),
                    v.version,
                    v.version
                );
            }
        }
        ModelsCommand::Alias { name, version, alias } => {
            registry::check_alias(&alias).map_err(|e| anyhow::anyhow!(e))?;
            app.store.set_alias(&name, &alias, version).await?;
            kiln_services::outln!("{name}@{alias} is version {version}");
        }
        ModelsCommand::Stage { name, version, stage, archive_existing } => {
            let v = app.store.transition_stage(&name, version, &stage, archive_existing).await?;
            kiln_services::outln!("{name} version {version} is in stage {}", v.stage);
        }
        ModelsCommand::Logged { experiment, json } => {
            let ids = match experiment {
                Some(name) => {
                    let e = app.store.experiment_by_name(&name).await?.ok_or_else(|| anyhow::anyhow!("no experiment named `{name}`"))?;
                    vec![e.id]
                }
                None => Vec::new(),
            };
            let versions = app.store.all_versions().await?;
            let models: Vec<views::LoggedModel> =
                app.store.logged_models(&ids).await?.iter().map(|m| views::LoggedModel::new(m, &versions)).collect();
            if json {
                kiln_services::outln!("{}", output::json(&models));
            } else {
                let rows = models
                    .iter()
                    .map(|m| {
                        vec![
                            m.id.clone(),
                            m.name.clone(),
                            m.source_run_id.clone().unwrap_or_else(|| "-".into()),
                            m.status.clone(),
                            m.versions.join(" "),
                            output::time_ms(m.created_at),
                        ]
                    })
                    .collect();
                kiln_services::outln!("{}", output::table(&["id", "name", "run", "status", "versions", "created (UTC)"], rows));
            }
        }
    }
    Ok(0)
}
