//! Experiment tracking services: the search language and run comparison.

pub mod compare;
pub use kiln_types::filter;

pub use kiln_types::names::{MAX_EXPERIMENT_NAME, check_experiment_name};

/// A search names at most this many experiments (each is a bind
/// parameter; the databases cap those).
pub const MAX_SEARCH_EXPERIMENTS: usize = 1_000;

pub fn check_search_experiments(n: usize) -> Result<(), String> {
    if n > MAX_SEARCH_EXPERIMENTS {
        return Err(format!("a search names at most {MAX_SEARCH_EXPERIMENTS} experiments, not {n}"));
    }
    Ok(())
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
