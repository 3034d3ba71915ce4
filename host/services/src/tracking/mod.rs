//! Experiment tracking services: the search language and run comparison.

pub mod compare;
pub mod sample;
pub use kiln_types::filter;

pub use kiln_types::names::{MAX_EXPERIMENT_NAME, check_experiment_name};

/// A search names at most this many experiments (each is a bind
/// parameter; the databases cap those).
pub const MAX_SEARCH_EXPERIMENTS: usize = 1_000;

fn check_search_experiments(n: usize) -> Result<(), String> {
    if n > MAX_SEARCH_EXPERIMENTS {
        return Err(format!("a search names at most {MAX_SEARCH_EXPERIMENTS} experiments, not {n}"));
    }
    Ok(())
}

/// The most runs one search page returns.
pub const MAX_SEARCH_RESULTS: i64 = 50_000;

/// A run search as the CLI and both APIs receive it: one set of rules,
/// each caller words the refusal its own way (see [`SearchError`]).
#[derive(Debug, Default)]
pub struct SearchRequest<'a> {
    pub filter: &'a str,
    pub order_by: Vec<&'a str>,
    pub max_results: i64,
    pub page_token: Option<&'a str>,
    /// Experiment names (Kiln's API and CLI).
    pub experiments: Vec<String>,
    /// Experiment ids (MLflow's API).
    pub experiment_ids: Vec<String>,
}

/// Which part of a search request is wrong, and why.
#[derive(Debug, PartialEq)]
pub enum SearchError {
    Experiments(String),
    Filter(String),
    OrderBy { clause: String, message: String },
    MaxResults(i64),
    PageToken(String),
}

impl SearchRequest<'_> {
    /// Check the request and turn it into the store's query.
    pub fn query(self) -> Result<crate::store::SearchQuery, SearchError> {
        check_search_experiments(self.experiments.len() + self.experiment_ids.len()).map_err(SearchError::Experiments)?;
        let filter = filter::parse(self.filter).map_err(SearchError::Filter)?;
        let order_by = self
            .order_by
            .iter()
            .map(|o| filter::parse_order_by(o).map_err(|message| SearchError::OrderBy { clause: o.to_string(), message }))
            .collect::<Result<Vec<_>, _>>()?;
        if !(1..=MAX_SEARCH_RESULTS).contains(&self.max_results) {
            return Err(SearchError::MaxResults(self.max_results));
        }
        let offset = self.page_token.map(page_token).transpose().map_err(SearchError::PageToken)?.unwrap_or(0);
        Ok(crate::store::SearchQuery {
            experiments: self.experiments,
            experiment_ids: self.experiment_ids,
            filter,
            order_by,
            max_results: self.max_results,
            offset,
        })
    }
}

/// A search page token as Kiln hands them out: a non-negative offset.
pub fn page_token(token: &str) -> Result<i64, String> {
    token
        .parse::<u32>()
        .map(i64::from)
        .map_err(|_| format!("`{}` is not a page token returned by this server", token.chars().take(40).collect::<String>()))
}

/// An artifact path inside a run: `/`-separated names, none empty, `.`
/// or `..`, with no backslash or control character (NUL, line breaks),
/// so it means the same file on every system and to every client.
pub fn check_artifact_path(path: &str) -> Result<(), String> {
    let shown = path.escape_debug();
    if path.is_empty() {
        return Err("an artifact path must not be empty".into());
    }
    if path.contains('\\') || path.chars().any(char::is_control) {
        return Err(format!("artifact path \"{shown}\" may not contain backslashes or control characters"));
    }
    if path.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(format!("artifact path \"{shown}\" may not contain empty, `.` or `..` segments, or start or end with `/`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_requests_are_checked_in_one_place() {
        let q = SearchRequest {
            filter: "metrics.a > 1",
            order_by: vec!["metrics.a DESC"],
            max_results: 10,
            page_token: Some("20"),
            ..Default::default()
        }
        .query()
        .unwrap();
        assert_eq!((q.max_results, q.offset, q.order_by.len()), (10, 20, 1));
        let bad = |r: SearchRequest| r.query().unwrap_err();
        assert!(matches!(bad(SearchRequest { filter: "(", max_results: 1, ..Default::default() }), SearchError::Filter(_)));
        assert!(matches!(bad(SearchRequest { order_by: vec!["x"], max_results: 1, ..Default::default() }), SearchError::OrderBy { .. }));
        assert_eq!(bad(SearchRequest { max_results: 0, ..Default::default() }), SearchError::MaxResults(0));
        assert!(matches!(bad(SearchRequest { max_results: 1, page_token: Some("-1"), ..Default::default() }), SearchError::PageToken(_)));
        let many = (0..1001).map(|i| i.to_string()).collect();
        assert!(matches!(bad(SearchRequest { max_results: 1, experiment_ids: many, ..Default::default() }), SearchError::Experiments(_)));
    }

    #[test]
    fn names_tokens_and_artifact_paths() {
        assert!(check_experiment_name("").is_err() && check_experiment_name("  ").is_err());
        assert!(check_experiment_name("a\0b").unwrap_err().contains("control"));
        assert!(check_experiment_name(&"x".repeat(100_000)).unwrap_err().contains("at most 256"));
        assert!(check_experiment_name("Default").is_ok());
        assert_eq!(page_token("20"), Ok(20));
        assert!(page_token("-1").is_err() && page_token("x").is_err());
        for bad in [".", "a/./b", "a/../b", "a\0b", "a\nb", "a\\b", "/a", "a/", "a//b", ""] {
            assert!(check_artifact_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_artifact_path("reports/summary.txt").is_ok());
    }
}
