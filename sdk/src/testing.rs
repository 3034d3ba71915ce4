//! A native harness for unit-testing plugin logic without Wasm.
//!
//! ```
//! use kiln_sdk::testing;
//! let (value, calls) = testing::capture(|| { kiln_sdk::report_metric("loss", 0.5, 1); 42 });
//! assert_eq!(value, 42);
//! assert_eq!(calls.metrics(), vec![("loss".to_string(), 0.5, 1)]);
//! ```

use crate::LogLevel;
use std::cell::RefCell;

/// One call a plugin made to the host.
#[derive(Debug, Clone, PartialEq)]
pub enum HostCall {
    /// `log(level, message)`.
    Log(LogLevel, String),
    /// `progress(done, total, message)`.
    Progress(u64, u64, String),
    /// `report_metric(name, value, step)`.
    Metric(String, f64, u64),
}

/// The host calls made while a closure ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostCalls(pub Vec<HostCall>);

impl HostCalls {
    /// Reported metrics as `(name, value, step)`.
    pub fn metrics(&self) -> Vec<(String, f64, u64)> {
        self.0
            .iter()
            .filter_map(|c| match c {
                HostCall::Metric(n, v, s) => Some((n.clone(), *v, *s)),
                _ => None,
            })
            .collect()
    }
    /// Logged messages.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.0
            .iter()
            .filter_map(|c| match c {
                HostCall::Log(l, m) => Some((*l, m.clone())),
                _ => None,
            })
            .collect()
    }
}

thread_local! {
    static CALLS: RefCell<Option<Vec<HostCall>>> = const { RefCell::new(None) };
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn record(call: HostCall) {
    CALLS.with(|c| {
        if let Some(calls) = c.borrow_mut().as_mut() {
            calls.push(call);
        }
    });
}

/// Run `f` and return what it returned with the host calls it made.
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, HostCalls) {
    let previous = CALLS.with(|c| c.borrow_mut().replace(Vec::new()));
    let out = f();
    let calls = CALLS.with(|c| std::mem::replace(&mut *c.borrow_mut(), previous)).unwrap_or_default();
    (out, HostCalls(calls))
}
