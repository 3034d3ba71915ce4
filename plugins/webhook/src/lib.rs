//! `webhook`: a deployer that POSTs the deployment's description as JSON
//! to `url`, for a CD system or a chat hook to act on. The host lets the
//! request out only if the operator granted its `host:port`
//! (`--allow-http`); the answer's status decides the outcome.

use kiln_sdk::{DeployOutcome, DeployRequest, Deployer, Description, Params, PluginError, Result};

pub struct Webhook;

/// `http(s)://authority/path` → (https?, authority, path).
fn split_url(url: &str) -> Result<(bool, String, String)> {
    let bad = || PluginError::invalid_params("url", format!("`{url}` is not an http:// or https:// URL"));
    let (https, rest) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        _ => return Err(bad()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    Ok((https, authority.to_string(), path.to_string()))
}

impl Deployer for Webhook {
    fn describe() -> Description {
        Description {
            name: "webhook".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "POSTs the deployment's description (JSON) to a URL the operator granted".into(),
            params_schema: serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["url"],
                "properties": {
                    "url": {"type": "string", "description": "where to POST (its host:port must be granted with --allow-http)"}
                }
            }),
        }
    }

    fn deploy(request: DeployRequest, params: Params) -> Result<DeployOutcome> {
        let url = params.str_or("url", "")?.to_string();
        let (https, authority, path) = split_url(&url)?;
        let version: serde_json::Value =
            std::fs::read_to_string("/artifacts/version.json").ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(serde_json::Value::Null);
        let body = serde_json::json!({
            "deployment": request.deployment,
            "model": {"name": request.model_name, "version": request.model_version, "digest": request.model_digest},
            "traffic_percent": request.traffic_percent,
            "version": version,
        })
        .to_string();
        let status = post(https, &authority, &path, body.as_bytes())?;
        if !(200..300).contains(&status) {
            return Err(PluginError::internal(format!("{url} answered {status}")));
        }
        Ok(DeployOutcome { status: "notified".into(), endpoint: Some(url), manifest: body })
    }
}

#[cfg(target_arch = "wasm32")]
fn post(https: bool, authority: &str, path: &str, body: &[u8]) -> Result<u16> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    let failed = |what: &str, e: String| PluginError::internal(format!("{what}: {e}"));
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"application/json".to_vec()),
        ("content-length".to_string(), body.len().to_string().into_bytes()),
    ])
    .map_err(|e| failed("headers", format!("{e:?}")))?;
    let request = OutgoingRequest::new(headers);
    let set = |ok: std::result::Result<(), ()>, what: &str| ok.map_err(|()| failed(what, "refused".into()));
    set(request.set_method(&Method::Post), "method")?;
    set(request.set_scheme(Some(if https { &Scheme::Https } else { &Scheme::Http })), "scheme")?;
    set(request.set_authority(Some(authority)), "authority")?;
    set(request.set_path_with_query(Some(path)), "path")?;
    let outgoing = request.body().map_err(|()| failed("body", "taken".into()))?;
    let response = outgoing_handler::handle(request, None).map_err(|e| failed("sending", format!("{e:?}")))?;
    // A refused request closes the body under us; the response then says
    // why, which is what the user needs to read.
    let written = (|| {
        let stream = outgoing.write().map_err(|()| "no stream".to_string())?;
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| format!("{e:?}"))?;
        }
        drop(stream);
        OutgoingBody::finish(outgoing, None).map_err(|e| format!("{e:?}"))
    })();
    response.subscribe().block();
    let answer = response
        .get()
        .ok_or_else(|| failed("the response", "not ready".into()))?
        .map_err(|()| failed("the response", "taken twice".into()))?
        .map_err(|e| match e {
            wasi::http::types::ErrorCode::HttpRequestDenied => PluginError::unsupported(format!(
                "the host refused to send to {authority}: it was not granted (deploy with --allow-http {authority}, \
                 or `kiln plugin grant webhook --allow-http {authority}`)"
            )),
            e => failed(&format!("POST {authority}{path}"), format!("{e:?}")),
        })?;
    written.map_err(|e| failed("writing the body", e))?;
    Ok(answer.status())
}

#[cfg(not(target_arch = "wasm32"))]
fn post(_: bool, _: &str, _: &str, _: &[u8]) -> Result<u16> {
    Err(PluginError::unsupported("the webhook sends through wasi:http; it runs as a component only"))
}

kiln_sdk::export_deployer!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        assert_eq!(split_url("http://127.0.0.1:9000/hook?x=1").unwrap(), (false, "127.0.0.1:9000".into(), "/hook?x=1".into()));
        assert_eq!(split_url("https://hooks.example.com").unwrap(), (true, "hooks.example.com".into(), "/".into()));
        for bad in ["ftp://x/y", "hooks.example.com/x", "http://user@host/x", "http:///x"] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }
}
