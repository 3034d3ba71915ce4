//! The model registry: registered models, numbered versions, stages and
//! aliases.

use super::{Change, Result, Store, StoreError, now_ms};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct ModelRecord {
    pub name: String,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct VersionRecord {
    pub name: String,
    pub version: i64,
    /// The run behind the version: one of this server's, or (from
    /// MLflow's API) one that lives elsewhere.
    pub run_id: Option<String>,
    pub source: String,
    /// MLflow 3's logged model the version was made from (`m-…`), or empty.
    pub model_id: String,
    pub stage: String,
    pub description: String,
    /// A model a Kiln trainer made: its bytes (a blob id) and the digest of
    /// the plugin that loads them. Empty for versions made through
    /// MLflow's API, whose files are at `source`.
    pub blob: String,
    pub plugin_digest: String,
    /// The input the model was trained on, as JSON (`{"inputs": [...]}`),
    /// `{}` when unknown.
    pub signature: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// MLflow's stages.
pub const STAGES: &[&str] = &["None", "Staging", "Production", "Archived"];

fn version_from_row(r: &sqlx::any::AnyRow) -> Result<VersionRecord> {
    Ok(VersionRecord {
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        run_id: match r.try_get::<Option<String>, _>("run_id")? {
            Some(id) => Some(id),
            None => Some(r.try_get::<String, _>("external_run_id")?).filter(|id| !id.is_empty()),
        },
        source: r.try_get("source")?,
        model_id: r.try_get("model_id")?,
        stage: r.try_get("stage")?,
        description: r.try_get("description")?,
        blob: r.try_get("blob")?,
        plugin_digest: r.try_get("plugin_digest")?,
        signature: r.try_get("signature")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const VERSION_COLUMNS: &str =
    "name, version, run_id, external_run_id, model_id, source, stage, description, blob, plugin_digest, signature, created_at, updated_at";

/// A model (or one version of it) that a deployment serves is not
/// deleted: the endpoint would start failing with nothing to show why.
async fn refuse_if_served(tx: &mut sqlx::Transaction<'static, sqlx::Any>, name: &str, version: Option<i64>) -> Result<()> {
    // The stable version, the canary or the shadow.
    let row = sqlx::query(
        "SELECT name, version FROM deployments WHERE model_name = $1 AND ($2 < 0 OR version = $2) \
         UNION ALL SELECT name, canary_version FROM deployments WHERE canary_model = $1 AND ($2 < 0 OR canary_version = $2) \
         UNION ALL SELECT name, shadow_version FROM deployments WHERE shadow_model = $1 AND ($2 < 0 OR shadow_version = $2) \
         ORDER BY name LIMIT 1",
    )
    .bind(name)
    .bind(version.unwrap_or(-1))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(()) };
    let (deployment, served): (String, i64) = (row.try_get("name")?, row.try_get("version")?);
    Err(StoreError::Conflict(format!(
        "version {served} of model `{name}` is served by deployment `{deployment}`: point the deployment at another model or delete it first"
    )))
}

/// What a new version is made from.
#[derive(Debug, Default, Clone)]
pub struct NewVersion<'a> {
    pub source: &'a str,
    pub run_id: Option<&'a str>,
    pub description: &'a str,
    pub model_id: &'a str,
    pub tags: &'a [(String, String)],
    /// A Kiln-trained model's blob, loading plugin and signature
    /// ([`VersionRecord::blob`]); empty for MLflow's.
    pub blob: &'a str,
    pub plugin_digest: &'a str,
    pub signature: &'a str,
    /// Take this number rather than the next (a copy of a version kept
    /// elsewhere, as a bundle's); it must be above every number given.
    pub number: Option<i64>,
}

fn model_from_row(r: &sqlx::any::AnyRow) -> Result<ModelRecord> {
    Ok(ModelRecord {
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn create_model(&self, name: &str, description: &str) -> Result<ModelRecord> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO registered_models (name, description, created_at, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(description)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("Registered Model (name={name}) already exists.")));
        }
        self.changed(Change::Model { name: name.into() });
        Ok(ModelRecord { name: name.into(), description: description.into(), created_at: now, updated_at: now })
    }

    pub async fn model(&self, name: &str) -> Result<ModelRecord> {
        let r = sqlx::query("SELECT name, description, created_at, updated_at FROM registered_models WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("Registered Model with name={name}")))?;
        Ok(ModelRecord {
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }

    pub async fn list_models(&self) -> Result<Vec<ModelRecord>> {
        sqlx::query("SELECT name, description, created_at, updated_at FROM registered_models ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(model_from_row)
            .collect()
    }

    pub async fn delete_model(&self, name: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        refuse_if_served(&mut tx, name, None).await?;
        sqlx::query("DELETE FROM model_version_tags WHERE name = $1").bind(name).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM model_aliases WHERE name = $1").bind(name).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM registered_model_tags WHERE name = $1").bind(name).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM model_versions WHERE name = $1").bind(name).execute(&mut *tx).await?;
        let done = sqlx::query("DELETE FROM registered_models WHERE name = $1").bind(name).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("Registered Model with name={name}")));
        }
        tx.commit().await?;
        self.changed(Change::Model { name: name.into() });
        Ok(())
    }

    /// Add the next version of a model (1, 2, 3, ...).
    pub async fn create_version(&self, name: &str, source: &str, run_id: Option<&str>, description: &str) -> Result<VersionRecord> {
        self.create_version_from(name, &NewVersion { source, run_id, description, ..Default::default() }).await
    }

    /// Add the next version of a model, with its tags. A run id this
    /// server does not hold is kept as an external run.
    pub async fn create_version_from(&self, name: &str, new: &NewVersion<'_>) -> Result<VersionRecord> {
        let mut tx = self.begin_write().await?;
        if sqlx::query("SELECT name FROM registered_models WHERE name = $1").bind(name).fetch_optional(&mut *tx).await?.is_none() {
            return Err(StoreError::NotFound(format!("Registered Model with name={name}")));
        }
        let (local, external) = match new.run_id {
            Some(id) if sqlx::query("SELECT id FROM runs WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?.is_some() => (Some(id), ""),
            Some(id) => (None, id),
            None => (None, ""),
        };
        // The model's counter, not the highest version left: a deleted
        // version's number is not given again. The update also locks the
        // model's row, so two versions made at once get two numbers.
        match new.number {
            None => {
                sqlx::query("UPDATE registered_models SET last_version = last_version + 1 WHERE name = $1").bind(name).execute(&mut *tx).await?;
            }
            Some(n) => {
                let moved = sqlx::query("UPDATE registered_models SET last_version = $2 WHERE name = $1 AND last_version < $2")
                    .bind(name)
                    .bind(n)
                    .execute(&mut *tx)
                    .await?;
                if moved.rows_affected() == 0 {
                    return Err(StoreError::Conflict(format!("model `{name}` has given version number {n} already")));
                }
            }
        }
        let row = sqlx::query("SELECT last_version FROM registered_models WHERE name = $1").bind(name).fetch_one(&mut *tx).await?;
        let version: i64 = row.try_get("last_version")?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO model_versions (name, version, run_id, external_run_id, model_id, blob, plugin_digest, signature, stage, description, source, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'None', $9, $10, $11, $12)",
        )
        .bind(name)
        .bind(version)
        .bind(local)
        .bind(external)
        .bind(new.model_id)
        .bind(new.blob)
        .bind(new.plugin_digest)
        .bind(if new.signature.is_empty() { "{}" } else { new.signature })
        .bind(new.description)
        .bind(new.source)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (key, value) in new.tags {
            sqlx::query("INSERT INTO model_version_tags (name, version, key, value) VALUES ($1, $2, $3, $4)")
                .bind(name)
                .bind(version)
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE registered_models SET updated_at = $1 WHERE name = $2").bind(now).bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        self.changed(Change::Model { name: name.into() });
        self.version(name, version).await
    }

    pub async fn version(&self, name: &str, version: i64) -> Result<VersionRecord> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {VERSION_COLUMNS} FROM model_versions WHERE name = $1 AND version = $2"));
        let row = sqlx::query(sql).bind(name).bind(version).fetch_optional(&self.pool).await?;
        row.as_ref().map(version_from_row).transpose()?.ok_or_else(|| StoreError::NotFound(format!("Model Version (name={name}, version={version})")))
    }

    /// Give a version registered without Kiln's model (MLflow's API) the
    /// blob, loading plugin and signature that make it servable; a version
    /// that already has a model keeps it.
    pub async fn set_version_model(&self, name: &str, version: i64, blob: &str, plugin_digest: &str, signature: &str) -> Result<VersionRecord> {
        let done =
            sqlx::query("UPDATE model_versions SET blob = $3, plugin_digest = $4, signature = $5 WHERE name = $1 AND version = $2 AND blob = ''")
                .bind(name)
                .bind(version)
                .bind(blob)
                .bind(plugin_digest)
                .bind(signature)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() > 0 {
            self.changed(Change::Model { name: name.into() });
        }
        self.version(name, version).await
    }

    pub async fn versions(&self, name: &str) -> Result<Vec<VersionRecord>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {VERSION_COLUMNS} FROM model_versions WHERE name = $1 ORDER BY version"));
        sqlx::query(sql).bind(name).fetch_all(&self.pool).await?.iter().map(version_from_row).collect()
    }

    /// Move a version to a stage; optionally archive the others in it.
    pub async fn transition_stage(&self, name: &str, version: i64, stage: &str, archive_existing: bool) -> Result<VersionRecord> {
        let stage = STAGES
            .iter()
            .find(|s| s.eq_ignore_ascii_case(stage))
            .ok_or_else(|| StoreError::Conflict(format!("Invalid Model Version stage: {stage}. Value must be one of {}.", STAGES.join(", "))))?;
        self.version(name, version).await?;
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        if archive_existing && (*stage == "Staging" || *stage == "Production") {
            sqlx::query("UPDATE model_versions SET stage = 'Archived', updated_at = $1 WHERE name = $2 AND stage = $3 AND version != $4")
                .bind(now)
                .bind(name)
                .bind(*stage)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE model_versions SET stage = $1, updated_at = $2 WHERE name = $3 AND version = $4")
            .bind(*stage)
            .bind(now)
            .bind(name)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE registered_models SET updated_at = $1 WHERE name = $2").bind(now).bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        self.changed(Change::Model { name: name.into() });
        self.version(name, version).await
    }

    pub async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<()> {
        self.version(name, version).await?;
        sqlx::query(
            "INSERT INTO model_aliases (name, alias, version) VALUES ($1, $2, $3) ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
        )
        .bind(name)
        .bind(alias)
        .bind(version)
        .execute(&self.pool)
        .await?;
        self.changed(Change::Model { name: name.into() });
        Ok(())
    }

    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        sqlx::query("DELETE FROM model_aliases WHERE name = $1 AND alias = $2").bind(name).bind(alias).execute(&self.pool).await?;
        self.changed(Change::Model { name: name.into() });
        Ok(())
    }

    /// (alias, version) pairs of a model.
    pub async fn aliases(&self, name: &str) -> Result<Vec<(String, i64)>> {
        sqlx::query("SELECT alias, version FROM model_aliases WHERE name = $1 ORDER BY alias")
            .bind(name)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("alias")?, r.try_get("version")?)))
            .collect()
    }

    pub async fn version_by_alias(&self, name: &str, alias: &str) -> Result<VersionRecord> {
        let row = sqlx::query("SELECT version FROM model_aliases WHERE name = $1 AND alias = $2")
            .bind(name)
            .bind(alias)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("Registered model alias {alias} of model {name}")))?;
        self.version(name, row.try_get("version")?).await
    }

    /// Every version of every model (for searches across models).
    pub async fn all_versions(&self) -> Result<Vec<VersionRecord>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {VERSION_COLUMNS} FROM model_versions ORDER BY name, version"));
        sqlx::query(sql).fetch_all(&self.pool).await?.iter().map(version_from_row).collect()
    }

    /// Rename a model, with its versions, aliases and tags.
    pub async fn rename_model(&self, name: &str, new_name: &str) -> Result<ModelRecord> {
        let mut tx = self.begin_write().await?;
        sqlx::query("SELECT name FROM registered_models WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("Registered Model with name={name}")))?;
        if sqlx::query("SELECT name FROM registered_models WHERE name = $1").bind(new_name).fetch_optional(&mut *tx).await?.is_some() {
            return Err(StoreError::Conflict(format!("Registered Model (name={new_name}) already exists.")));
        }
        let now = now_ms();
        // The name is the key the other tables reference: the new row
        // first, the children moved to it, then the old row dropped.
        sqlx::query(
            "INSERT INTO registered_models (name, description, created_at, updated_at, last_version) \
             SELECT $1, description, created_at, $2, last_version FROM registered_models WHERE name = $3",
        )
        .bind(new_name)
        .bind(now)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        for table in ["model_versions", "model_aliases", "registered_model_tags", "model_version_tags"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET name = $1 WHERE name = $2")))
                .bind(new_name)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        // Deployments serve the model under its new name.
        for column in ["model_name", "canary_model", "shadow_model"] {
            let sql = sqlx::AssertSqlSafe(format!("UPDATE deployments SET {column} = $1 WHERE {column} = $2"));
            sqlx::query(sql).bind(new_name).bind(name).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM registered_models WHERE name = $1").bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        self.changed(Change::Model { name: name.into() });
        self.changed(Change::Model { name: new_name.into() });
        self.model(new_name).await
    }

    pub async fn update_model(&self, name: &str, description: &str) -> Result<ModelRecord> {
        let done = sqlx::query("UPDATE registered_models SET description = $1, updated_at = $2 WHERE name = $3")
            .bind(description)
            .bind(now_ms())
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("Registered Model with name={name}")));
        }
        self.changed(Change::Model { name: name.into() });
        self.model(name).await
    }

    pub async fn update_version(&self, name: &str, version: i64, description: &str) -> Result<VersionRecord> {
        let done = sqlx::query("UPDATE model_versions SET description = $1, updated_at = $2 WHERE name = $3 AND version = $4")
            .bind(description)
            .bind(now_ms())
            .bind(name)
            .bind(version)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("Model Version (name={name}, version={version})")));
        }
        self.changed(Change::Model { name: name.into() });
        self.version(name, version).await
    }

    /// Delete one version, its tags and the aliases that point at it.
    pub async fn delete_version(&self, name: &str, version: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        refuse_if_served(&mut tx, name, Some(version)).await?;
        let done = sqlx::query("DELETE FROM model_versions WHERE name = $1 AND version = $2").bind(name).bind(version).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("Model Version (name={name}, version={version})")));
        }
        for table in ["model_version_tags", "model_aliases"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE name = $1 AND version = $2")))
                .bind(name)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE registered_models SET updated_at = $1 WHERE name = $2").bind(now_ms()).bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        self.changed(Change::Model { name: name.into() });
        Ok(())
    }

    /// Set a tag on a model (`version` None) or on one of its versions.
    pub async fn set_registry_tag(&self, name: &str, version: Option<i64>, key: &str, value: &str) -> Result<()> {
        match version {
            None => {
                self.model(name).await?;
                sqlx::query(
                    "INSERT INTO registered_model_tags (name, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (name, key) DO UPDATE SET value = excluded.value",
                )
                .bind(name)
                .bind(key)
                .bind(value)
                .execute(&self.pool)
                .await?;
            }
            Some(v) => {
                self.version(name, v).await?;
                sqlx::query(
                    "INSERT INTO model_version_tags (name, version, key, value) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value",
                )
                .bind(name)
                .bind(v)
                .bind(key)
                .bind(value)
                .execute(&self.pool)
                .await?;
            }
        }
        self.changed(Change::Model { name: name.into() });
        Ok(())
    }

    /// Delete a model's or a version's tag; a missing tag is not found.
    pub async fn delete_registry_tag(&self, name: &str, version: Option<i64>, key: &str) -> Result<()> {
        let done = match version {
            None => {
                self.model(name).await?;
                sqlx::query("DELETE FROM registered_model_tags WHERE name = $1 AND key = $2").bind(name).bind(key).execute(&self.pool).await?
            }
            Some(v) => {
                self.version(name, v).await?;
                sqlx::query("DELETE FROM model_version_tags WHERE name = $1 AND version = $2 AND key = $3")
                    .bind(name)
                    .bind(v)
                    .bind(key)
                    .execute(&self.pool)
                    .await?
            }
        };
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("Tag with key={key}")));
        }
        self.changed(Change::Model { name: name.into() });
        Ok(())
    }

    /// The tags of a model (`version` None) or of one of its versions.
    pub async fn registry_tags(&self, name: &str, version: Option<i64>) -> Result<Vec<(String, String)>> {
        let rows = match version {
            None => sqlx::query("SELECT key, value FROM registered_model_tags WHERE name = $1 ORDER BY key").bind(name).fetch_all(&self.pool).await?,
            Some(v) => {
                sqlx::query("SELECT key, value FROM model_version_tags WHERE name = $1 AND version = $2 ORDER BY key")
                    .bind(name)
                    .bind(v)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(|r| Ok((r.try_get("key")?, r.try_get("value")?))).collect()
    }

    /// (model, key, value) of every model tag.
    pub async fn all_model_tags(&self) -> Result<Vec<(String, String, String)>> {
        sqlx::query("SELECT name, key, value FROM registered_model_tags ORDER BY name, key")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("key")?, r.try_get("value")?)))
            .collect()
    }

    /// (model, version, key, value) of every version tag.
    pub async fn all_version_tags(&self) -> Result<Vec<(String, i64, String, String)>> {
        sqlx::query("SELECT name, version, key, value FROM model_version_tags ORDER BY name, version, key")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("version")?, r.try_get("key")?, r.try_get("value")?)))
            .collect()
    }

    /// (alias, version) of every model, by model.
    pub async fn all_aliases(&self) -> Result<Vec<(String, String, i64)>> {
        sqlx::query("SELECT name, alias, version FROM model_aliases ORDER BY name, alias")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("alias")?, r.try_get("version")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::StoreError;
    use crate::testing::both_backends;

    both_backends!(versions_stages_aliases, |store| {
        store.create_model("m", "").await.unwrap();
        assert!(store.create_model("m", "").await.unwrap_err().to_string().contains("already exists"));
        let v1 = store.create_version("m", "runs:/a/model", None, "").await.unwrap();
        let v2 = store.create_version("m", "runs:/b/model", None, "").await.unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        store.transition_stage("m", 1, "production", false).await.unwrap();
        let v2 = store.transition_stage("m", 2, "Production", true).await.unwrap();
        assert_eq!(v2.stage, "Production");
        assert_eq!(store.version("m", 1).await.unwrap().stage, "Archived", "archive_existing moved v1 out");
        assert!(store.transition_stage("m", 2, "Prod", false).await.is_err());
        store.set_alias("m", "champion", 2).await.unwrap();
        assert_eq!(store.version_by_alias("m", "champion").await.unwrap().version, 2);
        assert!(store.set_alias("m", "x", 9).await.is_err(), "an alias needs an existing version");
        store.delete_model("m").await.unwrap();
        assert!(store.model("m").await.is_err());
    });

    both_backends!(renames_tags_and_version_deletes_keep_the_rest_whole, |store| {
        store.create_model("old", "").await.unwrap();
        let tags = [("validated".to_string(), "yes".to_string())];
        let new = crate::NewVersion { source: "s3://b/m", run_id: Some("elsewhere"), tags: &tags, ..Default::default() };
        let v1 = store.create_version_from("old", &new).await.unwrap();
        assert_eq!(v1.run_id.as_deref(), Some("elsewhere"), "a run this server does not hold is kept");
        store.create_version("old", "s3://b/m2", None, "").await.unwrap();
        store.set_alias("old", "champion", 1).await.unwrap();
        store.set_registry_tag("old", None, "team", "ml").await.unwrap();
        store.create_model("taken", "").await.unwrap();
        assert!(matches!(store.rename_model("old", "taken").await, Err(StoreError::Conflict(_))));
        store.rename_model("old", "new").await.unwrap();
        assert!(store.model("old").await.is_err());
        assert_eq!(store.versions("new").await.unwrap().len(), 2);
        assert_eq!(store.version_by_alias("new", "champion").await.unwrap().version, 1);
        assert_eq!(store.registry_tags("new", None).await.unwrap(), [("team".to_string(), "ml".to_string())]);
        assert_eq!(store.registry_tags("new", Some(1)).await.unwrap(), tags);
        store.delete_version("new", 1).await.unwrap();
        assert!(store.aliases("new").await.unwrap().is_empty(), "the alias went with its version");
        assert!(store.registry_tags("new", Some(1)).await.unwrap().is_empty());
        assert!(store.delete_registry_tag("new", None, "nope").await.is_err());
        assert_eq!(store.update_model("new", "d").await.unwrap().description, "d");
        assert_eq!(store.update_version("new", 2, "v2").await.unwrap().description, "v2");
        store.delete_model("new").await.unwrap();
    });
}
