//! Dataset versions and their lineage (which runs read them).

use super::{Change, Result, Store, StoreError, now_ms};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct NewDatasetVersion {
    pub name: String,
    pub hash: String,
    pub kind: String,
    pub size: i64,
    pub files: i64,
    pub path: String,
    pub format: String,
    pub schema_json: Option<String>,
    pub profile_json: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DatasetVersion {
    pub name: String,
    pub version: i64,
    pub hash: String,
    pub kind: String,
    pub size: i64,
    pub files: i64,
    pub path: String,
    pub format: String,
    pub schema_json: Option<String>,
    pub profile_json: Option<String>,
    pub created_at: i64,
}

const COLUMNS: &str = "name, version, hash, kind, size, files, path, format, schema_json, profile_json, created_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<DatasetVersion> {
    Ok(DatasetVersion {
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        hash: r.try_get("hash")?,
        kind: r.try_get("kind")?,
        size: r.try_get("size")?,
        files: r.try_get("files")?,
        path: r.try_get("path")?,
        format: r.try_get("format")?,
        schema_json: r.try_get("schema_json")?,
        profile_json: r.try_get("profile_json")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// Register content under a name: the next version number, or the
    /// existing version when this content is already one of the name's
    /// versions. Returns the version and whether it is new.
    pub async fn add_dataset_version(&self, new: NewDatasetVersion) -> Result<(DatasetVersion, bool)> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        sqlx::query("INSERT INTO datasets (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(&new.name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 AND hash = $2")))
            .bind(&new.name)
            .bind(&new.hash)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            tx.commit().await?;
            return Ok((from_row(&row)?, false));
        }
        let next: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 AS v FROM dataset_versions WHERE name = $1")
            .bind(&new.name)
            .fetch_one(&mut *tx)
            .await?
            .try_get("v")?;
        sqlx::query(
            "INSERT INTO dataset_versions (name, version, hash, kind, size, files, path, format, schema_json, profile_json, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&new.name)
        .bind(next)
        .bind(&new.hash)
        .bind(&new.kind)
        .bind(new.size)
        .bind(new.files)
        .bind(&new.path)
        .bind(&new.format)
        .bind(&new.schema_json)
        .bind(&new.profile_json)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.changed(Change::Dataset { name: new.name.clone() });
        Ok((
            DatasetVersion {
                name: new.name,
                version: next,
                hash: new.hash,
                kind: new.kind,
                size: new.size,
                files: new.files,
                path: new.path,
                format: new.format,
                schema_json: new.schema_json,
                profile_json: new.profile_json,
                created_at: now,
            },
            true,
        ))
    }

    /// One version of a dataset; `None` is the latest.
    pub async fn dataset_version(&self, name: &str, version: Option<i64>) -> Result<DatasetVersion> {
        let row = match version {
            Some(v) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 AND version = $2")))
                    .bind(name)
                    .bind(v)
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 ORDER BY version DESC LIMIT 1")))
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        match (row, version) {
            (Some(r), _) => from_row(&r),
            (None, Some(v)) => Err(StoreError::NotFound(format!("version {v} of dataset `{name}`"))),
            (None, None) => Err(StoreError::NotFound(format!("dataset `{name}`"))),
        }
    }

    /// Every version of a dataset, oldest first.
    pub async fn dataset_versions(&self, name: &str) -> Result<Vec<DatasetVersion>> {
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 ORDER BY version")))
            .bind(name)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    /// The latest version of every dataset, by name, with its version count.
    pub async fn list_datasets(&self) -> Result<Vec<(DatasetVersion, i64)>> {
        let sql = format!(
            "SELECT {COLUMNS}, (SELECT COUNT(*) FROM dataset_versions c WHERE c.name = v.name) AS versions FROM dataset_versions v \
             WHERE version = (SELECT MAX(version) FROM dataset_versions m WHERE m.name = v.name) ORDER BY name"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?.iter().map(|r| Ok((from_row(r)?, r.try_get("versions")?))).collect()
    }

    /// Record that a run read a dataset version (as input `input`).
    pub async fn record_dataset_usage(&self, name: &str, version: i64, run_id: &str, input: &str) -> Result<()> {
        sqlx::query("INSERT INTO dataset_usage (name, version, run_id, input) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(version)
            .bind(run_id)
            .bind(input)
            .execute(&self.pool)
            .await?;
        self.changed(Change::Dataset { name: name.into() });
        Ok(())
    }

    /// The runs that read a dataset version: (run id, input name).
    pub async fn dataset_usage(&self, name: &str, version: i64) -> Result<Vec<(String, String)>> {
        sqlx::query("SELECT run_id, input FROM dataset_usage WHERE name = $1 AND version = $2 ORDER BY run_id, input")
            .bind(name)
            .bind(version)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("run_id")?, r.try_get("input")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::both_backends;
    use super::*;
    use crate::NewRun;

    fn new(name: &str, hash: &str) -> NewDatasetVersion {
        NewDatasetVersion {
            name: name.into(),
            hash: hash.into(),
            kind: "file".into(),
            size: 10,
            files: 1,
            path: "data/x.csv".into(),
            format: "csv".into(),
            schema_json: Some("{}".into()),
            profile_json: None,
        }
    }

    both_backends!(versions_number_up_and_content_is_deduplicated, |store| {
        let (v1, created) = store.add_dataset_version(new("iris", "aa")).await.unwrap();
        assert_eq!((v1.version, created), (1, true));
        let (v2, created) = store.add_dataset_version(new("iris", "bb")).await.unwrap();
        assert_eq!((v2.version, created), (2, true));
        let (again, created) = store.add_dataset_version(new("iris", "aa")).await.unwrap();
        assert_eq!((again.version, created), (1, false), "the same content is the same version");
        store.add_dataset_version(new("other", "aa")).await.unwrap();
        assert_eq!(store.dataset_version("iris", None).await.unwrap().hash, "bb");
        assert_eq!(store.dataset_version("iris", Some(1)).await.unwrap().schema_json.as_deref(), Some("{}"));
        assert!(matches!(store.dataset_version("iris", Some(9)).await, Err(StoreError::NotFound(m)) if m.contains("version 9")));
        assert!(matches!(store.dataset_version("nope", None).await, Err(StoreError::NotFound(m)) if m.contains("nope")));
        let list = store.list_datasets().await.unwrap();
        let summary: Vec<(String, i64, i64)> = list.iter().map(|(v, n)| (v.name.clone(), v.version, *n)).collect();
        assert_eq!(summary, [("iris".to_string(), 2, 2), ("other".to_string(), 1, 1)]);
        let run = store.create_run(NewRun { experiment: "e".into(), name: "r".into(), parent: None, source: "t".into() }).await.unwrap();
        store.record_dataset_usage("iris", 2, &run, "train").await.unwrap();
        store.record_dataset_usage("iris", 2, &run, "train").await.unwrap();
        assert_eq!(store.dataset_usage("iris", 2).await.unwrap(), [(run.clone(), "train".to_string())]);
        assert!(store.dataset_usage("iris", 1).await.unwrap().is_empty());
    });
}
