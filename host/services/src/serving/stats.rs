//! What each version of a deployment did: requests, failures, latency.
//! Each serving process counts in memory (a few atomics' worth of work per
//! request, under one short lock) and flushes its counts to the store,
//! where the rollout policy sums every process's.

use crate::store::{DeploymentRecord, RolloutStat, Store};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// Which part a version plays in a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Stable,
    Canary,
    Shadow,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Stable => "stable",
            Role::Canary => "canary",
            Role::Shadow => "shadow",
        }
    }
}

/// Buckets per doubling of the latency: each bucket is 9% wide.
const PER_DOUBLING: f64 = 8.0;
const BUCKETS: usize = 256;

/// A latency histogram on a log scale from 1 µs (bucket `b` holds
/// latencies below 2^((b+1)/8) µs), so a p99 is within 9% whatever the
/// scale, and merging two processes' is adding counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    counts: BTreeMap<u8, u64>,
}

impl Histogram {
    pub fn record(&mut self, latency: Duration) {
        let micros = latency.as_secs_f64() * 1e6;
        let bucket = if micros <= 1.0 { 0.0 } else { (micros.log2() * PER_DOUBLING).floor().min((BUCKETS - 1) as f64) };
        *self.counts.entry(bucket as u8).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (b, c) in &other.counts {
            *self.counts.entry(*b).or_default() += c;
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The `q` quantile (0..=1) in milliseconds: the upper edge of the
    /// bucket it falls in; `None` when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (b, c) in &self.counts {
            seen += c;
            if seen >= rank {
                return Some(2f64.powf((*b as f64 + 1.0) / PER_DOUBLING) / 1000.0);
            }
        }
        None
    }

    /// `bucket:count` pairs, as the store keeps them.
    pub fn encode(&self) -> String {
        self.counts.iter().map(|(b, c)| format!("{b}:{c}")).collect::<Vec<_>>().join(",")
    }

    /// The store's text; pairs that do not parse are skipped (a newer
    /// Kiln's encoding must not stop an older one judging).
    pub fn decode(text: &str) -> Histogram {
        let counts = text
            .split(',')
            .filter_map(|pair| {
                let (b, c) = pair.split_once(':')?;
                Some((b.parse().ok()?, c.parse().ok()?))
            })
            .collect();
        Histogram { counts }
    }
}

/// A version's counts over a rollout, summed over processes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub version: i64,
    pub requests: u64,
    pub errors: u64,
    pub agreed: u64,
    pub latency: Histogram,
}

impl Counts {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.errors as f64 / self.requests as f64 }
    }

    pub fn p99_ms(&self) -> Option<f64> {
        self.latency.quantile_ms(0.99)
    }

    /// Sum what the store holds for one role (rows of every process).
    pub fn sum(rows: &[RolloutStat], role: Role) -> Counts {
        let mut total = Counts::default();
        for r in rows.iter().filter(|r| r.role == role.as_str()) {
            total.version = r.version;
            total.requests += r.requests.max(0) as u64;
            total.errors += r.errors.max(0) as u64;
            total.agreed += r.agreed.max(0) as u64;
            total.latency.merge(&Histogram::decode(&r.latency));
        }
        total
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    deployment: String,
    rollout: i64,
    role: Role,
    version: i64,
}

#[derive(Default)]
struct Entry {
    counts: Counts,
    /// Changed since the last flush.
    dirty: bool,
}

/// This process's counts, flushed to the store by [`Recorder::flush`].
pub struct Recorder {
    /// Names this process's rows in the store.
    process: String,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { process: uuid::Uuid::new_v4().simple().to_string(), entries: Mutex::default() }
    }
}

/// One request's outcome, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub latency: Duration,
    /// The version failed (trapped, timed out, could not load, stayed
    /// busy); a request the client got wrong is not the version's failure.
    pub failed: bool,
    /// Shadow only: its answer equalled the one returned.
    pub agreed: bool,
}

impl Recorder {
    pub fn record(&self, d: &DeploymentRecord, role: Role, version: i64, outcome: Outcome) {
        let key = Key { deployment: d.name.clone(), rollout: d.rollout, role, version };
        let mut entries = self.entries.lock().unwrap();
        let entry = entries.entry(key).or_default();
        entry.counts.version = version;
        entry.counts.requests += 1;
        entry.counts.errors += outcome.failed as u64;
        entry.counts.agreed += outcome.agreed as u64;
        entry.counts.latency.record(outcome.latency);
        entry.dirty = true;
    }

    /// Write what changed since the last flush; forget the counts of
    /// rollouts that have been superseded here.
    pub async fn flush(&self, store: &Store) -> crate::store::Result<()> {
        let (rows, keys): (Vec<RolloutStat>, Vec<Key>) = {
            let mut entries = self.entries.lock().unwrap();
            let mut latest: HashMap<String, i64> = HashMap::new();
            for k in entries.keys() {
                let r = latest.entry(k.deployment.clone()).or_insert(k.rollout);
                *r = (*r).max(k.rollout);
            }
            entries.retain(|k, e| e.dirty || k.rollout >= latest[&k.deployment]);
            entries
                .iter_mut()
                .filter(|(_, e)| e.dirty)
                .map(|(k, e)| {
                    e.dirty = false;
                    let row = RolloutStat {
                        deployment: k.deployment.clone(),
                        rollout: k.rollout,
                        role: k.role.as_str().into(),
                        version: k.version,
                        requests: e.counts.requests as i64,
                        errors: e.counts.errors as i64,
                        agreed: e.counts.agreed as i64,
                        latency: e.counts.latency.encode(),
                    };
                    (row, k.clone())
                })
                .unzip()
        };
        if let Err(e) = store.put_rollout_stats(&self.process, &rows).await {
            // Not lost: written on the next flush.
            let mut entries = self.entries.lock().unwrap();
            for k in keys {
                if let Some(e) = entries.get_mut(&k) {
                    e.dirty = true;
                }
            }
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_quantile_is_within_its_bucket_and_survives_the_store() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((99.0..=99.0 * 1.1).contains(&p99), "{p99}");
        let p50 = h.quantile_ms(0.5).unwrap();
        assert!((50.0..=55.0).contains(&p50), "{p50}");
        let back = Histogram::decode(&h.encode());
        assert_eq!(back, h);
        let mut merged = back.clone();
        merged.merge(&h);
        assert_eq!(merged.count(), 200);
        assert_eq!(merged.quantile_ms(0.99), h.quantile_ms(0.99));
        assert_eq!(Histogram::default().quantile_ms(0.99), None);
        assert_eq!(Histogram::decode("x,3:2,:,4:").count(), 2);
        // Sub-microsecond and absurdly long latencies land in the end buckets.
        h.record(Duration::from_nanos(10));
        h.record(Duration::from_secs(1 << 40));
        assert_eq!(h.count(), 102);
    }
}
