//! Rollouts: a canary takes a share of a deployment's traffic (sticky per
//! request key, for A/B tests), a shadow sees every request and never
//! answers, and a policy promotes the canary or rolls it back by itself.
//!
//! Every `kiln serve` process sharing the database routes from the same
//! row and counts what it served ([`super::stats`]); each judges from
//! everyone's counts, and the store applies a decision only while the
//! rollout it was about is still the current one, so a rollout is decided
//! once.

use super::stats::{Counts, Role};
use crate::app::App;
use crate::registry::{self, VersionRef};
use crate::store::{DeploymentRecord, RolloutChange, Target};
use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often a serving process flushes its counts and judges rollouts.
pub const TICK: Duration = Duration::from_millis(500);

/// When and how a canary is judged against the stable version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Decide by itself; `false`: wait for `--promote` or `--rollback`.
    pub auto: bool,
    /// Judge once the canary has answered this many requests…
    pub after_requests: u64,
    /// …or once this long has passed since it started (if it answered any).
    pub after_ms: Option<u64>,
    /// The canary's error rate may exceed the stable version's by this much
    /// (0.01: one percentage point).
    pub max_error_rate_increase: f64,
    /// The canary's p99 latency may be at most this many times the stable
    /// version's, plus [`Policy::p99_allowance_ms`] (latencies below a
    /// millisecond differ by more than their ratio from noise alone).
    pub max_p99_ratio: f64,
    pub p99_allowance_ms: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { auto: true, after_requests: 200, after_ms: None, max_error_rate_increase: 0.01, max_p99_ratio: 1.5, p99_allowance_ms: 1.0 }
    }
}

impl Policy {
    pub fn check(&self) -> Result<()> {
        if self.after_requests == 0 && self.after_ms.is_none() {
            bail!("the policy never judges: give after_requests of at least 1 or a time");
        }
        if !(0.0..=1.0).contains(&self.max_error_rate_increase) {
            bail!("max_error_rate_increase must be between 0 and 1, not {}", self.max_error_rate_increase);
        }
        if !(self.max_p99_ratio >= 1.0 && self.max_p99_ratio.is_finite()) {
            bail!("max_p99_ratio must be at least 1, not {}", self.max_p99_ratio);
        }
        if !(self.p99_allowance_ms >= 0.0 && self.p99_allowance_ms.is_finite()) {
            bail!("p99_allowance_ms must be 0 or more, not {}", self.p99_allowance_ms);
        }
        Ok(())
    }

    /// The policy a deployment's row holds (the default if none).
    pub fn of(d: &DeploymentRecord) -> Policy {
        serde_json::from_str(&d.policy).unwrap_or_default()
    }
}

/// Which version answers a request: the canary for `percent` of them. With
/// a key the choice is a hash of it, the same in every process and on
/// every request (a user stays in their arm of an A/B test); without one,
/// requests are spread evenly (a low-discrepancy sequence, so 10% is 10%
/// after a few dozen requests, not only on average).
pub fn choose(d: &DeploymentRecord, key: Option<&str>) -> Role {
    if d.canary.is_none() || d.canary_percent <= 0.0 {
        return Role::Stable;
    }
    let point = match key {
        Some(k) => {
            let hash = blake3::hash(k.as_bytes());
            u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap()) as f64 / u64::MAX as f64
        }
        None => {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            // The golden ratio's fractional part: the Weyl sequence with
            // the most even spread.
            (n as f64 * 0.618_033_988_749_895).fract()
        }
    };
    if point * 100.0 < d.canary_percent { Role::Canary } else { Role::Stable }
}

/// `d` as seen by the version in `role`: the same settings, that version.
pub fn as_role(d: &DeploymentRecord, role: Role) -> Option<DeploymentRecord> {
    let target = match role {
        Role::Stable => return Some(d.clone()),
        Role::Canary => d.canary.as_ref()?,
        Role::Shadow => d.shadow.as_ref()?,
    };
    Some(DeploymentRecord { model_name: target.model_name.clone(), version: target.version, ..d.clone() })
}

async fn resolve_target(app: &App, model_ref: &str) -> Result<Target> {
    let (model, reference, _) = super::parse_model_ref(model_ref)?;
    let version = super::servable_version(app, registry::resolve(&app.store, &model, &reference).await?).await?;
    super::servable(app, &version).await?;
    Ok(Target { model_name: model, version: version.version })
}

