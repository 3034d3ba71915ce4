//! The model registry's rules, in one place for the CLI, Kiln's API and
//! MLflow's: what "latest" means, how a version is referred to, and which
//! aliases are reserved. The store keeps the rows; this decides what they
//! mean.

use crate::store::{Store, StoreError, VersionRecord};

/// MLflow's model version stages.
pub use crate::store::STAGES;

/// How a caller names one version of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionRef {
    /// `3`
    Number(i64),
    /// `latest`: see [`latest`].
    Latest,
    /// `@champion`
    Alias(String),
    /// `Production`, `Staging`, … (any case): the latest version in it.
    Stage(&'static str),
}

impl VersionRef {
    /// `3`, `latest`, `@ALIAS` or a stage name; `models:/NAME/…` URIs and
    /// `MODEL@VERSION` arguments use these forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(alias) = text.strip_prefix('@') {
            check_alias(alias)?;
            return Ok(VersionRef::Alias(alias.to_string()));
        }
        if text.eq_ignore_ascii_case("latest") {
            return Ok(VersionRef::Latest);
        }
        if let Ok(n) = text.parse::<i64>() {
            return if n >= 1 { Ok(VersionRef::Number(n)) } else { Err(format!("model versions start at 1, not {n}")) };
        }
        match STAGES.iter().find(|s| s.eq_ignore_ascii_case(text)) {
            Some(stage) => Ok(VersionRef::Stage(stage)),
            None => Err(format!("`{text}` is not a version: give a number, `latest`, `@ALIAS` or a stage ({})", STAGES.join(", "))),
        }
    }
}

/// Aliases are free-form but for the names that already mean a version:
/// `latest` and `v1`, `v2`, … (as MLflow reserves them).
pub fn check_alias(alias: &str) -> Result<(), String> {
    let numbered = alias.len() > 1 && (alias.starts_with('v') || alias.starts_with('V')) && alias[1..].chars().all(|c| c.is_ascii_digit());
    if alias.eq_ignore_ascii_case("latest") || numbered {
        return Err(format!("'{alias}' is reserved and cannot be used as an alias"));
    }
    if alias.is_empty() || alias.len() > 255 {
        return Err("an alias has 1 to 255 characters".into());
    }
    Ok(())
}

/// The latest version of a model: the one with the highest number,
/// whatever its stage. This is what `latest` means everywhere (MLflow's
/// `models:/NAME/latest`, `kiln models list`); the latest version *in a
/// stage* is [`latest_per_stage`].
pub async fn latest(store: &Store, name: &str) -> Result<Option<VersionRecord>, StoreError> {
    Ok(store.versions(name).await?.into_iter().max_by_key(|v| v.version))
}

/// For each stage in `stages` (every stage when empty, in any case), the
/// highest-numbered version in it; stages no version is in are left out.
/// MLflow's `get-latest-versions` and a registered model's
/// `latest_versions`.
pub async fn latest_per_stage(store: &Store, name: &str, stages: &[String]) -> Result<Vec<VersionRecord>, StoreError> {
    let mut latest: std::collections::BTreeMap<String, VersionRecord> = Default::default();
    for v in store.versions(name).await? {
        if !stages.is_empty() && !stages.iter().any(|s| s.eq_ignore_ascii_case(&v.stage)) {
            continue;
        }
        match latest.get(&v.stage) {
            Some(held) if held.version > v.version => {}
            _ => {
                latest.insert(v.stage.clone(), v);
            }
        }
    }
    Ok(latest.into_values().collect())
}

/// Every registered model with its latest version and aliases.
pub async fn summaries(store: &Store) -> Result<Vec<crate::views::ModelSummary>, StoreError> {
    let mut out = Vec::new();
    for m in store.list_models().await? {
        let latest_version = latest(store, &m.name).await?.map(|v| v.version);
        out.push(crate::views::ModelSummary { aliases: store.aliases(&m.name).await?, name: m.name, latest_version, updated_at: m.updated_at });
    }
    Ok(out)
}

/// The version `r` names.
pub async fn resolve(store: &Store, name: &str, r: &VersionRef) -> Result<VersionRecord, StoreError> {
    match r {
        VersionRef::Number(n) => store.version(name, *n).await,
        VersionRef::Alias(a) => store.version_by_alias(name, a).await,
        VersionRef::Latest => {
            store.model(name).await?;
            latest(store, name).await?.ok_or_else(|| StoreError::NotFound(format!("a version of model `{name}` (it has none)")))
        }
        VersionRef::Stage(stage) => {
            store.model(name).await?;
            latest_per_stage(store, name, &[stage.to_string()])
                .await?
                .pop()
                .ok_or_else(|| StoreError::NotFound(format!("a version of model `{name}` in stage {stage}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_reserved_aliases_are_refused() {
        assert_eq!(VersionRef::parse("3").unwrap(), VersionRef::Number(3));
        assert_eq!(VersionRef::parse("LATEST").unwrap(), VersionRef::Latest);
        assert_eq!(VersionRef::parse("@champion").unwrap(), VersionRef::Alias("champion".into()));
        assert_eq!(VersionRef::parse("production").unwrap(), VersionRef::Stage("Production"));
        assert!(VersionRef::parse("0").unwrap_err().contains("start at 1"));
        assert!(VersionRef::parse("Prod").unwrap_err().contains("not a version"));
        assert!(check_alias("latest").is_err() && check_alias("v2").is_err() && check_alias("").is_err());
        assert!(check_alias("v").is_ok() && check_alias("champion").is_ok() && check_alias("version2").is_ok());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn latest_is_the_highest_number_and_latest_per_stage_is_per_stage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("k.db").display())).await.unwrap();
        store.create_model("m", "").await.unwrap();
        assert!(latest(&store, "m").await.unwrap().is_none());
        for _ in 0..3 {
            store.create_version("m", "runs:/x/model", None, "").await.unwrap();
        }
        store.transition_stage("m", 1, "Production", false).await.unwrap();
        store.transition_stage("m", 2, "Production", false).await.unwrap();
        assert_eq!(latest(&store, "m").await.unwrap().unwrap().version, 3);
        let per_stage: Vec<(String, i64)> = latest_per_stage(&store, "m", &[]).await.unwrap().into_iter().map(|v| (v.stage, v.version)).collect();
        assert_eq!(per_stage, [("None".to_string(), 3), ("Production".to_string(), 2)]);
        assert_eq!(resolve(&store, "m", &VersionRef::Stage("Production")).await.unwrap().version, 2);
        assert_eq!(resolve(&store, "m", &VersionRef::Latest).await.unwrap().version, 3);
        assert!(resolve(&store, "m", &VersionRef::Stage("Staging")).await.is_err());
        assert!(resolve(&store, "nope", &VersionRef::Latest).await.is_err());
    }
}
