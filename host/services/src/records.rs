//! Searching experiments, registered models, model versions and logged
//! models: which fields each kind has, one request shape (filter, order,
//! page size, page token) checked by one set of rules, and the page.
//!
//! The filter language is `kiln_types::records` (the expression parser
//! that run search and gates use).

use crate::store::{ExperimentRecord, LoggedModelDetail, ModelRecord, VersionRecord};
use crate::tracking::{MAX_SEARCH_RESULTS, SearchError, page_token};
pub use kiln_types::records::{Fields, Order, Record, RecordFilter};
use std::cmp::Ordering;

pub const EXPERIMENTS: Fields = Fields {
    what: "experiments",
    text: &["name", "experiment_id", "lifecycle_stage"],
    numeric: &["creation_time", "last_update_time"],
    tags: true,
    metrics_and_params: false,
};

pub const MODELS: Fields = Fields {
    what: "registered models",
    text: &["name", "description"],
    numeric: &["creation_timestamp", "last_updated_timestamp", "timestamp"],
    tags: true,
    metrics_and_params: false,
};

pub const VERSIONS: Fields = Fields {
    what: "model versions",
    text: &["name", "run_id", "source_path", "current_stage", "model_id", "description"],
    numeric: &["version_number", "creation_timestamp", "last_updated_timestamp", "timestamp"],
    tags: true,
    metrics_and_params: false,
};

pub const LOGGED_MODELS: Fields = Fields {
    what: "logged models",
    text: &["name", "model_id", "model_type", "status", "source_run_id", "experiment_id"],
    numeric: &["creation_timestamp", "creation_time", "last_updated_timestamp"],
    tags: true,
    metrics_and_params: true,
};

/// A search as clients send it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub filter: String,
    pub order_by: Vec<String>,
    pub max_results: i64,
    pub page_token: Option<String>,
}

/// One page of a search and the token of the next, if there is one.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

/// Filter, order and page `all`; `tie` orders records the clauses leave
/// equal (and all of them when there are none), so pages never overlap.
pub fn search<T: Record>(mut all: Vec<T>, fields: &Fields, request: &Request, tie: fn(&T, &T) -> Ordering) -> Result<Page<T>, SearchError> {
    let filter = fields.parse(&request.filter).map_err(SearchError::Filter)?;
    let order = request
        .order_by
        .iter()
        .map(|o| fields.parse_order(o).map_err(|message| SearchError::OrderBy { clause: o.clone(), message }))
        .collect::<Result<Vec<Order>, _>>()?;
    if !(1..=MAX_SEARCH_RESULTS).contains(&request.max_results) {
        return Err(SearchError::MaxResults(request.max_results));
    }
    let offset = request.page_token.as_deref().map(page_token).transpose().map_err(SearchError::PageToken)?.unwrap_or(0) as usize;
    if let Some(f) = &filter {
        all.retain(|r| f.matches(r));
    }
    kiln_types::records::sort(&mut all, &order, &tie);
    let end = offset.saturating_add(request.max_results as usize);
    let next_page_token = (end < all.len()).then(|| end.to_string());
    let items = all.into_iter().skip(offset).take(request.max_results as usize).collect();
    Ok(Page { items, next_page_token })
}

fn tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// MLflow keeps prompts as registered models tagged
/// `mlflow.prompt.is_prompt = 'true'`, and its clients search models with
/// `tags.`mlflow.prompt.is_prompt` != 'true'`: a model without the tag is
/// not a prompt, so it reads as `'false'` (MLflow's store does the same
/// with an anti-join).
fn registry_tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tag(tags, key).or((key == "mlflow.prompt.is_prompt").then_some("false"))
}

/// An experiment as searches see it.
#[derive(Debug)]
pub struct ExperimentEntry {
    pub record: ExperimentRecord,
    pub tags: Vec<(String, String)>,
}

impl ExperimentEntry {
    /// MLflow's default order: newest first, then by id.
    pub fn tie(a: &Self, b: &Self) -> Ordering {
        b.record.created_at.cmp(&a.record.created_at).then_with(|| a.record.id.cmp(&b.record.id))
    }
}