/// Start a canary: `model_ref` takes `percent` of `name`'s traffic.
pub async fn start_canary(app: &App, name: &str, model_ref: &str, percent: f64, policy: &Policy) -> Result<DeploymentRecord> {
    if !(percent > 0.0 && percent <= 100.0) {
        bail!("--percent must be more than 0 and at most 100, not {percent}");
    }
    policy.check()?;
    let current = app.store.deployment(name).await?;
    let target = resolve_target(app, model_ref).await?;
    if target == current.stable() {
        bail!("deployment `{name}` already serves {} version {}: a canary must be another version", target.model_name, target.version);
    }
    let reason = format!("{percent}% of requests to {} version {}", target.model_name, target.version);
    let change = RolloutChange::StartCanary { target, percent, policy: serde_json::to_string(policy)? };
    let d = app.store.change_rollout(name, None, &change, &reason).await?.ok_or_else(|| anyhow!("deployment `{name}` changed meanwhile"))?;
    app.store.prune_rollout_stats(name, d.rollout).await?;
    Ok(d)
}

/// Mirror every request of `name` to `model_ref`, or stop (`None`).
pub async fn set_shadow(app: &App, name: &str, model_ref: Option<&str>) -> Result<DeploymentRecord> {
    let target = match model_ref {
        Some(r) => Some(resolve_target(app, r).await?),
        None => None,
    };
    let reason = match &target {
        Some(t) => format!("every request mirrored to {} version {}; its answers are recorded, not returned", t.model_name, t.version),
        None => "mirroring stopped".into(),
    };
    app.store.change_rollout(name, None, &RolloutChange::Shadow(target), &reason).await?.ok_or_else(|| anyhow!("deployment `{name}` changed"))
}

/// Make the canary of rollout `rollout` the stable version: the alias or
/// stage the deployment follows moves to it. `None`: nothing to promote
/// (no canary, or another process decided first).
pub async fn promote(app: &App, name: &str, rollout: Option<i64>, reason: &str) -> Result<Option<DeploymentRecord>> {
    let current = app.store.deployment(name).await?;
    let Some(canary) = current.canary.clone() else { return Ok(None) };
    let follows = (canary.model_name == current.model_name)
        .then(|| super::parse_model_ref(&format!("{}@{}", current.model_name, current.model_ref)).ok().map(|(_, r, _)| r))
        .flatten();
    let model_ref = match &follows {
        Some(VersionRef::Alias(_) | VersionRef::Stage(_)) => current.model_ref.clone(),
        _ => canary.version.to_string(),
    };
    let change = RolloutChange::Promote { model_ref };
    let Some(d) = app.store.change_rollout(name, Some(rollout.unwrap_or(current.rollout)), &change, reason).await? else {
        return Ok(None);
    };
    match follows {
        Some(VersionRef::Alias(alias)) => app.store.set_alias(&canary.model_name, &alias, canary.version).await?,
        Some(VersionRef::Stage(stage)) => {
            app.store.transition_stage(&canary.model_name, canary.version, stage, true).await?;
        }
        _ => {}
    }
    tracing::info!(deployment = name, version = canary.version, "canary promoted: {reason}");
    Ok(Some(d))
}

/// Stop the canary of rollout `rollout` (any, if `None`); its traffic
/// returns to the stable version.
pub async fn roll_back(app: &App, name: &str, rollout: Option<i64>, reason: &str) -> Result<Option<DeploymentRecord>> {
    let d = app.store.change_rollout(name, rollout, &RolloutChange::RollBack, reason).await?;
    if d.is_some() {
        tracing::warn!(deployment = name, "canary rolled back: {reason}");
    }
    Ok(d)
}

/// What the policy makes of a rollout's counts so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Wait,
    Promote(String),
    RollBack(String),
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2} ms")).unwrap_or_else(|| "none".into())
}

/// Judge `canary` against `stable`, `elapsed` after the rollout began.
pub fn judge(policy: &Policy, stable: &Counts, canary: &Counts, elapsed: Duration) -> Verdict {
    let by_count = policy.after_requests > 0 && canary.requests >= policy.after_requests;
    let by_time = policy.after_ms.is_some_and(|t| elapsed >= Duration::from_millis(t)) && canary.requests > 0;
    if !(by_count || by_time) {
        return Verdict::Wait;
    }
    let (c_rate, s_rate) = (canary.error_rate(), stable.error_rate());
    let rates = format!("error rate {c_rate:.4} vs stable {s_rate:.4}");
    let latency = format!("p99 {} vs stable {}", ms(canary.p99_ms()), ms(stable.p99_ms()));
    let seen = format!("after {} canary and {} stable requests", canary.requests, stable.requests);
    if c_rate > s_rate + policy.max_error_rate_increase {
        return Verdict::RollBack(format!("{seen}: {rates}, more than {} above", policy.max_error_rate_increase));
    }
    if let (Some(c), Some(s)) = (canary.p99_ms(), stable.p99_ms())
        && c > s * policy.max_p99_ratio + policy.p99_allowance_ms
    {
        return Verdict::RollBack(format!("{seen}: {latency}, above {}× + {} ms", policy.max_p99_ratio, policy.p99_allowance_ms));
    }
    Verdict::Promote(format!("{seen}: {rates}, {latency}"))
}

