//! The plugin sandbox: the only module that knows wasmtime.
//!
//! A [`Runtime`] owns one wasmtime `Engine`, a `Linker` offering WASI
//! preview 2 (with no capability granted) and `kiln:plugin/host`, an on-disk
//! cache of compiled components, and an `InstancePre` per loaded plugin.
//! Every call gets a fresh `Store` with a deadline and a memory cap, so one
//! call can neither see another's state nor take the host down; the one
//! exception is a served model ([`WarmModel`]), whose instance serves one
//! deployment's predictions, each with its own deadline.

mod bindings;
mod cache;
mod call;
mod convert;
mod deploy;
mod error;
mod host;
mod http;
mod inspect;
mod limits;
mod warm;

pub use deploy::{ARTIFACTS_DIR, DeployOutcome, DeployRequest, Grants, OUT_DIR};
pub use error::RuntimeError;
pub use inspect::{ComponentInfo, SUPPORTED_WIT};
pub use limits::{Limits, MAX_MEMORY, parse_duration, parse_memory, parse_size};

use anyhow::Context as _;
use bindings::v0_1_0 as v1;
use host::HostState;
use kiln_types::{Column, DriftReport, Evaluation, PluginKind, Table};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

pub use call::{CallReport, EventSender, HostEvent, LogLine, ReportedMetric};
pub use host::{MAX_EVENT_BYTES, MAX_EVENTS, PROGRESS_INTERVAL};
pub use warm::WarmModel;

/// How often the epoch ticks. A deadline is enforced to within one tick,
/// and a running plugin yields to the async executor once per tick.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What `describe` returned, checked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginDescription {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    pub summary: String,
    pub params_schema: serde_json::Value,
}

/// A compiled plugin ready to instantiate.
pub struct LoadedPlugin {
    pub info: ComponentInfo,
    pre: WorldPre,
}

enum WorldPre {
    Trainer(v1::trainer::TrainerPluginPre<HostState>),
    Evaluator(v1::evaluator::EvaluatorPluginPre<HostState>),
    DriftDetector(v1::drift_detector::DriftDetectorPluginPre<HostState>),
    Deployer(v1::deployer::DeployerPluginPre<HostState>),
}

