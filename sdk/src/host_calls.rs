//! Calls into the host: logging, progress, live metrics.
//!
//! Inside Wasm these are the `kiln:plugin/host` imports; natively they are
//! recorded by [`crate::testing`] so plugin logic can be unit-tested.

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

/// Log a line to the run's log.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::wit::host_log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record(crate::testing::HostCall::Log(level, message.to_string()));
}

/// Report progress of a long call.
pub fn progress(done: u64, total: u64, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::wit::host_progress(done, total, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record(crate::testing::HostCall::Progress(done, total, message.to_string()));
}

/// Report a live metric with its step (e.g. a loss per iteration).
pub fn report_metric(name: &str, value: f64, step: u64) {
    #[cfg(target_arch = "wasm32")]
    crate::wit::host_report_metric(name, value, step);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record(crate::testing::HostCall::Metric(name.to_string(), value, step));
}
