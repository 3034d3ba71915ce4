//! Per-call resource limits.

use std::time::Duration;

/// The deadline and memory cap of one plugin call.
///
/// Defaults suit training on a laptop-sized dataset: ten minutes and 2 GiB
/// of linear memory. A pipeline stage or a plugin's registration can
/// tighten or widen them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Wall-clock deadline for the whole call, instantiation included.
    pub timeout: Duration,
    /// Cap on the plugin's linear memory, in bytes.
    pub memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout: Duration::from_secs(600), memory_bytes: 2 << 30 }
    }
}

pub use kiln_types::size::parse_size;

/// The smallest memory cap a plugin can work in (a Rust component's
/// stack and data alone take a megabyte or two)…
pub const MIN_MEMORY: u64 = 16 << 20;
/// …and the largest the runtime supports (32-bit linear memories; the
/// pooling allocator reserves this much address space per slot).
pub const MAX_MEMORY: u64 = 4 << 30;

/// Parse a memory cap and check it is one the runtime can enforce.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&bytes) {
        return Err(format!("a plugin's memory cap must be between 16MiB and 4GiB, got `{}`", text.trim()));
    }
    Ok(bytes)
}

/// Parse `30s`, `5m`, `250ms`, `1h` into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("`{text}` is not a duration (try 30s or 5m)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown duration unit `{other}` in `{text}` (use ms, s, m, h)")),
    };
    let d = Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is too long a duration"))?;
    if d.is_zero() {
        return Err(format!("`{text}`: a duration must be more than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").unwrap_err().contains("lots"));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("5 fortnights").is_err());
    }

    #[test]
    fn out_of_range_values_are_errors_not_panics() {
        assert!(parse_duration("99999999999999999999s").unwrap_err().contains("too long"));
        assert!(parse_duration("0s").unwrap_err().contains("more than zero"));
        assert!(parse_size("99999999999999999999999GiB").unwrap_err().contains("too large"));
        assert!(parse_memory("1").unwrap_err().contains("between 16MiB and 4GiB"));
        assert!(parse_memory("8GiB").unwrap_err().contains("between 16MiB and 4GiB"));
        assert_eq!(parse_memory("512MiB").unwrap(), 512 << 20);
    }
}
