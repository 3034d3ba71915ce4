//! Remotes: where `kiln data push` sends blobs and `pull` fetches them,
//! configured in `kiln.toml` at the workspace root:
//!
//! ```toml
//! [remotes.backup]
//! url = "/mnt/shared/kiln-blobs"   # a folder (absolute, or relative to kiln.toml)
//!
//! [remotes.s3]
//! url = "s3://my-bucket/kiln"      # S3 or any S3-compatible store
//! endpoint = "http://127.0.0.1:9000"   # optional: MinIO, R2, Ceph, moto…
//! region = "eu-west-1"
//!
//! [data]
//! remote = "backup"                # the default for push and pull
//! ```
//!
//! Both kinds go through the object_store crate, so there is one transfer
//! path. S3 credentials come from the usual `AWS_*` environment variables
//! (or the instance's role); any object_store S3 option (`region`,
//! `endpoint`, `virtual_hosted_style_request`, …) may be set in the
//! remote's table, though secrets belong in the environment, not in a
//! committed file.
//!
//! A remote holds blobs in the blob store's layout (`aa/bbbb…`), so it can
//! be read by any Kiln workspace. Transfers move only what the other side
//! lacks, many at once, and every byte is hashed on the way: a blob whose
//! content does not match its id is never stored on either side. Uploads
//! are atomic (an S3 object or multipart upload appears only when
//! complete; a folder blob is written aside and renamed), so an
//! interrupted push never leaves a truncated blob under its id.

use crate::blobs::BlobStore;
use anyhow::{Context, Result, bail};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

pub const CONFIG_FILE: &str = "kiln.toml";

/// Transfers in flight at once: enough to hide an object store's
/// per-request latency, few enough not to trip its rate limits.
pub const CONCURRENCY: usize = 16;

/// Chunk size of reads and of multipart parts.
const CHUNK: usize = 8 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub remotes: BTreeMap<String, RemoteConfig>,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub limits: crate::files::SizeLimits,
}

#[derive(Debug, Deserialize)]
pub struct RemoteConfig {
    pub url: String,
    /// Store options (S3 only), checked when the remote is opened.
    #[serde(flatten)]
    pub options: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The remote `push` and `pull` use when none is named.
    pub remote: Option<String>,
}

impl Config {
    /// `kiln.toml` in `root`, or an empty config if there is none.
    pub fn load(root: &Path) -> Result<Self> {
        let file = root.join(CONFIG_FILE);
        match crate::files::read_text(&file, 1 << 20) {
            Ok(text) => toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
        }
    }

