//! What every request passes before a handler sees it, and what every
//! error response looks like on its way out.
//!
//! A loopback server without authentication is safe only while no other
//! origin can talk to it. A browser lets any web page send "simple"
//! cross-site requests (GET, and POST with a form or `text/plain` body,
//! or none) and, through DNS rebinding, lets a page reach 127.0.0.1 under
//! its own host name. So: the `Host` header must name this server (its
//! bound address or a name the operator allowed), a POST must carry a
//! content type no form can send (MLflow's raw web-UI upload, whose body
//! has any type, is refused instead when a browser says another origin
//! sent it), and no CORS header is ever sent, so a
//! preflighted request from another origin is refused by the browser.
//! PUT, PATCH and DELETE always need a preflight, which is never granted.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tracing::Instrument;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled (also in its `x-request-id`
/// response header and in the server log's lines about it).
pub fn request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| "-".into())
}

/// A server-side fault: logged in full with the request id; the client
/// gets only the id, never a path, SQL or an error chain.
pub fn server_fault(detail: &str) -> String {
    let id = request_id();
    tracing::error!(request_id = %id, "{detail}");
    format!("internal error (request id {id}); the server log has the details")
}

/// Which `Host` headers this server answers.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    /// Bound to every interface: any IP literal is this machine (DNS
    /// rebinding needs a name, not an address).
    any_ip: bool,
    any: bool,
    names: Vec<String>,
}

impl AllowedHosts {
    /// The names a server bound to `addr` answers to, plus `extra` (`*`
    /// allows any, for a proxy that checks the name itself).
    pub fn new(addr: SocketAddr, extra: &[String]) -> Self {
        let ip = addr.ip();
        let mut names: Vec<String> = vec![host_of_ip(ip)];
        if ip.is_loopback() || ip.is_unspecified() {
            names.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
        }
        let any = extra.iter().any(|n| n == "*");
        names.extend(extra.iter().filter(|n| *n != "*").map(|n| normalise(n)));
        AllowedHosts { any_ip: ip.is_unspecified(), any, names }
    }

    fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let name = normalise(strip_port(host));
        if self.names.contains(&name) {
            return true;
        }
        self.any_ip && name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok()
    }
}

fn host_of_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn normalise(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `name:8080` → `name`, `[::1]:8080` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Content types a web page may POST cross-site without a preflight.
fn simple_content_type(essence: &str) -> bool {
    matches!(essence, "" | "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data")
}

fn essence(req: &Request) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// MLflow's API, under either of its prefixes and any of its versions
/// (`/api/2.0/mlflow/...`, `/ajax-api/3.0/mlflow/...`, `mlflow-artifacts`).
fn is_mlflow(path: &str) -> bool {
    // MLflow's UI downloads, outside its API prefix.
    if matches!(path, "/get-artifact" | "/model-versions/get-artifact") {
        return true;
    }
    let Some(rest) = path.strip_prefix("/api/").or_else(|| path.strip_prefix("/ajax-api/")) else {
        return false;
    };
    rest.split_once('/').is_some_and(|(version, rest)| version.starts_with(|c: char| c.is_ascii_digit()) && rest.starts_with("mlflow"))
}

/// MLflow's web-UI upload (`upload-artifact?run_uuid=…&path=…`), whose
/// body is the file as it is, sent by clients with any content type or
/// none (MLflow's REST tests post a plain string).
fn is_raw_upload(path: &str) -> bool {
    is_mlflow(path) && path.ends_with("/mlflow/upload-artifact")
}

/// A browser names the page's origin on every cross-origin POST (the
/// Fetch standard's `Origin` header, which pages cannot forge or drop);
/// scripts and MLflow's clients send none. So a POST without one, or
/// with one naming this server, comes from no other site's page.
fn from_another_origin(hosts: &AllowedHosts, req: &Request) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else { return false };
    let host = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, rest)| rest.trim_end_matches('/'));
    !host.is_some_and(|h| hosts.allows(h))
}

/// The middleware: request id, Host and content-type checks, and JSON
/// bodies on every error response.
pub async fn guard(State(hosts): State<Arc<AllowedHosts>>, req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let mlflow = is_mlflow(req.uri().path());
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let refused = refusal(&hosts, &req);
    let response = REQUEST_ID
        .scope(id.clone(), async move {
            let response = match (refused, slashes_merged(req.uri())) {
                (Some((status, message)), _) => error_body(status, mlflow, message),
                (None, Some(location)) => redirect(&location),
                (None, None) => next.run(req).await,
            };
            as_json(response, mlflow).await
        })
        .instrument(span)
        .await;
    let mut response = response;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// A path with `//` in it, merged, for a permanent redirect: MLflow's
/// server (Werkzeug) sends clients that join URLs carelessly
/// (`{tracking_uri}//model-versions/...`) to the single-slash route.
fn slashes_merged(uri: &axum::http::Uri) -> Option<String> {
    let path = uri.path();
    if !path.contains("//") {
        return None;
    }
    let mut merged = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    if let Some(query) = uri.query() {
        merged.push('?');
        merged.push_str(query);
    }
    Some(merged)
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

fn refusal(hosts: &AllowedHosts, req: &Request) -> Option<(StatusCode, String)> {
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        None => return Some((StatusCode::BAD_REQUEST, "the request has no Host header".into())),
        Some(h) if !hosts.allows(h) => {
            let shown: String = h.chars().take(100).collect();
            return Some((
                StatusCode::FORBIDDEN,
                format!(
                    "Host `{shown}` is not a name of this server; start it with `--allow-host NAME` to serve under that name \
                     (a page on another site can reach a local server under its own name, so unknown names are refused)"
                ),
            ));
        }
        Some(_) => {}
    }
    let given = essence(req);
    // The raw upload's body has any type; a browser's page of another
    // site is what the content-type rule keeps out, so that is refused.
    let exempt = is_raw_upload(req.uri().path()) && !from_another_origin(hosts, req);
    if req.method() == Method::POST && simple_content_type(&given) && !exempt {
        let given = if given.is_empty() { "none".to_string() } else { format!("`{given}`") };
        return Some((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "a POST needs a Content-Type of `application/json` (`application/toml` for a pipeline file, the file's own type \
                 for an upload); got {given}. Forms and text/plain bodies are refused because any web page can send them"
            ),
        ));
    }
    None
}

