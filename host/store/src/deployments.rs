//! Deployments: a served name, the model version behind it (the stable
//! one), and the rollout in progress: a canary taking a share of the
//! traffic, a shadow mirroring it. Every change is an event with its
//! reason, written in the same transaction as the change.

use super::{Change, Result, Store, StoreError, now_ms};
use sqlx::Row;

/// A model version a deployment serves in some role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub model_name: String,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRecord {
    pub name: String,
    pub model_name: String,
    /// What was deployed, as given (`3`, `@champion`, `Production`).
    pub model_ref: String,
    /// The version `model_ref` named when it was deployed.
    pub version: i64,
    /// Warm instances to keep (per version served).
    pub instances: i64,
    /// Per-request deadline and rows per request; `None`: the defaults.
    pub timeout_ms: Option<i64>,
    pub max_rows: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The version taking `canary_percent` of the traffic, if a rollout runs.
    pub canary: Option<Target>,
    pub canary_percent: f64,
    /// The version every request is mirrored to; its answers are recorded,
    /// never returned.
    pub shadow: Option<Target>,
    /// The canary's promotion policy (JSON, the services' to read).
    pub policy: String,
    /// Rollouts this deployment has had; the current one's number.
    pub rollout: i64,
    pub rollout_started_at: Option<i64>,
}

impl DeploymentRecord {
    /// A new deployment of `model_name` version `version`, no rollout.
    pub fn new(name: &str, model_name: &str, model_ref: &str, version: i64, instances: i64) -> Self {
        DeploymentRecord {
            name: name.into(),
            model_name: model_name.into(),
            model_ref: model_ref.into(),
            version,
            instances,
            timeout_ms: None,
            max_rows: None,
            created_at: 0,
            updated_at: 0,
            canary: None,
            canary_percent: 0.0,
            shadow: None,
            policy: String::new(),
            rollout: 0,
            rollout_started_at: None,
        }
    }

    pub fn stable(&self) -> Target {
        Target { model_name: self.model_name.clone(), version: self.version }
    }
}

/// A change to a deployment's rollout.
#[derive(Debug, Clone)]
pub enum RolloutChange {
    /// Start rollout `rollout + 1`: `target` takes `percent` of the traffic.
    StartCanary { target: Target, percent: f64, policy: String },
    /// The canary becomes the stable version, deployed as `model_ref`.
    Promote { model_ref: String },
    /// The canary stops taking traffic.
    RollBack,
    /// Mirror to `Some(target)`, or stop mirroring.
    Shadow(Option<Target>),
}

/// One entry of a deployment's history.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentEvent {
    pub deployment: String,
    pub seq: i64,
    pub at: i64,
    /// `deploy`, `canary`, `promote`, `rollback`, `shadow`, `unshadow`, `delete`.
    pub action: String,
    /// The version the action is about.
    pub model_name: String,
    pub version: i64,
    pub reason: String,
}

/// What one serving process counted for one role of a rollout since it
/// began; the store keeps the latest count per process.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutStat {
    pub deployment: String,
    pub rollout: i64,
    /// `stable`, `canary` or `shadow`.
    pub role: String,
    pub version: i64,
    pub requests: i64,
    /// Requests the version failed (not the client's mistakes).
    pub errors: i64,
    /// Shadow only: requests it answered as the returned answer did.
    pub agreed: i64,
    /// The latency histogram, encoded by the services.
    pub latency: String,
}

const COLUMNS: &str = "name, model_name, model_ref, version, instances, timeout_ms, max_rows, created_at, updated_at, \
                       canary_model, canary_version, canary_percent, shadow_model, shadow_version, policy, rollout, rollout_started_at";

