use anyhow::{Result, bail};
use clap::Subcommand;
use kiln_services::app::App;
use kiln_services::output;
use kiln_services::views;

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Run a registered pipeline on a cron schedule (run by `kiln serve`).
    Add {
        pipeline: String,
        /// `MIN HOUR DAY MONTH WEEKDAY`, e.g. "0 2 * * *" for 02:00 UTC nightly.
        #[arg(long)]
        cron: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Remove {
        id: String,
    },
}

pub async fn run(cmd: ScheduleCommand) -> Result<i32> {
    let app = App::open(true).await?;
    match cmd {
        ScheduleCommand::Add { pipeline, cron } => {
            kiln_services::scheduler::parse_cron(&cron).map_err(anyhow::Error::msg)?;
            if app.store.pipeline(&pipeline).await?.is_none() {
                bail!("no registered pipeline `{pipeline}`; register it first with `kiln pipeline add FILE`");
            }
            let s = app.store.add_schedule(&pipeline, &cron).await?;
            kiln_services::outln!("Scheduled `{pipeline}` at \"{cron}\" (UTC) as {}; `kiln serve` runs it", s.id);
        }
        ScheduleCommand::List { json } => {
            let list = app.store.list_schedules().await?;
            if json {
                kiln_services::outln!("{}", output::json(&views::all::<_, views::Schedule>(&list)));
            } else {
                let rows = list.iter().map(|s| vec![s.id.clone(), s.pipeline.clone(), s.cron.clone()]).collect();
                kiln_services::outln!("{}", output::table(&["id", "pipeline", "cron (UTC)"], rows));
            }
        }
        ScheduleCommand::Remove { id } => {
            app.store.remove_schedule(&id).await?;
            kiln_services::outln!("Removed schedule {id}");
        }
    }
    Ok(0)
}