    /// The remote called `name`, or the default one. A folder remote is
    /// created when `create` (pushing) and must exist otherwise.
    pub fn remote(&self, root: &Path, name: Option<&str>, create: bool) -> Result<Remote> {
        let file = root.join(CONFIG_FILE);
        let name = match name.or(self.data.remote.as_deref()) {
            Some(n) => n,
            None if self.remotes.len() == 1 => self.remotes.keys().next().unwrap(),
            None if self.remotes.is_empty() => {
                bail!("no remote is configured: add one to {} ([remotes.NAME] url = \"/path/to/folder\" or \"s3://bucket/prefix\")", file.display())
            }
            None => bail!(
                "several remotes are configured ({}); name one with --remote or set [data] remote = \"NAME\" in {CONFIG_FILE}",
                self.remotes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        let cfg = self.remotes.get(name).with_context(|| {
            format!("no remote `{name}` in {} (configured: {})", file.display(), self.remotes.keys().cloned().collect::<Vec<_>>().join(", "))
        })?;
        let url = cfg.url.as_str();
        let mut hint = None;
        let (store, prefix): (Arc<dyn ObjectStore>, ObjPath) = if let Some(rest) = url.strip_prefix("s3://") {
            hint = credential_hint(&cfg.options);
            s3(name, url, rest, &cfg.options, &file)?
        } else if url.contains("://") && !url.starts_with("file://") {
            bail!("remote `{name}` in {}: `{url}` is not supported; a remote is a folder path or an s3:// URL", file.display());
        } else {
            if let Some(key) = cfg.options.keys().next() {
                bail!("remote `{name}` in {}: `{key}` is not an option of a folder remote (only `url`)", file.display());
            }
            let dir = PathBuf::from(url.trim_start_matches("file://"));
            let dir = if dir.is_absolute() { dir } else { root.join(dir) };
            if create {
                std::fs::create_dir_all(&dir).with_context(|| format!("creating the folder of remote `{name}`, {}", dir.display()))?;
            } else if !dir.is_dir() {
                bail!("remote `{name}`: the folder {} does not exist (nothing was pushed there yet?)", dir.display());
            }
            let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .with_context(|| format!("opening the folder of remote `{name}`, {}", dir.display()))?;
            (Arc::new(store), ObjPath::default())
        };
        Ok(Remote { name: name.to_string(), url: url.to_string(), store, prefix, hint })
    }
}

/// An S3 store from `s3://BUCKET[/PREFIX]` and the remote's options, with
/// credentials and defaults from the environment.
fn s3(name: &str, url: &str, rest: &str, options: &BTreeMap<String, toml::Value>, file: &Path) -> Result<(Arc<dyn ObjectStore>, ObjPath)> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("remote `{name}` in {}: `{url}` names no bucket (s3://BUCKET/PREFIX)", file.display());
    }
    // reqwest is built without a TLS provider of its own (see object_store
    // in Cargo.toml); ring's becomes the process default, once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (key, value) in options {
        let value = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Integer(i) => i.to_string(),
            other => bail!("remote `{name}` in {}: `{key}` must be a string, a boolean or a number, not {}", file.display(), other.type_str()),
        };
        let config_key = AmazonS3ConfigKey::from_str(key).map_err(|_| {
            anyhow::anyhow!(
                "remote `{name}` in {}: `{key}` is not an S3 option (for example: region, endpoint, virtual_hosted_style_request, allow_http)",
                file.display()
            )
        })?;
        // Writing an http:// endpoint is asking for plain HTTP (a local
        // MinIO or moto); object_store would otherwise refuse it.
        if matches!(config_key, AmazonS3ConfigKey::Endpoint) && value.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
        builder = builder.with_config(config_key, value);
    }
    let store = builder.build().map_err(|e| anyhow::anyhow!("remote `{name}` ({url}): {}", brief(&e)))?;
    let prefix = ObjPath::parse(prefix.trim_end_matches('/')).with_context(|| format!("remote `{name}`: the prefix in `{url}`"))?;
    Ok((Arc::new(store), prefix))
}

/// Where S3 credentials come from when none are given: object_store then
/// asks the cloud's instance metadata service, whose failure alone would
/// not tell a user what was missing.
fn credential_hint(options: &BTreeMap<String, toml::Value>) -> Option<&'static str> {
    let given = ["AWS_ACCESS_KEY_ID", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
        || options.keys().any(|k| k.ends_with("access_key_id") || k.ends_with("skip_signature"));
    (!given).then_some("no S3 credentials were given (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), so the instance metadata service was asked")
}

/// An object_store error in one line: its own message already includes
/// its causes, and an S3 error document is cut down to code and message.
fn brief(e: &object_store::Error) -> String {
    let text = e.to_string();
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_string())
    };
    match (tag("Code"), tag("Message"), text.find("<?xml")) {
        (Some(code), Some(message), Some(at)) => format!("{}{code}: {message}", &text[..at]),
        _ => text,
    }
}

/// A configured remote, open.
#[derive(Debug, Clone)]
pub struct Remote {
    pub name: String,
    pub url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    hint: Option<&'static str>,
}

impl Remote {
    /// `doing` failed with `e`: one line naming the remote (and what may
    /// be missing).
    fn error(&self, doing: String, e: impl std::fmt::Display) -> anyhow::Error {
        let hint = self.hint.map(|h| format!(" ({h})")).unwrap_or_default();
        anyhow::anyhow!("{doing} remote `{}` ({}): {e}{hint}", self.name, self.url)
    }

    fn path_of(&self, id: &str) -> ObjPath {
        self.prefix.clone().join(&id[..2]).join(&id[2..])
    }