fn target(r: &sqlx::any::AnyRow, model: &str, version: &str) -> Result<Option<Target>> {
    let model: Option<String> = r.try_get(model)?;
    let version: Option<i64> = r.try_get(version)?;
    Ok(model.zip(version).map(|(model_name, version)| Target { model_name, version }))
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<DeploymentRecord> {
    Ok(DeploymentRecord {
        name: r.try_get("name")?,
        model_name: r.try_get("model_name")?,
        model_ref: r.try_get("model_ref")?,
        version: r.try_get("version")?,
        instances: r.try_get("instances")?,
        timeout_ms: r.try_get("timeout_ms")?,
        max_rows: r.try_get("max_rows")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        canary: target(r, "canary_model", "canary_version")?,
        canary_percent: r.try_get::<Option<f64>, _>("canary_percent")?.unwrap_or(0.0),
        shadow: target(r, "shadow_model", "shadow_version")?,
        policy: r.try_get("policy")?,
        rollout: r.try_get("rollout")?,
        rollout_started_at: r.try_get("rollout_started_at")?,
    })
}

/// Append an event to `deployment`'s history; the caller's transaction
/// holds the deployment's row, which orders the sequence numbers.
pub(crate) async fn record_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    deployment: &str,
    action: &str,
    target: &Target,
    reason: &str,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO deployment_events (deployment, seq, at, action, model_name, version, reason) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6 FROM deployment_events WHERE deployment = $1",
    )
    .bind(deployment)
    .bind(at)
    .bind(action)
    .bind(&target.model_name)
    .bind(target.version)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Create the deployment or point its stable version elsewhere (the
    /// record's times and rollout fields are ignored: a running canary or
    /// shadow stays); its creation time stays.
    pub async fn put_deployment(&self, d: &DeploymentRecord, reason: &str) -> Result<DeploymentRecord> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO deployments (name, model_name, model_ref, version, instances, timeout_ms, max_rows, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (name) DO UPDATE SET model_name = $2, model_ref = $3, version = $4, instances = $5, \
             timeout_ms = $6, max_rows = $7, updated_at = $8",
        )
        .bind(&d.name)
        .bind(&d.model_name)
        .bind(&d.model_ref)
        .bind(d.version)
        .bind(d.instances)
        .bind(d.timeout_ms)
        .bind(d.max_rows)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        record_event(&mut tx, &d.name, "deploy", &d.stable(), reason, now).await?;
        tx.commit().await?;
        self.changed(Change::Deployment { name: d.name.clone() });
        self.deployment(&d.name).await
    }

    /// Apply `change` to deployment `name` if its rollout is still
    /// `expected` (when given; for promotion and rollback also only while
    /// a canary runs), recording `reason`. `None`: the deployment moved on
    /// (another process decided first), nothing was changed.
    pub async fn change_rollout(&self, name: &str, expected: Option<i64>, change: &RolloutChange, reason: &str) -> Result<Option<DeploymentRecord>> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        // Take the row's lock first (PostgreSQL); SQLite's write lock is
        // already held by BEGIN IMMEDIATE.
        let for_update = if self.backend == super::Backend::Postgres { " FOR UPDATE" } else { "" };
        let lock = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM deployments WHERE name = $1{for_update}"));
        let Some(row) = sqlx::query(lock).bind(name).fetch_optional(&mut *tx).await? else {
            return Err(StoreError::NotFound(format!("deployment `{name}`")));
        };
        let current = from_row(&row)?;
        let needs_canary = matches!(change, RolloutChange::Promote { .. } | RolloutChange::RollBack);
        if expected.is_some_and(|r| r != current.rollout) || (needs_canary && current.canary.is_none()) {
            return Ok(None);
        }
        let (action, about) = match change {
            RolloutChange::StartCanary { target, percent, policy } => {
                sqlx::query(
                    "UPDATE deployments SET canary_model = $2, canary_version = $3, canary_percent = $4, policy = $5, \
                     rollout = rollout + 1, rollout_started_at = $6, updated_at = $6 WHERE name = $1",
                )
                .bind(name)
                .bind(&target.model_name)
                .bind(target.version)
                .bind(*percent)
                .bind(policy)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                ("canary", target.clone())
            }
            RolloutChange::Promote { model_ref } => {
                let canary = current.canary.clone().expect("checked above");
                sqlx::query(
                    "UPDATE deployments SET model_name = canary_model, version = canary_version, model_ref = $2, \
                     canary_model = NULL, canary_version = NULL, canary_percent = NULL, policy = '', updated_at = $3 WHERE name = $1",
                )
                .bind(name)
                .bind(model_ref)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                ("promote", canary)
            }
            RolloutChange::RollBack => {
                let canary = current.canary.clone().expect("checked above");
                sqlx::query(
                    "UPDATE deployments SET canary_model = NULL, canary_version = NULL, canary_percent = NULL, policy = '', \
                     updated_at = $2 WHERE name = $1",
                )
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                ("rollback", canary)
            }
            RolloutChange::Shadow(target) => {
                sqlx::query("UPDATE deployments SET shadow_model = $2, shadow_version = $3, updated_at = $4 WHERE name = $1")
                    .bind(name)
                    .bind(target.as_ref().map(|t| t.model_name.clone()))
                    .bind(target.as_ref().map(|t| t.version))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                match (target, &current.shadow) {
                    (Some(t), _) => ("shadow", t.clone()),
                    (None, Some(old)) => ("unshadow", old.clone()),
                    (None, None) => return Ok(Some(current)),
                }
            }
        };
        record_event(&mut tx, name, action, &about, reason, now).await?;
        tx.commit().await?;
        self.changed(Change::Deployment { name: name.into() });
        Ok(Some(self.deployment(name).await?))
    }

    pub async fn deployment(&self, name: &str) -> Result<DeploymentRecord> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM deployments WHERE name = $1"));
        let row = sqlx::query(sql).bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()?.ok_or_else(|| StoreError::NotFound(format!("deployment `{name}`")))
    }

    pub async fn deployments(&self) -> Result<Vec<DeploymentRecord>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM deployments ORDER BY name"));
        sqlx::query(sql).fetch_all(&self.pool).await?.iter().map(from_row).collect()
    }

    /// The deployments serving a version of `model_name` in any role (to
    /// refuse deleting what is being served).
    pub async fn deployments_of(&self, model_name: &str) -> Result<Vec<DeploymentRecord>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deployments WHERE model_name = $1 OR canary_model = $1 OR shadow_model = $1 ORDER BY name"
        ));
        sqlx::query(sql).bind(model_name).fetch_all(&self.pool).await?.iter().map(from_row).collect()
    }

    /// Delete the deployment and its counters; its history stays.
    pub async fn delete_deployment(&self, name: &str) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM deployments WHERE name = $1"));
        let Some(row) = sqlx::query(sql).bind(name).fetch_optional(&mut *tx).await? else {
            return Err(StoreError::NotFound(format!("deployment `{name}`")));
        };
        let current = from_row(&row)?;
        sqlx::query("DELETE FROM deployments WHERE name = $1").bind(name).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM rollout_stats WHERE deployment = $1").bind(name).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM deployment_targets WHERE deployment = $1").bind(name).execute(&mut *tx).await?;
        record_event(&mut tx, name, "delete", &current.stable(), "deleted", now).await?;
        tx.commit().await?;
        self.changed(Change::Deployment { name: name.into() });
        Ok(())
    }

    /// `name`'s history, oldest first (also after it was deleted).
    pub async fn deployment_events(&self, name: &str) -> Result<Vec<DeploymentEvent>> {
        let rows =
            sqlx::query("SELECT deployment, seq, at, action, model_name, version, reason FROM deployment_events WHERE deployment = $1 ORDER BY seq")
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(DeploymentEvent {
                    deployment: r.try_get("deployment")?,
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    action: r.try_get("action")?,
                    model_name: r.try_get("model_name")?,
                    version: r.try_get("version")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }

    /// Replace what `process` counted, one row per role and version.
    pub async fn put_rollout_stats(&self, process: &str, stats: &[RolloutStat]) -> Result<()> {
        if stats.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        for s in stats {
            sqlx::query(
                "INSERT INTO rollout_stats (deployment, rollout, role, process, version, requests, errors, agreed, latency, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (deployment, rollout, role, process) DO UPDATE SET version = $5, requests = $6, errors = $7, \
                 agreed = $8, latency = $9, updated_at = $10",
            )
            .bind(&s.deployment)
            .bind(s.rollout)
            .bind(&s.role)
            .bind(process)
            .bind(s.version)
            .bind(s.requests)
            .bind(s.errors)
            .bind(s.agreed)
            .bind(&s.latency)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every process's counts for rollout `rollout` of `deployment`.
    pub async fn rollout_stats(&self, deployment: &str, rollout: i64) -> Result<Vec<RolloutStat>> {
        let rows = sqlx::query(
            "SELECT deployment, rollout, role, version, requests, errors, agreed, latency FROM rollout_stats \
             WHERE deployment = $1 AND rollout = $2 ORDER BY role, process",
        )
        .bind(deployment)
        .bind(rollout)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RolloutStat {
                    deployment: r.try_get("deployment")?,
                    rollout: r.try_get("rollout")?,
                    role: r.try_get("role")?,
                    version: r.try_get("version")?,
                    requests: r.try_get("requests")?,
                    errors: r.try_get("errors")?,
                    agreed: r.try_get("agreed")?,
                    latency: r.try_get("latency")?,
                })
            })
            .collect()
    }

    /// Forget the counts of rollouts before `rollout` (the current and the
    /// one before stay, for `show`).
    pub async fn prune_rollout_stats(&self, deployment: &str, rollout: i64) -> Result<()> {
        sqlx::query("DELETE FROM rollout_stats WHERE deployment = $1 AND rollout < $2")
            .bind(deployment)
            .bind(rollout - 1)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::both_backends;
    use crate::{DeploymentRecord, RolloutChange, RolloutStat, Target};

    both_backends!(a_deployment_is_created_repointed_and_deleted, |store| {
        let d = |model_ref: &str, version, instances| DeploymentRecord {
            max_rows: Some(10),
            ..DeploymentRecord::new("web", "m", model_ref, version, instances)
        };
        let first = store.put_deployment(&d("1", 1, 2), "first").await.unwrap();
        let moved = store.put_deployment(&d("@champion", 3, 4), "moved").await.unwrap();
        assert_eq!((moved.version, moved.model_ref.as_str(), moved.instances, moved.max_rows), (3, "@champion", 4, Some(10)));
        assert_eq!(moved.created_at, first.created_at);
        assert_eq!(store.deployments().await.unwrap(), std::slice::from_ref(&moved));
        assert_eq!(store.deployments_of("m").await.unwrap().len(), 1);
        // What is served is not deleted; a rename carries the deployment.
        store.create_model("m", "").await.unwrap();
        for _ in 0..3 {
            store.create_version("m", "s3://b/m", None, "").await.unwrap();
        }
        let refused = store.delete_version("m", 3).await.unwrap_err().to_string();
        assert!(refused.contains("served by deployment `web`"), "{refused}");
        assert!(store.delete_model("m").await.is_err());
        store.delete_version("m", 2).await.unwrap();
        store.rename_model("m", "m2").await.unwrap();
        assert_eq!(store.deployment("web").await.unwrap().model_name, "m2");
        store.delete_deployment("web").await.unwrap();
        assert!(store.deployment("web").await.is_err());
        assert!(store.delete_deployment("web").await.is_err());
        let history: Vec<(String, i64, String)> =
            store.deployment_events("web").await.unwrap().into_iter().map(|e| (e.action, e.version, e.reason)).collect();
        assert_eq!(history, [("deploy".into(), 1, "first".into()), ("deploy".into(), 3, "moved".into()), ("delete".into(), 3, "deleted".into())]);
    });

    both_backends!(a_rollout_is_decided_once_and_its_counts_are_kept_per_process, |store| {
        store.create_model("m", "").await.unwrap();
        for _ in 0..3 {
            store.create_version("m", "s3://b/m", None, "").await.unwrap();
        }
        store.put_deployment(&DeploymentRecord::new("web", "m", "@champion", 1, 1), "first").await.unwrap();
        let t = |version| Target { model_name: "m".into(), version };
        let start = RolloutChange::StartCanary { target: t(2), percent: 10.0, policy: "{}".into() };
        let d = store.change_rollout("web", None, &start, "try 2").await.unwrap().unwrap();
        assert_eq!((d.canary.clone(), d.canary_percent, d.rollout), (Some(t(2)), 10.0, 1));
        // The canary and the shadow are served: neither is deleted.
        let refused = store.delete_version("m", 2).await.unwrap_err().to_string();
        assert!(refused.contains("served by deployment `web`"), "{refused}");
        store.change_rollout("web", None, &RolloutChange::Shadow(Some(t(3))), "mirror 3").await.unwrap().unwrap();
        assert!(store.delete_version("m", 3).await.is_err());

        // Two processes judging the same rollout: the first decision wins.
        let promote = RolloutChange::Promote { model_ref: "@champion".into() };
        let won = store.change_rollout("web", Some(1), &promote, "healthy").await.unwrap().unwrap();
        assert_eq!((won.version, won.canary.clone(), won.model_ref.as_str()), (2, None, "@champion"));
        assert!(store.change_rollout("web", Some(1), &RolloutChange::RollBack, "late").await.unwrap().is_none());
        // A decision about an old rollout does not touch the next one.
        store.change_rollout("web", None, &RolloutChange::StartCanary { target: t(1), percent: 50.0, policy: "{}".into() }, "again").await.unwrap();
        assert!(store.change_rollout("web", Some(1), &RolloutChange::RollBack, "stale").await.unwrap().is_none());
        let back = store.change_rollout("web", Some(2), &RolloutChange::RollBack, "errors").await.unwrap().unwrap();
        assert_eq!((back.version, back.canary, back.rollout), (2, None, 2));
        let actions: Vec<String> = store.deployment_events("web").await.unwrap().into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["deploy", "canary", "shadow", "promote", "canary", "rollback"]);

        let stat = |role: &str, requests| RolloutStat {
            deployment: "web".into(),
            rollout: 2,
            role: role.into(),
            version: 2,
            requests,
            errors: 0,
            agreed: 0,
            latency: "3:1".into(),
        };
        store.put_rollout_stats("p1", &[stat("stable", 5), stat("canary", 1)]).await.unwrap();
        store.put_rollout_stats("p1", &[stat("stable", 9)]).await.unwrap();
        store.put_rollout_stats("p2", &[stat("stable", 4)]).await.unwrap();
        let kept: Vec<(String, i64)> = store.rollout_stats("web", 2).await.unwrap().into_iter().map(|s| (s.role, s.requests)).collect();
        assert_eq!(kept, [("canary".into(), 1), ("stable".into(), 9), ("stable".into(), 4)]);
        store.prune_rollout_stats("web", 4).await.unwrap();
        assert!(store.rollout_stats("web", 2).await.unwrap().is_empty());
    });
}
