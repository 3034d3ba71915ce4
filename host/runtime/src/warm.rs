//! A warm model: one trainer instance kept alive with a model already
//! loaded, for serving (load once, predict many).
//!
//! Every other call gets a fresh store; a served model would pay for
//! instantiation and `load` on every request. A [`WarmModel`] keeps the
//! store, the instance and the loaded `model` resource, and gives each
//! `predict` its own deadline and its own share of the event and output
//! caps. The memory cap is the store's and stays: an instance that leaks
//! reaches it, traps and is thrown away like any other that traps.
//!
//! **Invariant:** after any error other than the plugin's own
//! (`RuntimeError::Plugin`), the instance must not be called again — a
//! trap may have left its memory half-written — so [`WarmModel::predict`]
//! marks it spent and the owner replaces it.

use super::bindings::v0_1_0 as v1;
use super::call::{self, HostEvent};
use super::error::RuntimeError;
use super::host::{HostState, OUTPUT_CAP};
use super::limits::Limits;
use super::{LoadedPlugin, Runtime, WorldPre, convert, wrong_kind};
use kiln_types::{PluginKind, Table};
use std::time::Instant;
use wasmtime::Store;
use wasmtime::component::ResourceAny;

/// A trainer instance with a model loaded. Used by one request at a time
/// (`predict` takes `&mut self`); a pool of them serves many.
pub struct WarmModel {
    store: Store<HostState>,
    instance: v1::trainer::TrainerPlugin,
    model: ResourceAny,
    limits: Limits,
    /// How much of stdout and stderr earlier calls already logged.
    printed: [usize; 2],
    spent: bool,
}

impl Runtime {
    /// Instantiate a trainer and `load` `model` into it, within `limits`
    /// (the deadline covers instantiation and loading; each prediction then
    /// gets a deadline of its own).
    pub async fn warm(&self, plugin: &LoadedPlugin, model: &[u8], limits: &Limits) -> Result<WarmModel, RuntimeError> {
        let WorldPre::Trainer(pre) = &plugin.pre else { return Err(wrong_kind(plugin, PluginKind::Trainer)) };
        let mut store = call::new_store(&self.engine, limits, None);
        let result = async {
            let instance = pre.instantiate_async(&mut store).await?;
            let loaded = instance.kiln_plugin_trainer().call_load(&mut store, model).await?;
            Ok((instance, loaded))
        }
        .await;
        let (instance, loaded) = call::finish(&mut store, result)?;
        let model = loaded.map_err(convert::plugin_error)?;
        let mut warm = WarmModel { store, instance, model, limits: *limits, printed: [0, 0], spent: false };
        warm.drain_output();
        Ok(warm)
    }
}

impl WarmModel {
    /// Predict a batch with the loaded model. The result is checked as
    /// [`Runtime::predict`] checks it. On an error other than the
    /// plugin's own the instance is spent ([`WarmModel::is_spent`]).
    pub async fn predict(&mut self, features: Table) -> Result<Table, RuntimeError> {
        if self.spent {
            return Err(RuntimeError::Trap("this instance failed earlier and cannot be called again".into()));
        }
        let rows = features.rows;
        let now = Instant::now();
        {
            let state = self.store.data_mut();
            state.started = now;
            state.deadline = now + self.limits.timeout;
            state.timed_out = false;
            state.events.reset_for_call();
        }
        let features = convert::table_to_wit(features);
        let result = self.instance.kiln_plugin_trainer().model().call_predict(&mut self.store, self.model, &features).await;
        let outcome = call::finish(&mut self.store, result);
        self.drain_output();
        let checked = match outcome {
            Ok(Ok(table)) => convert::predictions(table, rows),
            Ok(Err(e)) => Err(convert::plugin_error(e)),
            Err(e) => Err(e),
        };
        if let Err(e) = &checked
            && !matches!(e, RuntimeError::Plugin { .. })
        {
            self.spent = true;
        }
        // Output past half the pipes' cap would make the instance trap at
        // its next print: retire it while it is still healthy.
        if self.printed.iter().any(|n| *n > OUTPUT_CAP / 2) {
            self.spent = true;
        }
        checked
    }

    /// Whether the instance must be dropped rather than called again.
    pub fn is_spent(&self) -> bool {
        self.spent
    }

    /// Send what the plugin logged or printed since the last call to the
    /// host's log (nobody reads a served call's report).
    fn drain_output(&mut self) {
        let state = self.store.data_mut();
        for event in state.events.kept.drain(..) {
            if let HostEvent::Log(line) = event {
                tracing::info!(target: "kiln::plugin", level = %line.level, "{}", line.message);
            }
        }
        let pipes = [("stdout", state.stdout.contents()), ("stderr", state.stderr.contents())];
        for (i, (stream, bytes)) in pipes.iter().enumerate() {
            let new = &bytes[self.printed[i].min(bytes.len())..];
            for line in String::from_utf8_lossy(new).lines() {
                tracing::info!(target: "kiln::plugin", stream, "{line}");
            }
            self.printed[i] = bytes.len();
        }
    }
}
