//! One plugin call: a fresh store with its limits, and the classification
//! of whatever went wrong.

use super::error::RuntimeError;
use super::host::{Events, HostState, MemoryLimiter, OUTPUT_CAP};
use super::limits::Limits;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// A log line a plugin wrote through `kiln:plugin/host.log`, or a line of
/// its stdout/stderr (level `stdout`/`stderr`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
    /// Milliseconds since the call started.
    pub at_ms: u64,
}

/// A metric reported live with its step.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportedMetric {
    pub name: String,
    pub value: f64,
    pub step: u64,
}

/// What a running plugin tells the host through `kiln:plugin/host`.
#[derive(Debug, Clone, PartialEq)]
pub enum HostEvent {
    Log(LogLine),
    Metric(ReportedMetric),
    /// `done` of `total` units; never kept, only sent live.
    Progress {
        done: u64,
        total: u64,
        message: String,
    },
}

/// Where a call sends its events live: the `events` argument of the
/// runtime's call methods.
pub type EventSender = tokio::sync::mpsc::Sender<HostEvent>;

/// What a successful call left behind besides its result.
#[derive(Debug, Clone, Default)]
pub struct CallReport {
    pub logs: Vec<LogLine>,
    pub metrics: Vec<ReportedMetric>,
    /// Largest linear memory the plugin reached, in bytes.
    pub peak_memory: u64,
    /// Log lines and metrics dropped past the per-call caps
    /// (`host::MAX_EVENTS`, `host::MAX_EVENT_BYTES`). With a live sink,
    /// `logs` holds only stdout/stderr and `metrics` is empty: the rest
    /// went out as it happened.
    pub dropped_events: u64,
    pub elapsed_ms: u64,
}

pub fn new_store(engine: &Engine, limits: &Limits, sink: Option<EventSender>) -> Store<HostState> {
    store_with(engine, limits, sink, &mut WasiCtx::builder())
}

/// A store whose WASI context starts from `builder` (a deployer's granted
/// directories); the rest is denied as in [`new_store`].
pub fn store_with(engine: &Engine, limits: &Limits, sink: Option<EventSender>, builder: &mut WasiCtxBuilder) -> Store<HostState> {
    let stdout = MemoryOutputPipe::new(OUTPUT_CAP);
    let stderr = MemoryOutputPipe::new(OUTPUT_CAP);
    // No env, no args, no socket address allowed, no name lookup: the
    // builder's defaults, spelled out where they matter.
    let wasi = builder.stdout(stdout.clone()).stderr(stderr.clone()).allow_ip_name_lookup(false).allow_tcp(false).allow_udp(false).build();
    let now = Instant::now();
    let state = HostState {
        wasi,
        table: ResourceTable::new(),
        limiter: MemoryLimiter { cap: limits.memory_bytes, peak: 0, refused: None },
        deadline: now + limits.timeout,
        timed_out: false,
        events: Events::new(sink),
        stdout,
        stderr,
        started: now,
        http: wasmtime_wasi_http::WasiHttpCtx::new(),
        http_allowed: Default::default(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let state = ctx.data_mut();
        if Instant::now() >= state.deadline {
            state.timed_out = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        // Yield once per tick so a long call shares the executor thread.
        Ok(UpdateDeadline::Yield(1))
    });
    store
}

/// Finish a call ([`finish`]) after sending the events still queued for
/// its live sink, whether the call succeeded or not: what a plugin logged
/// before it trapped is worth most.
pub async fn settle<T>(store: &mut Store<HostState>, result: wasmtime::Result<T>) -> Result<T, RuntimeError> {
    let (sink, pending) = store.data_mut().events.take_pending();
    Events::flush(sink, pending).await;
    finish(store, result)
}

/// Map a call's outcome to a typed error, using what the store saw (deadline
/// passed, memory refused, panic message on stderr) to say why.
pub fn finish<T>(store: &mut Store<HostState>, result: wasmtime::Result<T>) -> Result<T, RuntimeError> {
    let err = match result {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let state = store.data();
    if let Some(requested) = state.limiter.refused {
        return Err(RuntimeError::OutOfMemory { requested, cap: state.limiter.cap });
    }
    if state.timed_out || matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return Err(RuntimeError::Timeout(state.deadline - state.started));
    }
    let stderr = String::from_utf8_lossy(&state.stderr.contents()).trim().to_string();
    let mut message = match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    // A Rust guest prints its panic message to stderr before the trap.
    if let Some(panic) = stderr.lines().rev().find(|l| l.contains("panicked")) {
        message = format!("{message} ({panic})");
    }
    Err(RuntimeError::Trap(message))
}

/// Drain logs, metrics and output from a finished call.
pub fn report(store: &mut Store<HostState>) -> CallReport {
    let state = store.data_mut();
    let mut logs = Vec::new();
    let mut metrics = Vec::new();
    for e in state.events.kept.drain(..) {
        match e {
            HostEvent::Log(l) => logs.push(l),
            HostEvent::Metric(m) => metrics.push(m),
            HostEvent::Progress { .. } => {}
        }
    }
    let elapsed_ms = state.started.elapsed().as_millis() as u64;
    for (level, pipe) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
        for line in String::from_utf8_lossy(&pipe.contents()).lines() {
            tracing::debug!(target: "kiln::plugin", stream = level, "{line}");
            logs.push(LogLine { level: level.into(), message: line.to_string(), at_ms: elapsed_ms });
        }
    }
    CallReport { logs, metrics, peak_memory: state.limiter.peak, dropped_events: state.events.dropped, elapsed_ms }
}
