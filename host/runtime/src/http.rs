//! Outbound HTTP (wasi:http) for deployers, to the `host:port`s the
//! operator granted and nowhere else.
//!
//! The check is on the request's authority, before any connection is
//! made; a name is resolved by the host only once it was allowed, and
//! wasi:http follows no redirects, so an allowed host cannot bounce the
//! plugin elsewhere. Every request also ends by the call's deadline: a
//! plugin waiting on a slow server is in the host, where the epoch
//! deadline does not reach it.

use std::future::Future;
use std::time::Instant;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The authorities (`host:port`, lower case) a call may reach.
#[derive(Debug, Default)]
pub struct HttpAllowList {
    pub allowed: Vec<String>,
    pub deadline: Option<Instant>,
}

/// `host:port` of `uri`, the port spelled out from the scheme when absent.
pub fn authority_of(uri: &http::Uri) -> Option<String> {
    let authority = uri.authority()?;
    let port = authority.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })?;
    Some(format!("{}:{port}", authority.host().to_ascii_lowercase()))
}

type Sent = Box<dyn Future<Output = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error>> + Send>;

impl WasiHttpHooks for HttpAllowList {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Sent {
        _ = fut;
        let wanted = authority_of(request.uri());
        let allowed = wanted.as_ref().is_some_and(|a| self.allowed.iter().any(|g| g == a));
        if !allowed {
            tracing::warn!(target: "kiln::plugin", authority = wanted.as_deref().unwrap_or("?"), "outbound HTTP refused: not granted");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let deadline = self.deadline;
        Box::new(async move {
            use http_body_util::BodyExt;
            let send = wasmtime_wasi_http::default_send_request(request, options);
            let (res, io) = match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), send).await.map_err(|_| Error::ConnectionTimeout)??,
                None => send.await?,
            };
            Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authority_has_its_port_spelled_out() {
        let a = |s: &str| authority_of(&s.parse().unwrap());
        assert_eq!(a("http://Example.com/x").as_deref(), Some("example.com:80"));
        assert_eq!(a("https://example.com/x").as_deref(), Some("example.com:443"));
        assert_eq!(a("http://127.0.0.1:9000/hook").as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(a("/relative"), None);
    }
}
