//! What a plugin's store holds, and the `kiln:plugin/host` imports.

use super::bindings::v0_1_0 as v1;
use super::call::{HostEvent, LogLine, ReportedMetric};
use std::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Cap on what a plugin may print to stdout/stderr per call; the rest is
/// dropped rather than growing the host's memory.
pub const OUTPUT_CAP: usize = 1 << 20;

/// Caps on the `log` and `report-metric` events one call may leave: a
/// plugin that logs in a loop costs the host at most this much; the rest
/// is counted and dropped.
pub const MAX_EVENTS: usize = 10_000;
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// A single log message is cut to this many bytes.
pub const MAX_MESSAGE: usize = 16 << 10;

/// The events a call has kept, and how many it dropped past the caps.
#[derive(Debug, Default)]
pub struct Events {
    pub kept: Vec<HostEvent>,
    bytes: usize,
    pub dropped: u64,
}

impl Events {
    fn push(&mut self, event: HostEvent, bytes: usize) {
        if self.kept.len() >= MAX_EVENTS || self.bytes + bytes > MAX_EVENT_BYTES {
            self.dropped += 1;
            return;
        }
        self.bytes += bytes;
        self.kept.push(event);
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

pub struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub deadline: Instant,
    pub timed_out: bool,
    pub events: Events,
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
    pub started: Instant,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps linear memory and remembers the peak and any refused growth.
pub struct MemoryLimiter {
    pub cap: u64,
    pub peak: u64,
    pub refused: Option<u64>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.cap {
            self.refused = Some(desired);
            // An error (rather than `Ok(false)`) traps at the `memory.grow`,
            // so the failure is reported as out-of-memory and not as
            // whatever the guest's allocator does next.
            return Err(wasmtime::format_err!("memory cap of {} bytes reached", self.cap));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl v1::types::Host for HostState {}

impl v1::host::Host for HostState {
    fn log(&mut self, level: v1::host::LogLevel, message: String) {
        use v1::host::LogLevel as L;
        let level = match level {
            L::Trace => "trace",
            L::Debug => "debug",
            L::Info => "info",
            L::Warn => "warn",
            L::Error => "error",
        };
        let message = cut(message, MAX_MESSAGE);
        tracing::debug!(target: "kiln::plugin", level, "{message}");
        let bytes = message.len() + 32;
        self.events.push(HostEvent::Log(LogLine { level: level.into(), message, at_ms: self.started.elapsed().as_millis() as u64 }), bytes);
    }

    /// Not kept: nothing reads progress after a call (live progress is to
    /// come), and keeping it would let a plugin grow the host's memory.
    fn progress(&mut self, _done: u64, _total: u64, _message: String) {}

    fn report_metric(&mut self, name: String, value: f64, step: u64) {
        let name = cut(name, 1024);
        let bytes = name.len() + 32;
        self.events.push(HostEvent::Metric(ReportedMetric { name, value, step }), bytes);
    }
}
