//! The checks MLflow's server makes on a model version's `source` before
//! registering it (`_validate_source_run`, `_validate_source_model` and
//! `_validate_non_local_source_contains_relative_paths` in its
//! handlers.py): a local path must lie inside the artifact directory of
//! the run (or logged model) named with it, and any other URI must be an
//! absolute path with no `..`, `.` or NUL in it, however often
//! percent-encoded. Without them a registered version could point a
//! downloading client at any file of the server's machine.

use super::*;
use percent_encoding::percent_decode_str;

/// `Ok` when MLflow's server would register a version from `source`.
pub(super) async fn check(app: &App, source: &str, run_id: Option<&str>, model_id: &str) -> Result<(), MlflowError> {
    if is_local(source)? {
        let inside = if !model_id.is_empty() {
            // Looked up for MLflow's error when it is missing; Kiln keeps
            // every logged model's files behind its proxy, never at a
            // local path, so no local source lies inside one.
            app.store.logged_model_record(model_id).await?;
            None
        } else if let Some(run_id) = run_id {
            run_artifact_root(app, run_id).await?
        } else {
            None
        }
        .and_then(|root| local_path(&root))
        .is_some_and(|root| contains(&root, &local_path(source).unwrap_or_default()));
        if inside {
            return Ok(());
        }
        let param = if model_id.is_empty() { "run_id" } else { "model_id" };
        return Err(invalid(format!(
            "Invalid model version source: '{source}'. To use a local path as a model version source, the {param} request parameter has to be specified and the local path has to be contained within the artifact directory of the run specified by the {param}."
        )));
    }
    if relative_references(source) {
        return Err(invalid(format!(
            "Invalid model version source: '{source}'. If supplying a source as an http, https, local file path, ftp, objectstore, or mlflow-artifacts uri, an absolute path must be provided without relative path references present. Please provide an absolute path."
        )));
    }
    Ok(())
}

/// A run's artifact directory as its clients see it, when it has its
/// own location (`None`: under Kiln's proxy, never a local path).
async fn run_artifact_root(app: &App, run_id: &str) -> Result<Option<String>, MlflowError> {
    let Ok((experiment, _, _)) = app.store.run_extras(run_id).await else { return Ok(None) };
    let e = app.store.experiment_by_id(&experiment).await?;
    Ok(e.filter(|e| !e.artifact_location.is_empty()).map(|e| format!("{}/{run_id}/artifacts", e.artifact_location)))
}

