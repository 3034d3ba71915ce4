//! Cron schedules: each tick of each schedule queues one pipeline run, once,
//! however many `kiln serve` processes share the database (they race to
//! insert the tick; the primary key lets one win).

use crate::app::App;
use crate::pipeline::{self, RunRequest};
use chrono::{DateTime, Utc};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::watch;

/// Parse standard 5-field cron (`0 2 * * *`) or 6-field cron with
/// seconds first; one that can never fire (`0 0 30 2 *`) is refused.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    let full = match fields {
        5 => format!("0 {expr}"),
        6 => expr.to_string(),
        _ => {
            return Err(format!(
                "`{expr}` is not a cron expression: expected 5 fields (min hour day month weekday), or 6 with seconds first; it has {fields}"
            ));
        }
    };
    let schedule = cron::Schedule::from_str(&full).map_err(|e| format!("`{expr}` is not a valid cron expression: {e}"))?;
    if schedule.upcoming(Utc).next().is_none() {
        return Err(format!("`{expr}` never fires: no date matches it"));
    }
    Ok(schedule)
}

/// Fire due ticks until `shutdown` turns true.
pub async fn run(app: App, mut shutdown: watch::Receiver<bool>) {
    let mut since: DateTime<Utc> = Utc::now();
    while !*shutdown.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => break,
        }
        let now = Utc::now();
        if let Err(e) = fire_due(&app, since, now).await {
            tracing::warn!("scheduler: {e:#}");
        }
        since = now;
    }
}

/// Queue a run for every tick in (since, now].
pub async fn fire_due(app: &App, since: DateTime<Utc>, now: DateTime<Utc>) -> anyhow::Result<()> {
    for s in app.store.list_schedules().await? {
        let schedule = match parse_cron(&s.cron) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("schedule {}: {e}", s.id);
                continue;
            }
        };
        let request = RunRequest { pipeline: s.pipeline.clone(), ..Default::default() };
        let mut checked = None;
        for tick in schedule.after(&since).take_while(|t| *t <= now) {
            // Check the pipeline before claiming the tick: between the claim
            // and the queued run there are only database writes.
            let pipeline = match &checked {
                Some(p) => p,
                None => checked.insert(pipeline::check_request(app, &request).await?),
            };
            let ms = tick.timestamp_millis();
            if app.store.claim_tick(&s.id, ms).await? {
                let run = pipeline::queue(app, pipeline, &request).await?;
                app.store.set_tick_run(&s.id, ms, &run).await?;
                tracing::info!(schedule = %s.id, pipeline = %s.pipeline, run = %run, "schedule fired");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_field_cron() {
        let nightly = parse_cron("0 2 * * *").unwrap();
        let from = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(nightly.after(&from).next().unwrap().to_rfc3339(), "2026-11-27T02:00:00+00:00");
        assert!(parse_cron("*/2 * * * * *").is_ok());
        assert!(parse_cron("0 2 * *").unwrap_err().contains("5 fields"));
        assert!(parse_cron("0 25 * * *").unwrap_err().contains("not a valid cron"));
        assert!(parse_cron("0 0 30 2 *").unwrap_err().contains("never fires"));
        assert!(parse_cron("0 0 0 1 1 * 2030").unwrap_err().contains("it has 7"));
    }
}
