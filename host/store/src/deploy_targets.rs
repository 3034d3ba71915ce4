//! Deployer plugins' side of deployments: where a deployer put one, with
//! what it was granted and what it answered; and grants made to a plugin
//! for all its deployments.

use super::deployments::{Target, record_event};
use super::{Change, Result, Store, StoreError, now_ms};
use sqlx::Row;

/// A deployment as a deployer plugin last deployed it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployTargetRecord {
    pub deployment: String,
    pub plugin_name: String,
    pub plugin_digest: String,
    /// The params object (JSON) the plugin was called with.
    pub params: String,
    /// What this deployment granted (JSON, the services' to read).
    pub grants: String,
    pub model_name: String,
    pub version: i64,
    /// What the plugin answered.
    pub status: String,
    pub endpoint: Option<String>,
    pub manifest: String,
    pub updated_at: i64,
}

const COLUMNS: &str = "deployment, plugin_name, plugin_digest, params, grants, model_name, version, status, endpoint, manifest, updated_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<DeployTargetRecord> {
    Ok(DeployTargetRecord {
        deployment: r.try_get("deployment")?,
        plugin_name: r.try_get("plugin_name")?,
        plugin_digest: r.try_get("plugin_digest")?,
        params: r.try_get("params")?,
        grants: r.try_get("grants")?,
        model_name: r.try_get("model_name")?,
        version: r.try_get("version")?,
        status: r.try_get("status")?,
        endpoint: r.try_get("endpoint")?,
        manifest: r.try_get("manifest")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Store {
    /// Record what a deployer did for deployment `t.deployment` (which must
    /// exist), as an event of its history.
    pub async fn put_deploy_target(&self, t: &DeployTargetRecord, reason: &str) -> Result<DeployTargetRecord> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT name FROM deployments WHERE name = $1").bind(&t.deployment).fetch_optional(&mut *tx).await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("deployment `{}`", t.deployment)));
        }
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO deployment_targets ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (deployment) DO UPDATE SET plugin_name = $2, plugin_digest = $3, params = $4, grants = $5, \
             model_name = $6, version = $7, status = $8, endpoint = $9, manifest = $10, updated_at = $11"
        ));
        sqlx::query(sql)
            .bind(&t.deployment)
            .bind(&t.plugin_name)
            .bind(&t.plugin_digest)
            .bind(&t.params)
            .bind(&t.grants)
            .bind(&t.model_name)
            .bind(t.version)
            .bind(&t.status)
            .bind(&t.endpoint)
            .bind(&t.manifest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let about = Target { model_name: t.model_name.clone(), version: t.version };
        record_event(&mut tx, &t.deployment, "target", &about, reason, now).await?;
        tx.commit().await?;
        self.changed(Change::Deployment { name: t.deployment.clone() });
        Ok(DeployTargetRecord { updated_at: now, ..t.clone() })
    }

    /// Where deployment `name` was deployed by a plugin, if it was.
    pub async fn deploy_target(&self, name: &str) -> Result<Option<DeployTargetRecord>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM deployment_targets WHERE deployment = $1"));
        sqlx::query(sql).bind(name).fetch_optional(&self.pool).await?.as_ref().map(from_row).transpose()
    }

    /// Grant `grants` (JSON) to plugin `plugin_name` for all its
    /// deployments, replacing what it had; `None` takes them back.
    pub async fn set_plugin_grants(&self, plugin_name: &str, grants: Option<&str>) -> Result<()> {
        match grants {
            Some(g) => {
                sqlx::query(
                    "INSERT INTO plugin_grants (plugin_name, grants, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (plugin_name) DO UPDATE SET grants = $2, updated_at = $3",
                )
                .bind(plugin_name)
                .bind(g)
                .bind(now_ms())
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM plugin_grants WHERE plugin_name = $1").bind(plugin_name).execute(&self.pool).await?;
            }
        }
        Ok(())
    }

    /// What plugin `plugin_name` was granted for all its deployments (JSON).
    pub async fn plugin_grants(&self, plugin_name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT grants FROM plugin_grants WHERE plugin_name = $1").bind(plugin_name).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("grants")).transpose()?)
    }
}
