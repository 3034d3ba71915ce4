//! Registered plugins.

use super::{Change, Result, Store, StoreError};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct PluginRecord {
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    pub name: String,
    pub version: String,
    pub kind: String,
    pub wit_version: String,
    pub summary: String,
    /// JSON Schema text.
    pub params_schema: String,
    pub imports: Vec<String>,
    /// Blob id of the component bytes.
    pub blob: String,
    pub size: i64,
    pub bundled: bool,
    pub timeout_ms: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub created_at: i64,
}

const COLUMNS: &str = "digest, name, version, kind, wit_version, summary, params_schema, imports, blob, size, bundled, \
                       timeout_ms, memory_bytes, created_at";

impl Store {
    /// Register a plugin. Registering the same bytes again is a no-op;
    /// other bytes under a name@version already taken are refused.
    pub async fn insert_plugin(&self, p: &PluginRecord) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT digest FROM plugins WHERE name = $1 AND version = $2")
            .bind(&p.name)
            .bind(&p.version)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = taken {
            let digest: String = row.try_get("digest")?;
            if digest == p.digest {
                return Ok(false);
            }
            return Err(StoreError::Conflict(format!(
                "{}@{} is already registered with other bytes ({digest}); bump the plugin's version, \
                 or remove the old one with `kiln plugin remove {}@{}`",
                p.name, p.version, p.name, p.version
            )));
        }
        if sqlx::query("SELECT digest FROM plugins WHERE digest = $1").bind(&p.digest).fetch_optional(&mut *tx).await?.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO plugins (digest, name, version, kind, wit_version, summary, params_schema, imports, blob, size, \
             bundled, timeout_ms, memory_bytes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&p.digest)
        .bind(&p.name)
        .bind(&p.version)
        .bind(&p.kind)
        .bind(&p.wit_version)
        .bind(&p.summary)
        .bind(&p.params_schema)
        .bind(serde_json::to_string(&p.imports).unwrap())
        .bind(&p.blob)
        .bind(p.size)
        .bind(p.bundled as i64)
        .bind(p.timeout_ms)
        .bind(p.memory_bytes)
        .bind(p.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.changed(Change::Plugin { digest: p.digest.clone() });
        Ok(true)
    }

    pub async fn list_plugins(&self) -> Result<Vec<PluginRecord>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM plugins ORDER BY name, created_at"));
        sqlx::query(sql).fetch_all(&self.pool).await?.iter().map(from_row).collect()
    }

    pub async fn plugins_named(&self, name: &str) -> Result<Vec<PluginRecord>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM plugins WHERE name = $1 ORDER BY created_at"));
        sqlx::query(sql).bind(name).fetch_all(&self.pool).await?.iter().map(from_row).collect()
    }

    pub async fn plugin_by_digest(&self, digest: &str) -> Result<Option<PluginRecord>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM plugins WHERE digest = $1"));
        sqlx::query(sql).bind(digest).fetch_optional(&self.pool).await?.as_ref().map(from_row).transpose()
    }

    /// Give a registered plugin another version string (used to retire a
    /// bundled plugin a newer kiln replaced).
    pub async fn set_plugin_version(&self, digest: &str, version: &str) -> Result<()> {
        sqlx::query("UPDATE plugins SET version = $1 WHERE digest = $2").bind(version).bind(digest).execute(&self.pool).await?;
        self.changed(Change::Plugin { digest: digest.into() });
        Ok(())
    }

    /// Remove a plugin that no run or model version references.
    pub async fn delete_plugin(&self, digest: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let used = sqlx::query(
            "SELECT run_id AS who FROM stage_runs WHERE plugin_digest = $1 \
             UNION ALL SELECT name AS who FROM model_versions WHERE plugin_digest = $1 LIMIT 1",
        )
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = used {
            let who: String = row.try_get("who")?;
            return Err(StoreError::Conflict(format!("the plugin is still referenced (by run or model `{who}`); delete those first")));
        }
        let done = sqlx::query("DELETE FROM plugins WHERE digest = $1").bind(digest).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("plugin {digest}")));
        }
        tx.commit().await?;
        self.changed(Change::Plugin { digest: digest.into() });
        Ok(())
    }
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<PluginRecord> {
    let imports: String = r.try_get("imports")?;
    let bundled: i64 = r.try_get("bundled")?;
    Ok(PluginRecord {
        digest: r.try_get("digest")?,
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        kind: r.try_get("kind")?,
        wit_version: r.try_get("wit_version")?,
        summary: r.try_get("summary")?,
        params_schema: r.try_get("params_schema")?,
        imports: serde_json::from_str(&imports).unwrap_or_default(),
        blob: r.try_get("blob")?,
        size: r.try_get("size")?,
        bundled: bundled != 0,
        timeout_ms: r.try_get("timeout_ms")?,
        memory_bytes: r.try_get("memory_bytes")?,
        created_at: r.try_get("created_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::both_backends;

    fn record(digest: &str, version: &str) -> PluginRecord {
        PluginRecord {
            digest: digest.into(),
            name: "p".into(),
            version: version.into(),
            kind: "trainer".into(),
            wit_version: "0.1.0".into(),
            summary: "s".into(),
            params_schema: "{}".into(),
            imports: vec!["kiln:plugin/host@0.1.0".into()],
            blob: "b".into(),
            size: 1,
            bundled: false,
            timeout_ms: None,
            memory_bytes: Some(1 << 20),
            created_at: 1,
        }
    }

    both_backends!(register_conflict_and_remove, |store| {
        assert!(store.insert_plugin(&record("sha256:a", "1.0.0")).await.unwrap());
        assert!(!store.insert_plugin(&record("sha256:a", "1.0.0")).await.unwrap(), "same bytes: no-op");
        let err = store.insert_plugin(&record("sha256:b", "1.0.0")).await.unwrap_err();
        assert!(err.to_string().contains("p@1.0.0 is already registered"), "{err}");
        assert!(store.insert_plugin(&record("sha256:b", "1.1.0")).await.unwrap());
        assert_eq!(store.plugins_named("p").await.unwrap().len(), 2);
        let got = store.plugin_by_digest("sha256:a").await.unwrap().unwrap();
        assert_eq!(got.imports, vec!["kiln:plugin/host@0.1.0".to_string()]);
        assert_eq!(got.memory_bytes, Some(1 << 20));

        let run = store.create_run(crate::NewRun { experiment: "e".into(), name: "r".into(), parent: None, source: "t".into() }).await.unwrap();
        let stage = crate::StageRecord {
            stage: "train".into(),
            status: crate::StageState::Ran,
            plugin_digest: Some("sha256:a".into()),
            cache_key: None,
            started_at: Some(1),
            ended_at: Some(2),
            peak_memory: None,
            attempts: 1,
            error: None,
            outputs: "{}".into(),
        };
        store.upsert_stage(&run, &stage).await.unwrap();
        let err = store.delete_plugin("sha256:a").await.unwrap_err();
        assert!(err.to_string().contains("still referenced"), "{err}");
        store.delete_plugin("sha256:b").await.unwrap();
        assert_eq!(store.plugins_named("p").await.unwrap().len(), 1);
    });
}
