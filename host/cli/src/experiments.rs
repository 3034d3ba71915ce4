use anyhow::Result;
use clap::Subcommand;
use kiln_services::app::App;
use kiln_services::output;
use kiln_services::views;

#[derive(Subcommand)]
pub enum ExperimentsCommand {
    /// List experiments with their run counts.
    List {
        /// Include deleted experiments.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    Create {
        name: String,
    },
    Rename {
        name: String,
        new_name: String,
    },
    /// Delete an experiment and hide its runs (restore brings both back).
    Delete {
        name: String,
    },
    Restore {
        name: String,
    },
}

pub async fn run(cmd: ExperimentsCommand) -> Result<i32> {
    let app = App::open(true).await?;
    match cmd {
        ExperimentsCommand::List { all, json } => {
            let list = app.store.list_experiments(all).await?;
            if json {
                kiln_services::outln!("{}", output::json(&views::all::<_, views::Experiment>(&list)));
            } else {
                let rows = list
                    .iter()
                    .map(|e| {
                        vec![
                            e.name.clone(),
                            e.runs.to_string(),
                            e.lifecycle_stage.clone(),
                            output::time_ms(e.created_at),
                            output::short(&e.id, 12).to_string(),
                        ]
                    })
                    .collect();
                kiln_services::outln!("{}", output::table(&["name", "runs", "stage", "created (UTC)", "id"], rows));
            }
        }
        ExperimentsCommand::Create { name } => {
            let id = app.store.create_experiment(&name).await?;
            kiln_services::outln!("Created experiment `{name}` ({id})");
        }
        ExperimentsCommand::Rename { name, new_name } => {
            app.store.rename_experiment(&name, &new_name).await?;
            kiln_services::outln!("Renamed `{name}` to `{new_name}`");
        }
        ExperimentsCommand::Delete { name } => {
            app.store.set_experiment_stage(&name, "deleted").await?;
            kiln_services::outln!("Deleted experiment `{name}` (kiln experiments restore {name} brings it back)");
        }
        ExperimentsCommand::Restore { name } => {
            app.store.set_experiment_stage(&name, "active").await?;
            kiln_services::outln!("Restored experiment `{name}`");
        }
    }
    Ok(0)
}