/// The sandbox. Cheap to share behind an `Arc`.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: PathBuf,
    loaded: Mutex<HashMap<String, Arc<LoadedPlugin>>>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// A runtime whose compiled components are cached under `cache_dir`.
    pub fn new(cache_dir: PathBuf) -> anyhow::Result<Self> {
        let mut config = Config::new();
        // Deadlines: the store's epoch deadline callback checks the wall
        // clock every tick; compared with fuel this costs nothing measurable
        // in the plugin's hot loops.
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // Pooling: every call instantiates afresh, so instance slots are
        // reused rather than mmapped per call, and the first 64 MiB of a
        // linear memory stay resident between calls (zeroed with memset)
        // instead of being page-faulted in again: a data-heavy call paid
        // more in page faults than in copying its input. The pool's memory
        // limit is the 32-bit maximum; each call's own cap is enforced by
        // the store's limiter. 256 slots bound concurrent calls per process.
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(256)
            .total_tables(1024)
            .max_memory_size(limits::MAX_MEMORY as usize)
            .linear_memory_keep_resident(64 << 20)
            .table_keep_resident(1 << 20);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(anyhow::Error::from).context("creating the wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        // WASI p2 is linked because every wasm32-wasip2 program imports it
        // (std's I/O, clocks, random); the context built per call grants
        // no preopened directory, no socket address, no environment.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from).context("linking WASI")?;
        // wasi:http, for deployers: every request is checked against the
        // call's grants (none unless the operator granted hosts), and only
        // a deployer may import it (inspect.rs).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(anyhow::Error::from).context("linking wasi:http")?;
        v1::host::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking kiln:plugin/host")?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop = ticker_stop.clone();
        std::thread::Builder::new()
            .name("kiln-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .context("starting the epoch ticker")?;

        Ok(Runtime { engine, linker, cache_dir, loaded: Mutex::new(HashMap::new()), ticker_stop })
    }

    /// Check, compile (or load from the disk cache) and pre-instantiate a
    /// plugin. `digest` names the bytes (`sha256:<hex>`); loaded plugins are
    /// kept. Refused here, with a typed error: a file that is not Wasm, a
    /// core module, an unknown world, an unsupported WIT version, an import
    /// outside the allowed set; `plugin.info` says what was found.
    pub fn load(&self, digest: &str, bytes: &[u8]) -> Result<Arc<LoadedPlugin>, RuntimeError> {
        if let Some(p) = self.loaded.lock().unwrap().get(digest) {
            return Ok(p.clone());
        }
        inspect::check_header(bytes)?;
        let component = cache::load_or_compile(&self.engine, &self.cache_dir, digest, bytes)?;
        let info = inspect::classify(&self.engine, &component)?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| RuntimeError::Invalid(format!("{e:#}")))?;
        let link = |e: wasmtime::Error| RuntimeError::Invalid(format!("{e:#}"));
        let pre = match info.kind {
            PluginKind::Trainer => WorldPre::Trainer(v1::trainer::TrainerPluginPre::new(pre).map_err(link)?),
            PluginKind::Evaluator => WorldPre::Evaluator(v1::evaluator::EvaluatorPluginPre::new(pre).map_err(link)?),
            PluginKind::DriftDetector => WorldPre::DriftDetector(v1::drift_detector::DriftDetectorPluginPre::new(pre).map_err(link)?),
            PluginKind::Deployer => WorldPre::Deployer(v1::deployer::DeployerPluginPre::new(pre).map_err(link)?),
        };
        let plugin = Arc::new(LoadedPlugin { info, pre });
        self.loaded.lock().unwrap().insert(digest.to_string(), plugin.clone());
        Ok(plugin)
    }

    /// Call `describe` and check what it returns.
    pub async fn describe(&self, plugin: &LoadedPlugin, limits: &Limits) -> Result<PluginDescription, RuntimeError> {
        let mut store = call::new_store(&self.engine, limits, None);
        let result = match &plugin.pre {
            WorldPre::Trainer(pre) => async { pre.instantiate_async(&mut store).await?.kiln_plugin_trainer().call_describe(&mut store).await }.await,
            WorldPre::Evaluator(pre) => {
                async { pre.instantiate_async(&mut store).await?.kiln_plugin_evaluator().call_describe(&mut store).await }.await
            }
            WorldPre::DriftDetector(pre) => {
                async { pre.instantiate_async(&mut store).await?.kiln_plugin_drift_detector().call_describe(&mut store).await }.await
            }
            WorldPre::Deployer(pre) => {
                async { pre.instantiate_async(&mut store).await?.kiln_plugin_deployer().call_describe(&mut store).await }.await
            }
        };
        let raw = call::finish(&mut store, result)?;
        convert::description(raw, plugin.info.kind)
    }

    /// Train a model; returns its saved bytes.
    pub async fn train(
        &self,
        plugin: &LoadedPlugin,
        features: Table,
        target: Column,
        params: &str,
        limits: &Limits,
        events: Option<EventSender>,
    ) -> Result<(Vec<u8>, CallReport), RuntimeError> {
        let WorldPre::Trainer(pre) = &plugin.pre else { return Err(wrong_kind(plugin, PluginKind::Trainer)) };
        let mut store = call::new_store(&self.engine, limits, events);
        let features = convert::table_to_wit(features);
        let target = convert::column_to_wit(target);
        let result = async {
            let instance = pre.instantiate_async(&mut store).await?;
            let api = instance.kiln_plugin_trainer();
            match api.call_train(&mut store, &features, &target, params).await? {
                Ok(model) => {
                    let saved = api.model().call_save(&mut store, model).await?;
                    Ok(saved)
                }
                Err(e) => Ok(Err(e)),
            }
        }
        .await;
        let saved = call::settle(&mut store, result).await?;
        let bytes = saved.map_err(convert::plugin_error)?;
        Ok((bytes, call::report(&mut store)))
    }

    /// Load a saved model and predict a batch. The prediction table is
    /// checked against the contract (a `prediction` column, one row per
    /// input row).
    pub async fn predict(
        &self,
        plugin: &LoadedPlugin,
        model: &[u8],
        features: Table,
        limits: &Limits,
        events: Option<EventSender>,
    ) -> Result<(Table, CallReport), RuntimeError> {
        let WorldPre::Trainer(pre) = &plugin.pre else { return Err(wrong_kind(plugin, PluginKind::Trainer)) };
        let rows = features.rows;
        let mut store = call::new_store(&self.engine, limits, events);
        let features = convert::table_to_wit(features);
        let result = async {
            let instance = pre.instantiate_async(&mut store).await?;
            let api = instance.kiln_plugin_trainer();
            match api.call_load(&mut store, model).await? {
                Ok(m) => api.model().call_predict(&mut store, m, &features).await,
                Err(e) => Ok(Err(e)),
            }
        }
        .await;
        let out = call::settle(&mut store, result).await?.map_err(convert::plugin_error)?;
        let table = convert::predictions(out, rows)?;
        Ok((table, call::report(&mut store)))
    }

    /// Score predictions against actual values.
    pub async fn evaluate(
        &self,
        plugin: &LoadedPlugin,
        actual: Column,
        predictions: Table,
        params: &str,
        limits: &Limits,
        events: Option<EventSender>,
    ) -> Result<(Evaluation, CallReport), RuntimeError> {
        let WorldPre::Evaluator(pre) = &plugin.pre else { return Err(wrong_kind(plugin, PluginKind::Evaluator)) };
        let mut store = call::new_store(&self.engine, limits, events);
        let actual = convert::column_to_wit(actual);
        let predictions = convert::table_to_wit(predictions);
        let result = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.kiln_plugin_evaluator().call_evaluate(&mut store, &actual, &predictions, params).await
        }
        .await;
        let out = call::settle(&mut store, result).await?.map_err(convert::plugin_error)?;
        Ok((convert::evaluation(out)?, call::report(&mut store)))
    }

    /// Compare `current` with `reference`.
    pub async fn detect(
        &self,
        plugin: &LoadedPlugin,
        reference: Table,
        current: Table,
        params: &str,
        limits: &Limits,
        events: Option<EventSender>,
    ) -> Result<(DriftReport, CallReport), RuntimeError> {
        let WorldPre::DriftDetector(pre) = &plugin.pre else {
            return Err(wrong_kind(plugin, PluginKind::DriftDetector));
        };
        let mut store = call::new_store(&self.engine, limits, events);
        let reference = convert::table_to_wit(reference);
        let current = convert::table_to_wit(current);
        let result = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.kiln_plugin_drift_detector().call_detect(&mut store, &reference, &current, params).await
        }
        .await;
        let out = call::settle(&mut store, result).await?.map_err(convert::plugin_error)?;
        Ok((convert::drift_report(out)?, call::report(&mut store)))
    }

    /// Instantiate the plugin in a fresh store and drop it: the per-call
    /// overhead a benchmark measures.
    pub async fn instantiate_only(&self, plugin: &LoadedPlugin, limits: &Limits) -> Result<(), RuntimeError> {
        let mut store = call::new_store(&self.engine, limits, None);
        let r = match &plugin.pre {
            WorldPre::Trainer(p) => p.instantiate_async(&mut store).await.map(drop),
            WorldPre::Evaluator(p) => p.instantiate_async(&mut store).await.map(drop),
            WorldPre::DriftDetector(p) => p.instantiate_async(&mut store).await.map(drop),
            WorldPre::Deployer(p) => p.instantiate_async(&mut store).await.map(drop),
        };
        call::finish(&mut store, r)
    }

    /// Forget compiled plugins held in memory (the disk cache stays).
    pub fn unload_all(&self) {
        self.loaded.lock().unwrap().clear();
    }
}

fn wrong_kind(plugin: &LoadedPlugin, wanted: PluginKind) -> RuntimeError {
    RuntimeError::WrongKind { wanted, found: plugin.info.kind }
}