impl Record for ExperimentEntry {
    fn text(&self, field: &str) -> Option<&str> {
        match field {
            "name" => Some(&self.record.name),
            "experiment_id" => Some(&self.record.id),
            "lifecycle_stage" => Some(&self.record.lifecycle_stage),
            _ => None,
        }
    }
    fn number(&self, field: &str) -> Option<f64> {
        match field {
            "creation_time" => Some(self.record.created_at as f64),
            "last_update_time" => Some(self.record.updated_at as f64),
            _ => None,
        }
    }
    fn tag(&self, key: &str) -> Option<&str> {
        tag(&self.tags, key)
    }
}

/// A registered model as searches see it.
#[derive(Debug)]
pub struct ModelEntry {
    pub record: ModelRecord,
    pub tags: Vec<(String, String)>,
}

impl ModelEntry {
    /// MLflow's default order: by name.
    pub fn tie(a: &Self, b: &Self) -> Ordering {
        a.record.name.cmp(&b.record.name)
    }
}

impl Record for ModelEntry {
    fn text(&self, field: &str) -> Option<&str> {
        match field {
            "name" => Some(&self.record.name),
            "description" => Some(&self.record.description),
            _ => None,
        }
    }
    fn number(&self, field: &str) -> Option<f64> {
        match field {
            "creation_timestamp" => Some(self.record.created_at as f64),
            "last_updated_timestamp" | "timestamp" => Some(self.record.updated_at as f64),
            _ => None,
        }
    }
    fn tag(&self, key: &str) -> Option<&str> {
        registry_tag(&self.tags, key)
    }
}

/// A model version as searches see it.
#[derive(Debug)]
pub struct VersionEntry {
    pub record: VersionRecord,
    pub tags: Vec<(String, String)>,
}

impl VersionEntry {
    /// Search versions in MLflow's order (its SQL store, which MLflow's
    /// own REST tests hold): the request's clauses, last updated first
    /// when it has none, then by model name and newest version first.
    pub fn search(all: Vec<Self>, request: &Request) -> Result<Page<Self>, SearchError> {
        let mut request = request.clone();
        if request.order_by.is_empty() {
            request.order_by.push("last_updated_timestamp DESC".into());
        }
        search(all, &VERSIONS, &request, Self::tie)
    }

    fn tie(a: &Self, b: &Self) -> Ordering {
        a.record.name.cmp(&b.record.name).then_with(|| b.record.version.cmp(&a.record.version))
    }
}

impl Record for VersionEntry {
    fn text(&self, field: &str) -> Option<&str> {
        match field {
            "name" => Some(&self.record.name),
            "run_id" => Some(self.record.run_id.as_deref().unwrap_or("")),
            "source_path" => Some(&self.record.source),
            "current_stage" => Some(&self.record.stage),
            "model_id" => Some(&self.record.model_id),
            "description" => Some(&self.record.description),
            _ => None,
        }
    }
    fn number(&self, field: &str) -> Option<f64> {
        match field {
            "version_number" => Some(self.record.version as f64),
            "creation_timestamp" => Some(self.record.created_at as f64),
            "last_updated_timestamp" | "timestamp" => Some(self.record.updated_at as f64),
            _ => None,
        }
    }
    fn tag(&self, key: &str) -> Option<&str> {
        registry_tag(&self.tags, key)
    }
}

/// A logged model as searches see it.
#[derive(Debug)]
pub struct LoggedModelEntry(pub LoggedModelDetail);

impl LoggedModelEntry {
    /// MLflow's default order: newest first, then by id.
    pub fn tie(a: &Self, b: &Self) -> Ordering {
        b.0.record.created_at.cmp(&a.0.record.created_at).then_with(|| a.0.record.id.cmp(&b.0.record.id))
    }
}

