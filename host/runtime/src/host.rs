//! What a plugin's store holds, and the `kiln:plugin/host` imports.

use super::bindings::v0_1_0 as v1;
use super::call::{EventSender, HostEvent, LogLine, ReportedMetric};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TrySendError;
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
/// Progress is latest-wins: at most one event per this interval goes out
/// (and the last one, `done == total`, always does).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Where a call's events go.
///
/// With a live sink, each event is sent as it happens. The host functions
/// are synchronous, so a full channel does not block the plugin: events
/// wait in `overflow` (bounded by the caps above, like everything else)
/// and go out with the next event or when the call ends. Without a sink,
/// events are kept for the call's report.
#[derive(Debug, Default)]
pub struct Events {
    pub kept: Vec<HostEvent>,
    sink: Option<EventSender>,
    overflow: VecDeque<HostEvent>,
    count: usize,
    bytes: usize,
    pub dropped: u64,
    last_progress: Option<Instant>,
    /// The latest progress not sent yet (rate-limited or no room): sent
    /// when the call ends, so the final state is never lost.
    unsent_progress: Option<HostEvent>,
    /// The `done == total` report went out; later ones are not final.
    final_sent: bool,
}

impl Events {
    pub fn new(sink: Option<EventSender>) -> Self {
        Events { sink, ..Default::default() }
    }

    fn push(&mut self, event: HostEvent, bytes: usize) {
        if self.count >= MAX_EVENTS || self.bytes + bytes > MAX_EVENT_BYTES {
            self.dropped += 1;
            return;
        }
        self.count += 1;
        self.bytes += bytes;
        if self.sink.is_none() {
            self.kept.push(event);
            return;
        }
        self.overflow.push_back(event);
        self.send_ready();
    }

    /// Progress is not counted against the caps: only the latest matters,
    /// so it is rate-limited (one per [`PROGRESS_INTERVAL`], the first
    /// `done == total` of a known total excepted) and never queued; what
    /// was held back is sent when the call ends. Without a live sink
    /// nobody would read it.
    fn progress(&mut self, done: u64, total: u64, message: String) {
        let Some(sink) = &self.sink else { return };
        let now = Instant::now();
        let event = HostEvent::Progress { done, total, message: cut(message, 1024) };
        let last = total > 0 && done >= total && !self.final_sent;
        let limited = self.last_progress.is_some_and(|t| now.duration_since(t) < PROGRESS_INTERVAL);
        if (limited && !last) || !self.overflow.is_empty() {
            self.unsent_progress = Some(event);
            return;
        }
        match sink.try_send(event) {
            Ok(()) => {
                self.last_progress = Some(now);
                self.final_sent |= last;
                self.unsent_progress = None;
            }
            Err(TrySendError::Full(event)) => self.unsent_progress = Some(event),
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Send queued events while the channel has room.
    fn send_ready(&mut self) {
        let Some(sink) = &self.sink else { return };
        while let Some(event) = self.overflow.pop_front() {
            match sink.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.overflow.push_front(event);
                    return;
                }
                // Nobody listens any more: nothing to keep them for.
                Err(TrySendError::Closed(_)) => {
                    self.dropped += 1 + self.overflow.len() as u64;
                    self.overflow.clear();
                    return;
                }
            }
        }
    }

    /// A warm instance's next call starts with the whole per-call caps.
    pub fn reset_for_call(&mut self) {
        self.kept.clear();
        self.count = 0;
        self.bytes = 0;
        self.dropped = 0;
    }

    /// After the call: wait for room for whatever is still queued.
    pub async fn flush(sink: Option<EventSender>, overflow: VecDeque<HostEvent>) {
        let Some(sink) = sink else { return };
        for event in overflow {
            if sink.send(event).await.is_err() {
                return;
            }
        }
    }

    /// The sink and the queued events (the held-back progress last), for
    /// [`Events::flush`].
    pub fn take_pending(&mut self) -> (Option<EventSender>, VecDeque<HostEvent>) {
        let mut pending = std::mem::take(&mut self.overflow);
        pending.extend(self.unsent_progress.take());
        (self.sink.take(), pending)
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
    pub http: wasmtime_wasi_http::WasiHttpCtx,
    /// Empty unless a deployer was granted hosts: then only those.
    pub http_allowed: super::http::HttpAllowList,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wasmtime_wasi_http::WasiHttpView for HostState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_allowed }
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

    fn progress(&mut self, done: u64, total: u64, message: String) {
        self.events.progress(done, total, message);
    }

    fn report_metric(&mut self, name: String, value: f64, step: u64) {
        let name = cut(name, 1024);
        let bytes = name.len() + 32;
        self.events.push(HostEvent::Metric(ReportedMetric { name, value, step }), bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(i: usize) -> HostEvent {
        HostEvent::Log(LogLine { level: "info".into(), message: format!("line {i}"), at_ms: 0 })
    }

    #[tokio::test]
    async fn a_full_channel_queues_events_in_order_and_the_end_of_the_call_delivers_them() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let mut events = Events::new(Some(tx));
        for i in 0..10 {
            events.push(log(i), 40);
        }
        assert_eq!(events.overflow.len(), 6, "4 fit in the channel, 6 wait");
        let (sink, pending) = events.take_pending();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(e) = rx.recv().await {
                got.push(e);
            }
            got
        });
        Events::flush(sink, pending).await;
        drop(events);
        let got = reader.await.unwrap();
        assert_eq!(got, (0..10).map(log).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn events_past_the_caps_are_dropped_and_counted_even_when_sent_live() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(MAX_EVENTS * 2);
        let mut events = Events::new(Some(tx));
        for i in 0..MAX_EVENTS + 25 {
            events.push(log(i), 10);
        }
        assert_eq!(events.dropped, 25);
        assert!(events.kept.is_empty(), "live events are not also kept");
        drop(events);
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_EVENTS);
    }

    #[tokio::test]
    async fn progress_is_rate_limited_but_the_last_report_always_goes_out() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1000);
        let mut events = Events::new(Some(tx));
        for done in 1..=500 {
            events.progress(done, 500, "rows".into());
        }
        // Past the end, or with no known total, nothing bypasses the limit.
        for _ in 0..1000 {
            events.progress(500, 500, "rows".into());
            events.progress(7, 0, "unknown total".into());
        }
        let (sink, pending) = events.take_pending();
        Events::flush(sink, pending).await;
        drop(events);
        let mut got = Vec::new();
        while let Some(HostEvent::Progress { done, .. }) = rx.recv().await {
            got.push(done);
        }
        assert_eq!(got.first(), Some(&1));
        assert!(got.contains(&500));
        assert!(got.len() < 10, "{} progress events of 2,500 went out", got.len());
        // What was held back last goes out when the call ends.
        assert_eq!(got.last(), Some(&7));
    }
}
