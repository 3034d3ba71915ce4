//! `kiln run`'s live view on a terminal: a progress bar per running stage,
//! fed by the plugin's `progress` events from the store's change feed.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_services::app::App;
use kiln_services::store::Change;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct Bars {
    multi: MultiProgress,
    bars: Arc<Mutex<HashMap<String, ProgressBar>>>,
}

impl Bars {
    pub fn new() -> Self {
        Bars { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()), bars: Default::default() }
    }

    /// Follow the progress events of `run` (this process's own feed).
    pub fn follow(&self, app: &App, run: &str) {
        let mut changes = app.store.subscribe_local();
        let (bars, run) = (self.clone(), run.to_string());
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match changes.recv().await {
                    Ok(Change::Progress { run: r, stage, done, total, message }) if r == run => bars.progress(&stage, done, total, &message),
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    pub fn started(&self, stage: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {prefix:<16} {elapsed:>4} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(stage.to_string());
        bar.set_message("running");
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bars.lock().unwrap().insert(stage.to_string(), bar);
    }

    fn progress(&self, stage: &str, done: u64, total: u64, message: &str) {
        let bars = self.bars.lock().unwrap();
        let Some(bar) = bars.get(stage) else { return };
        if bar.length().is_none() && total > 0 {
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {prefix:<16} {elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
                    .map(|s| s.progress_chars("=> "))
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
        }
        if total > 0 {
            bar.set_length(total);
        }
        bar.set_position(done);
        bar.set_message(message.to_string());
    }

    /// Remove the stage's bar and print its result line in its place.
    pub fn finished(&self, stage: &str, line: &str) {
        if let Some(bar) = self.bars.lock().unwrap().remove(stage) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.multi.suspend(|| kiln_services::outln!("{line}"));
    }
}