    /// Whether the remote holds `id` (existence, not content: content is
    /// verified whenever it is read).
    pub async fn contains(&self, id: &str) -> Result<bool> {
        match self.store.head(&self.path_of(id)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(format!("asking for {id} on"), brief(&e))),
        }
    }

    /// Send a local blob, hashing it on the way; returns the bytes sent.
    /// A local blob whose bytes do not hash to its id is not sent.
    pub async fn push(&self, blobs: &BlobStore, id: &str) -> Result<u64> {
        let src = blobs.file(id)?;
        let mut out = object_store::buffered::BufWriter::with_capacity(self.store.clone(), self.path_of(id), CHUNK);
        let total = match self.send(&src, id, &mut out).await {
            Ok(total) => total,
            Err(e) => {
                // Nothing becomes visible: a pending multipart upload is
                // cancelled, a small object was never put.
                let _ = out.abort().await;
                return Err(self.error(format!("pushing {id} to"), format!("{e:#}")));
            }
        };
        // Completing the upload is what makes the object appear.
        if let Err(e) = tokio::io::AsyncWriteExt::shutdown(&mut out).await {
            let text = match e.get_ref().and_then(|inner| inner.downcast_ref::<object_store::Error>()) {
                Some(store_error) => brief(store_error),
                None => e.to_string(),
            };
            return Err(self.error(format!("pushing {id} to"), text));
        }
        Ok(total)
    }

    /// Feed the file at `src` into `out`, checking that it hashes to `id`.
    async fn send(&self, src: &Path, id: &str, out: &mut object_store::buffered::BufWriter) -> Result<u64> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(2);
        // The file is read on a blocking thread, a chunk ahead of the upload.
        let reader = {
            let src = src.to_path_buf();
            tokio::task::spawn_blocking(move || {
                let mut file = match std::fs::File::open(&src) {
                    Ok(f) => f,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                loop {
                    let mut buf = vec![0u8; CHUNK];
                    match crate::hashing::read_full(&mut file, &mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            buf.truncate(n);
                            if tx.blocking_send(Ok(buf)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                }
            })
        };
        let mut hasher = blake3::Hasher::new();
        let mut total = 0u64;
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk.with_context(|| format!("reading {}", src.display()))?;
            hasher.update(&chunk);
            total += chunk.len() as u64;
            out.put(chunk.into()).await.map_err(|e| anyhow::anyhow!("{}", brief(&e)))?;
        }
        reader.await.context("the reading thread failed")?;
        let got = hasher.finalize().to_hex().to_string();
        if got != id {
            bail!("the local blob {} is corrupt (its bytes hash to {got}); not sent", src.display());
        }
        Ok(total)
    }

    /// Fetch a blob into the local store, hashing it on the way; nothing
    /// is stored unless the bytes hash to `id`.
    pub async fn pull(&self, blobs: &BlobStore, id: &str) -> Result<u64> {
        use futures_util::StreamExt;
        let got = match self.store.get(&self.path_of(id)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => bail!("remote `{}` ({}) does not have {id}", self.name, self.url),
            Err(e) => return Err(self.error(format!("fetching {id} from"), brief(&e))),
        };
        let mut writer = blobs.writer()?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(format!("fetching {id} from"), brief(&e)))?;
            writer.write(&chunk)?;
        }
        let (got, size) = writer.finish()?;
        if got != id {
            bail!("remote `{}` ({}) holds corrupt data for {id} (its bytes hash to {got}); nothing was stored", self.name, self.url);
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn s3_options_are_checked_by_name() {
        let root = Path::new("/tmp");
        let c = config("[remotes.s3]\nurl = \"s3://bucket/some/prefix\"\nendpoint = \"http://127.0.0.1:9\"\nregion = \"eu-west-1\"\n");
        let r = c.remote(root, None, false).unwrap();
        assert_eq!(r.path_of("abcdef").as_ref(), "some/prefix/ab/cdef");
        let c = config("[remotes.s3]\nurl = \"s3://bucket\"\nendpoit = \"http://x\"\n");
        let e = format!("{:#}", c.remote(root, None, false).unwrap_err());
        assert!(e.contains("`endpoit` is not an S3 option") && e.contains("kiln.toml"), "{e}");
        let c = config("[remotes.s3]\nurl = \"s3:///x\"\n");
        let e = format!("{:#}", c.remote(root, None, false).unwrap_err());
        assert!(e.contains("names no bucket"), "{e}");
    }

    #[test]
    fn folder_remotes_take_no_options_and_other_schemes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = config("[remotes.f]\nurl = \"blobs\"\nregion = \"x\"\n");
        let e = format!("{:#}", c.remote(dir.path(), None, true).unwrap_err());
        assert!(e.contains("`region` is not an option of a folder remote"), "{e}");
        let c = config("[remotes.g]\nurl = \"gs://bucket\"\n");
        let e = format!("{:#}", c.remote(dir.path(), None, true).unwrap_err());
        assert!(e.contains("gs://bucket") && e.contains("not supported"), "{e}");
        let c = config("[remotes.f]\nurl = \"blobs\"\n");
        let e = format!("{:#}", c.remote(dir.path(), None, false).unwrap_err());
        assert!(e.contains("does not exist"), "{e}");
        c.remote(dir.path(), None, true).unwrap();
        assert!(dir.path().join("blobs").is_dir());
    }
}