/// An error response in the route's JSON shape.
pub fn error_body(status: StatusCode, mlflow: bool, message: String) -> Response {
    let message = if status.is_server_error() { server_fault(&message) } else { message };
    let body = if mlflow {
        let code = match status {
            StatusCode::NOT_FOUND => "ENDPOINT_NOT_FOUND",
            s if s.is_server_error() => "INTERNAL_ERROR",
            _ => "INVALID_PARAMETER_VALUE",
        };
        serde_json::json!({"error_code": code, "message": message})
    } else {
        serde_json::json!({"error": message})
    };
    (status, axum::Json(body)).into_response()
}

/// Rewrite an error response that is not JSON (axum's rejections: a body
/// too large, a wrong content type, an unknown route…) as JSON, keeping
/// its status and its words.
async fn as_json(response: Response, mlflow: bool) -> Response {
    let status = response.status();
    let json = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 << 10).await.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    let mut out = error_body(status, mlflow, message);
    // Keep what the original said besides its body (Allow on a 405…).
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubled_slashes_are_merged_query_kept() {
        let uri: axum::http::Uri = "/x//model-versions///get-artifact?path=a//b".parse().unwrap();
        assert_eq!(slashes_merged(&uri).as_deref(), Some("/x/model-versions/get-artifact?path=a//b"));
        assert_eq!(slashes_merged(&"/api/2.0/mlflow/runs/get?run_id=1".parse().unwrap()), None);
    }

    #[test]
    fn hosts_of_a_loopback_server() {
        let h = AllowedHosts::new("127.0.0.1:8080".parse().unwrap(), &[]);
        for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "localhost.:9"] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in ["rebind.evil.example:8080", "evil.example", "10.0.0.1:8080", "localhost.evil.example", ""] {
            assert!(!h.allows(bad), "{bad}");
        }
        let h = AllowedHosts::new("127.0.0.1:8080".parse().unwrap(), &["kiln.example.com".into()]);
        assert!(h.allows("kiln.example.com:443") && !h.allows("evil.example"));
        assert!(AllowedHosts::new("127.0.0.1:8080".parse().unwrap(), &["*".into()]).allows("anything"));
    }

    #[test]
    fn hosts_of_a_server_on_every_interface() {
        let h = AllowedHosts::new("0.0.0.0:8080".parse().unwrap(), &[]);
        assert!(h.allows("192.168.1.20:8080") && h.allows("[fe80::1]:8080") && h.allows("localhost"));
        assert!(!h.allows("rebind.evil.example:8080"));
    }

    #[test]
    fn simple_content_types_are_the_ones_forms_send() {
        for t in ["", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"] {
            assert!(simple_content_type(t), "{t}");
        }
        for t in ["application/json", "application/toml", "text/csv", "application/octet-stream"] {
            assert!(!simple_content_type(t), "{t}");
        }
    }

    #[test]
    fn a_raw_upload_from_another_sites_page_is_refused_and_one_without_an_origin_is_not() {
        let hosts = AllowedHosts::new("127.0.0.1:5000".parse().unwrap(), &[]);
        let post = |path: &str, origin: Option<&str>| {
            let mut b = Request::builder().method(Method::POST).uri(path).header(header::HOST, "127.0.0.1:5000");
            if let Some(o) = origin {
                b = b.header(header::ORIGIN, o);
            }
            refusal(&hosts, &b.body(axum::body::Body::empty()).unwrap()).map(|(status, _)| status)
        };
        let upload = "/ajax-api/2.0/mlflow/upload-artifact?run_uuid=r&path=a.txt";
        assert_eq!(post(upload, None), None);
        assert_eq!(post(upload, Some("http://127.0.0.1:5000")), None);
        assert_eq!(post(upload, Some("https://evil.example")), Some(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        assert_eq!(post(upload, Some("null")), Some(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        // Every other POST still needs a content type no form can send.
        assert_eq!(post("/api/2.0/mlflow/runs/create", None), Some(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }

    #[test]
    fn mlflow_paths_are_known_under_both_prefixes_and_every_version() {
        for yes in [
            "/api/2.0/mlflow/runs/get",
            "/ajax-api/2.0/mlflow/metrics/get-history",
            "/api/3.0/mlflow/server-info",
            "/api/2.0/mlflow-artifacts/artifacts",
        ] {
            assert!(is_mlflow(yes), "{yes}");
        }
        for no in ["/api/v1/runs", "/health", "/ajax-api/", "/api/2.0/other", "/apix/2.0/mlflow"] {
            assert!(!is_mlflow(no), "{no}");
        }
    }
}