/// One round of a serving process's rollout work: flush this process's
/// counts, judge every automatic canary, and let go of the pools of
/// versions no deployment serves any more.
pub async fn tick(app: &App) -> Result<()> {
    app.rollout_stats.flush(&app.store).await?;
    let deployments = app.store.deployments().await?;
    app.pools.retain(&deployments);
    for d in deployments.iter().filter(|d| d.canary.is_some()) {
        let policy = Policy::of(d);
        if !policy.auto {
            continue;
        }
        let rows = app.store.rollout_stats(&d.name, d.rollout).await?;
        let stable = Counts::sum(&rows, Role::Stable);
        let canary = Counts::sum(&rows, Role::Canary);
        let elapsed = Duration::from_millis((crate::store::now_ms() - d.rollout_started_at.unwrap_or(0)).max(0) as u64);
        match judge(&policy, &stable, &canary, elapsed) {
            Verdict::Wait => {}
            Verdict::Promote(reason) => {
                promote(app, &d.name, Some(d.rollout), &reason).await?;
            }
            Verdict::RollBack(reason) => {
                roll_back(app, &d.name, Some(d.rollout), &reason).await?;
            }
        }
    }
    Ok(())
}

/// [`tick`] every [`TICK`] until `shutdown` says stop.
pub async fn supervise(app: App, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = tick(&app).await {
            tracing::warn!("rollouts: {e:#}");
        }
    }
    // What was served since the last round still counts.
    let _ = app.rollout_stats.flush(&app.store).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(requests: u64, errors: u64, latency_ms: u64) -> Counts {
        let mut c = Counts { requests, errors, ..Default::default() };
        for _ in 0..requests {
            c.latency.record(Duration::from_millis(latency_ms));
        }
        c
    }

    #[test]
    fn a_canary_is_judged_on_its_error_rate_and_p99_once_it_has_enough_requests() {
        let p = Policy { after_requests: 100, ..Policy::default() };
        let stable = counts(1000, 0, 2);
        assert_eq!(judge(&p, &stable, &counts(99, 0, 2), Duration::ZERO), Verdict::Wait);
        assert!(matches!(judge(&p, &stable, &counts(100, 0, 2), Duration::ZERO), Verdict::Promote(_)));
        let Verdict::RollBack(why) = judge(&p, &stable, &counts(100, 2, 2), Duration::ZERO) else { panic!() };
        assert!(why.contains("error rate 0.0200 vs stable 0.0000"), "{why}");
        let Verdict::RollBack(why) = judge(&p, &stable, &counts(100, 0, 6), Duration::ZERO) else { panic!() };
        assert!(why.contains("p99"), "{why}");
        // Within the ratio plus the allowance is fine.
        assert!(matches!(judge(&p, &stable, &counts(100, 0, 3), Duration::ZERO), Verdict::Promote(_)));
        // By time: only once it has answered something.
        let timed = Policy { after_requests: 0, after_ms: Some(1000), ..Policy::default() };
        assert_eq!(judge(&timed, &stable, &counts(0, 0, 2), Duration::from_secs(5)), Verdict::Wait);
        assert!(matches!(judge(&timed, &stable, &counts(3, 0, 2), Duration::from_secs(5)), Verdict::Promote(_)));
        assert!(Policy { after_requests: 0, ..Policy::default() }.check().is_err());
        assert!(Policy { max_p99_ratio: 0.5, ..Policy::default() }.check().is_err());
    }

    #[test]
    fn traffic_splits_by_percent_and_a_request_key_always_lands_in_the_same_arm() {
        let mut d = DeploymentRecord::new("web", "m", "1", 1, 1);
        assert_eq!(choose(&d, None), Role::Stable);
        d.canary = Some(Target { model_name: "m".into(), version: 2 });
        d.canary_percent = 10.0;
        let canaries = (0..1000).filter(|_| choose(&d, None) == Role::Canary).count();
        assert!((95..=105).contains(&canaries), "{canaries} of 1000");
        let keyed: Vec<Role> = (0..200).map(|i| choose(&d, Some(&format!("user-{i}")))).collect();
        assert_eq!(keyed, (0..200).map(|i| choose(&d, Some(&format!("user-{i}")))).collect::<Vec<_>>());
        let share = keyed.iter().filter(|r| **r == Role::Canary).count();
        assert!((8..=40).contains(&share), "{share} of 200 keys");
        d.canary_percent = 100.0;
        assert!((0..50).all(|i| choose(&d, Some(&i.to_string())) == Role::Canary));
    }
}
