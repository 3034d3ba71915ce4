//! Deployments: a served name and the model version behind it.

use super::{Result, Store, StoreError, now_ms};
use sqlx::Row;

#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRecord {
    pub name: String,
    pub model_name: String,
    /// What was deployed, as given (`3`, `@champion`, `Production`).
    pub model_ref: String,
    /// The version `model_ref` named when it was deployed.
    pub version: i64,
    /// Warm instances to keep.
    pub instances: i64,
    /// Per-request deadline and rows per request; `None`: the defaults.
    pub timeout_ms: Option<i64>,
    pub max_rows: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "name, model_name, model_ref, version, instances, timeout_ms, max_rows, created_at, updated_at";

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
    })
}

impl Store {
    /// Create the deployment or point it at another version (the record's
    /// `created_at` and `updated_at` are ignored); its creation time stays.
    pub async fn put_deployment(&self, d: &DeploymentRecord) -> Result<DeploymentRecord> {
        let now = now_ms();
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
        .execute(&self.pool)
        .await?;
        self.deployment(&d.name).await
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

    /// The deployments serving a version of `model_name` (to refuse
    /// deleting what is being served).
    pub async fn deployments_of(&self, model_name: &str) -> Result<Vec<DeploymentRecord>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM deployments WHERE model_name = $1 ORDER BY name"));
        sqlx::query(sql).bind(model_name).fetch_all(&self.pool).await?.iter().map(from_row).collect()
    }

    pub async fn delete_deployment(&self, name: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM deployments WHERE name = $1").bind(name).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("deployment `{name}`")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::DeploymentRecord;
    use crate::testing::both_backends;

    both_backends!(a_deployment_is_created_repointed_and_deleted, |store| {
        let d = |model_ref: &str, version, instances| DeploymentRecord {
            name: "web".into(),
            model_name: "m".into(),
            model_ref: model_ref.into(),
            version,
            instances,
            timeout_ms: None,
            max_rows: Some(10),
            created_at: 0,
            updated_at: 0,
        };
        let first = store.put_deployment(&d("1", 1, 2)).await.unwrap();
        let moved = store.put_deployment(&d("@champion", 3, 4)).await.unwrap();
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
    });
}
