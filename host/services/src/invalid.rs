//! The one error type services use for "the request is wrong": a bad
//! name, an override that does not apply, params a plugin refuses. The
//! API maps it to 400; anything it does not recognise as the client's
//! mistake is a server fault (500).

/// A request that cannot be carried out as asked; the message says why
/// and names the field or value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// `Err(Invalid(message))` as an `anyhow::Error`.
pub fn invalid(message: impl Into<String>) -> anyhow::Error {
    Invalid(message.into()).into()
}