impl Record for LoggedModelEntry {
    fn text(&self, field: &str) -> Option<&str> {
        let r = &self.0.record;
        match field {
            "name" => Some(&r.name),
            "model_id" => Some(&r.id),
            "model_type" => Some(&r.model_type),
            "source_run_id" => Some(&r.source_run_id),
            "experiment_id" => Some(&r.experiment_id),
            // MLflow's filter compares with its own status names.
            "status" => Some(match r.status.as_str() {
                "READY" => "LOGGED_MODEL_READY",
                "FAILED" => "LOGGED_MODEL_UPLOAD_FAILED",
                _ => "LOGGED_MODEL_PENDING",
            }),
            _ => None,
        }
    }
    fn number(&self, field: &str) -> Option<f64> {
        match field {
            "creation_timestamp" | "creation_time" => Some(self.0.record.created_at as f64),
            "last_updated_timestamp" => Some(self.0.record.updated_at as f64),
            _ => None,
        }
    }
    fn tag(&self, key: &str) -> Option<&str> {
        tag(&self.0.tags, key)
    }
    fn param(&self, key: &str) -> Option<&str> {
        tag(&self.0.params, key)
    }
    /// The latest value logged (highest step, then newest).
    fn metric(&self, key: &str) -> Option<f64> {
        self.0.metrics.iter().filter(|m| m.key == key).max_by_key(|m| (m.step, m.timestamp)).map(|m| m.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, created: i64) -> ModelEntry {
        ModelEntry {
            record: ModelRecord { name: name.into(), description: String::new(), created_at: created, updated_at: created },
            tags: vec![("team".into(), if created % 2 == 0 { "ml" } else { "data" }.into())],
        }
    }

    fn names(page: &Page<ModelEntry>) -> Vec<&str> {
        page.items.iter().map(|m| m.record.name.as_str()).collect()
    }

    #[test]
    fn filter_order_and_pages_walk_every_record_once() {
        let all = || (0..7).map(|i| model(&format!("m{i}"), i)).collect::<Vec<_>>();
        let request = |token: Option<String>| Request {
            filter: "tags.team = 'ml'".into(),
            order_by: vec!["creation_timestamp DESC".into()],
            max_results: 3,
            page_token: token,
        };
        let first = search(all(), &MODELS, &request(None), ModelEntry::tie).unwrap();
        assert_eq!(names(&first), ["m6", "m4", "m2"]);
        let second = search(all(), &MODELS, &request(first.next_page_token.clone()), ModelEntry::tie).unwrap();
        assert_eq!(names(&second), ["m0"]);
        assert!(second.next_page_token.is_none(), "the last page has no token");
        let bad = |r: Request| search(all(), &MODELS, &r, ModelEntry::tie).unwrap_err();
        assert!(matches!(bad(Request { filter: "garbage !!!".into(), max_results: 1, ..Default::default() }), SearchError::Filter(_)));
        assert!(matches!(bad(Request { max_results: 0, ..Default::default() }), SearchError::MaxResults(0)));
        assert!(matches!(bad(Request { max_results: 1, page_token: Some("x".into()), ..Default::default() }), SearchError::PageToken(_)));
        assert!(matches!(bad(Request { max_results: 1, order_by: vec!["colour".into()], ..Default::default() }), SearchError::OrderBy { .. }));
    }

    #[test]
    fn versions_come_by_the_request_or_last_updated_first_then_by_name_and_newest_version() {
        let version = |name: &str, version: i64, updated: i64| VersionEntry {
            record: VersionRecord {
                name: name.into(),
                version,
                run_id: None,
                source: String::new(),
                model_id: String::new(),
                stage: "None".into(),
                description: String::new(),
                blob: String::new(),
                plugin_digest: String::new(),
                signature: "{}".into(),
                created_at: updated,
                updated_at: updated,
            },
            tags: Vec::new(),
        };
        let all = || vec![version("a", 1, 10), version("b", 1, 30), version("a", 2, 20), version("c", 1, 20), version("c", 2, 20)];
        let order = |order_by: &[&str]| {
            let request = Request { max_results: 10, order_by: order_by.iter().map(|s| s.to_string()).collect(), ..Default::default() };
            let page = VersionEntry::search(all(), &request).unwrap();
            page.items.iter().map(|v| (v.record.name.clone(), v.record.version)).collect::<Vec<_>>()
        };
        let names = |v: &[(&str, i64)]| v.iter().map(|(n, v)| (n.to_string(), *v)).collect::<Vec<_>>();
        assert_eq!(order(&[]), names(&[("b", 1), ("a", 2), ("c", 2), ("c", 1), ("a", 1)]));
        // A clause replaces "last updated first"; name and version still break ties.
        assert_eq!(order(&["version_number DESC"]), names(&[("a", 2), ("c", 2), ("a", 1), ("b", 1), ("c", 1)]));
        assert_eq!(order(&["name DESC"]), names(&[("c", 2), ("c", 1), ("b", 1), ("a", 2), ("a", 1)]));
    }
}