/// The pieces of a URI as Python's `urllib.parse.urlparse` cuts them:
/// scheme (lower-cased, empty when there is none), netloc and path.
fn parse(uri: &str) -> (String, &str, &str) {
    let scheme_end = uri.find(':').filter(|&i| {
        let s = &uri[..i];
        s.starts_with(|c: char| c.is_ascii_alphabetic()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let (scheme, rest) = match scheme_end {
        Some(i) => (uri[..i].to_ascii_lowercase(), &uri[i + 1..]),
        None => (String::new(), uri),
    };
    let (netloc, rest) = match rest.strip_prefix("//") {
        Some(r) => {
            let end = r.find(['/', '?', '#']).unwrap_or(r.len());
            (&r[..end], &r[end..])
        }
        None => ("", rest),
    };
    let path = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    (scheme, netloc, path)
}

/// MLflow's `is_local_uri` for a source: no scheme, or `file:` on this
/// host. A `file:` URI naming another host is refused as MLflow does.
fn is_local(uri: &str) -> Result<bool, MlflowError> {
    let (scheme, netloc, _) = parse(uri);
    if scheme.is_empty() {
        return Ok(true);
    }
    if scheme != "file" {
        return Ok(false);
    }
    let host = netloc.rsplit('@').next().unwrap_or("").split(':').next().unwrap_or("");
    if host.is_empty() || host == "." || host.starts_with("localhost") || host.starts_with("127.0.0.1") {
        Ok(true)
    } else {
        Err(invalid(format!(
            "{uri} is not a valid remote uri. For remote access on windows, please consider using a different scheme such as SMB (e.g. smb://<hostname>/<path>)."
        )))
    }
}

/// A local source or `file:` URI as an absolute, normalised path (a
/// relative one is taken from the server's working directory, as
/// MLflow's `Path.resolve` takes it).
fn local_path(uri: &str) -> Option<String> {
    let (scheme, _, path) = parse(uri);
    let path = if scheme == "file" { percent_decode_str(path).decode_utf8_lossy().into_owned() } else { uri.to_string() };
    let absolute = if path.starts_with('/') {
        path
    } else {
        let cwd = std::env::current_dir().ok()?;
        format!("{}/{path}", cwd.to_str()?)
    };
    Some(normpath(&absolute))
}

/// `path` is `root` or lies under it.
fn contains(root: &str, path: &str) -> bool {
    let root = root.trim_end_matches('/');
    path == root || path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'))
}

/// MLflow's `_validate_non_local_source_contains_relative_paths`: after
/// percent-decoding until nothing changes, the URI's path (slashes
/// collapsed, trailing ones dropped) must be absolute and already
/// normal, and hold no NUL and no `..` segment.
fn relative_references(source: &str) -> bool {
    let mut decoded = source.to_string();
    loop {
        let next = percent_decode_str(&decoded.replace('+', " ")).decode_utf8_lossy().into_owned();
        if next == decoded {
            break;
        }
        decoded = next;
    }
    let (_, _, path) = parse(&decoded);
    let mut collapsed = String::with_capacity(path.len());
    for c in path.trim_end_matches('/').chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    collapsed.contains('\0') || decoded.split('/').any(|p| p == "..") || !collapsed.starts_with('/') || normpath(&collapsed) != collapsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_local_sources_with_relative_references_are_refused_as_mlflow_refuses_them() {
        for ok in [
            "mlflow-artifacts:/models",
            "mlflow-artifacts:/models/",
            "mlflow-artifacts:/models///",
            "mlflow-artifacts:/models/foo///bar",
            "mlflow-artifacts://host:9000/models",
            "mlflow-artifacts://host:9000/models/artifact/..../",
            "runs:/0123abc/model",
            "models:/m-0123abc",
            "s3://bucket/path/to/model",
        ] {
            assert!(!relative_references(ok), "{ok} refused");
        }
        for bad in [
            "mlflow-artifacts://host:9000/models/../../../",
            "http://host:9000/models/../../../",
            "https://host/api/2.0/mlflow-artifacts/artifacts/../../../",
            "s3a://my_bucket/api/2.0/mlflow-artifacts/artifacts/../../../",
            "mlflow-artifacts://host:9000/models/..%2f..%2fartifacts",
            "mlflow-artifacts://host:9000/models/artifact%00",
            "dbfs:/abc/artifacts/a%3f/../../../../",
            "dbfs:/abc/artifacts/a%253f/..%252f..%252f",
            "s3://bucket/a/./b",
            "s3://bucket",
        ] {
            assert!(relative_references(bad), "{bad} accepted");
        }
    }

    #[test]
    fn local_sources_are_paths_without_a_scheme_or_file_uris_of_this_host() {
        assert!(is_local("/tmp/model").unwrap());
        assert!(is_local("relative/model").unwrap());
        assert!(is_local("file:///tmp/model").unwrap());
        assert!(is_local("file://localhost/tmp/model").unwrap());
        assert!(!is_local("s3://bucket/model").unwrap());
        assert!(!is_local("mlflow-artifacts:/0/abc/artifacts").unwrap());
        assert!(is_local("file://elsewhere/tmp/model").is_err());
        assert_eq!(local_path("file:///srv/a%20b/../c").unwrap(), "/srv/c");
        assert!(contains("/srv/art/1/r/artifacts", "/srv/art/1/r/artifacts"));
        assert!(contains("/srv/art/1/r/artifacts", "/srv/art/1/r/artifacts/model"));
        assert!(!contains("/srv/art/1/r/artifacts", "/srv/art/1/r/artifacts2"));
        assert!(!contains("/srv/art/1/r/artifacts", "/tmp"));
    }
}
