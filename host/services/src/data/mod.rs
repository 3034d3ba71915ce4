//! Data versioning: `kiln data add` hashes a file or a directory with
//! BLAKE3, stores the bytes once in the blob store, registers a numbered
//! dataset version (with a schema and column profile for CSV and Parquet)
//! and writes a pointer file for git; `status` and `checkout` compare and
//! restore the workspace against the pointers.
//!
//! Order of an `add`, so that an interruption never leaves a visible half:
//! hash (and profile) → blobs (each written to a temporary file and renamed)
//! → the version row (one transaction) → the pointer (temporary file and
//! rename) → `.gitignore`. Re-running an interrupted add finds the blobs
//! already there and completes the rest.

pub use kiln_data::{hashing, pointer, profile, remote};
use kiln_data::{state, walk};

use crate::app::App;
use crate::blobs::BlobStore;
use crate::store::{DatasetVersion, NewDatasetVersion};
use anyhow::{Context, Result, bail};
use pointer::Pointer;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use state::State;
use std::path::{Path, PathBuf};

/// The list of files a directory version holds; stored as a blob, and its
/// hash is the version's hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative to the directory, `/`-separated.
    pub path: String,
    pub hash: String,
    pub size: u64,
}

/// What the commands that never touch the catalogue (status, checkout,
/// push, pull) work on: the workspace's files and its blob store. They
/// skip opening the database, a sizeable part of a 10,000-file `status`.
pub struct Local {
    pub workspace: crate::workspace::Workspace,
    pub blobs: BlobStore,
}

impl Local {
    /// The workspace here or above (created if there is none, as for
    /// every `kiln data` command).
    pub fn open() -> Result<Self> {
        let workspace = crate::workspace::Workspace::locate(true)?;
        let blobs = BlobStore::new(workspace.blob_dir());
        Ok(Local { workspace, blobs })
    }

    /// The workspace root as the kernel names it: what links may not leave.
    fn root(&self) -> Result<PathBuf> {
        self.workspace.root().canonicalize().context("resolving the workspace folder")
    }
}

impl App {
    pub fn local(&self) -> Local {
        Local { workspace: self.workspace.clone(), blobs: self.blobs.clone() }
    }
}

pub struct AddOptions {
    pub name: Option<String>,
    pub profile: bool,
    /// Store files as hard links to the workspace's (made read-only)
    /// instead of copies: instant, no second copy on disk.
    pub hardlink: bool,
}

#[derive(Debug)]
pub struct Added {
    pub version: DatasetVersion,
    /// False when this content already was a version of the name.
    pub created: bool,
    pub pointer: PathBuf,
    pub new_blobs: u64,
    pub new_bytes: u64,
}

/// The tabular format a version is profiled for, by extension ("" for
/// opaque data), as stored in `dataset_versions.format`.
pub fn format_of(path: &Path) -> &'static str {
    profile::format_of(path).unwrap_or("")
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        bail!("dataset name {name:?} must be 1 to 200 letters, digits, `_`, `-` or `.` (use --name)");
    }
    Ok(())
}

/// The data path given on the command line, made absolute and checked to
/// lie inside the workspace (pointers are committed beside it).
fn resolve(local: &Local, path: &Path) -> Result<PathBuf> {
    let root = local.root()?;
    let meta = std::fs::symlink_metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let abs = if meta.file_type().is_symlink() {
        // Keep the link's own name (the pointer sits beside it); its
        // target is read through it, so it must lie in the workspace too.
        walk::check_link(path, &root)?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        match path.file_name() {
            Some(name) => parent.canonicalize().with_context(|| format!("cannot read {}", parent.display()))?.join(name),
            None => path.canonicalize().with_context(|| format!("cannot read {}", path.display()))?,
        }
    } else {
        path.canonicalize().with_context(|| format!("cannot read {}", path.display()))?
    };
    if abs == root {
        bail!("{} is the workspace's own folder; add a file or a folder inside it (its pointer file goes beside it)", path.display());
    }
    if !abs.starts_with(&root) {
        bail!("{} is outside the workspace {} (data is tracked from inside it, where its pointer file is committed)", path.display(), root.display());
    }
    let target = std::fs::metadata(&abs).with_context(|| format!("cannot read {}", path.display()))?;
    if !target.is_file() && !target.is_dir() {
        bail!("{} is {}; Kiln versions regular files and folders", path.display(), crate::limits::kind_of(&target));
    }
    if abs.components().any(|c| c.as_os_str() == crate::workspace::DIR_NAME) {
        bail!("{} is inside Kiln's own folder {}", path.display(), crate::workspace::DIR_NAME);
    }
    if abs.extension().is_some_and(|e| e == pointer::EXTENSION) {
        bail!("{} is a pointer file; give the data path it names", path.display());
    }
    Ok(abs)
}

fn relative(local: &Local, abs: &Path) -> String {
    let root = local.workspace.root().canonicalize().unwrap_or_else(|_| local.workspace.root().to_path_buf());
    abs.strip_prefix(&root).unwrap_or(abs).to_string_lossy().into_owned()
}

/// A progress bar on stderr for long work (hidden when stderr is not a
/// terminal, and for short work).
fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    if total < (256 << 20) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Hash files in parallel (cache first) and copy the new ones into the
/// blob store; each source is re-checked after its copy.
fn store_files(blobs: &BlobStore, state: &State, files: &[walk::Found], hardlink: bool, what: &str) -> Result<(Vec<ManifestEntry>, u64, u64)> {
    let total: u64 = files.iter().map(|f| f.stamp.size).sum();
    let bar = progress_bar(total, what);
    let staging = blobs.staging()?;
    let results: Vec<Result<(ManifestEntry, Option<u64>)>> = files
        .par_iter()
        .map(|walk::Found { rel, path, stamp }| {
            if !hardlink && stamp.size < hashing::SMALL && state.cached(path, stamp).is_none() {
                // Read once: hash and store from the same buffer.
                let (bytes, before) = hashing::read_small(path)?;
                let hash = blake3::hash(&bytes).to_hex().to_string();
                let created = staging.stage_bytes(&hash, &bytes).with_context(|| format!("storing {}", path.display()))?;
                state.remember(path, before, &hash);
                bar.inc(before.size);
                return Ok((ManifestEntry { path: rel.clone(), hash, size: before.size }, created.then_some(before.size)));
            }
            let (hash, before) = state.hash(path, *stamp, &|n| bar.inc(n))?;
            let created = staging.stage_file(&hash, path, hardlink).with_context(|| format!("storing {}", path.display()))?;
            // Made read-only by a hard link: the ctime moves, not the stamp.
            if created && hashing::stamp(path)? != before {
                // Changed between the hash and the copy: the blob holds
                // unknown bytes under this hash. Nothing has recorded it
                // yet; refuse so that nothing does.
                return Err(hashing::HashError::Changed { path: path.clone() }.into());
            }
            Ok((ManifestEntry { path: rel.clone(), hash, size: before.size }, created.then_some(before.size)))
        })
        .collect();
    bar.finish_and_clear();
    let mut entries = Vec::with_capacity(files.len());
    let (mut new_blobs, mut new_bytes) = (0, 0);
    for r in results {
        // An error drops `staging`, which removes every staged copy.
        let (entry, created) = r?;
        if let Some(n) = created {
            new_blobs += 1;
            new_bytes += n;
        }
        entries.push(entry);
    }
    staging.commit()?;
    Ok((entries, new_blobs, new_bytes))
}

/// `kiln data add PATH`.
pub async fn add(app: &App, path: &Path, opts: AddOptions) -> Result<Added> {
    let local = app.local();
    let abs = resolve(&local, path)?;
    let stem = if abs.is_dir() { abs.file_name() } else { abs.file_stem() };
    let name = opts.name.clone().unwrap_or_else(|| stem.unwrap_or_default().to_string_lossy().into_owned());
    check_name(&name)?;
    let (blobs, kiln_dir, root) = (app.blobs.clone(), app.workspace.dir.clone(), local.root()?);
    let work_path = abs.clone();
    let (profile, hardlink) = (opts.profile, opts.hardlink);
    // Hashing, copying and profiling are blocking work for all cores.
    let done = tokio::task::spawn_blocking(move || -> Result<_> {
        let state = State::load(&kiln_dir);
        let abs = work_path;
        let result = if abs.is_dir() {
            let files = walk::files(&abs, walk::Links::FollowWithin(&root))?;
            let (entries, new_blobs, new_bytes) = store_files(&blobs, &state, &files, hardlink, "hashing")?;
            let size = entries.iter().map(|e| e.size).sum::<u64>();
            let count = entries.len() as u64;
            let manifest = serde_json::to_vec(&Manifest { files: entries })?;
            let hash = blobs.put(&manifest)?;
            (hash, "dir", size, count, String::new(), None, new_blobs, new_bytes)
        } else {
            let format = format_of(&abs);
            // Profile before storing anything: a malformed file is refused
            // whole unless the user asks for opaque storage.
            let profiled = if profile && !format.is_empty() {
                profile::profile_path(&abs)
                    .map_err(|e| anyhow::anyhow!("{e}\n(to store it as opaque data without a profile, add it with --no-profile)"))?
            } else {
                None
            };
            let rel = abs.file_name().unwrap().to_string_lossy().into_owned();
            let stamp = hashing::stamp(&abs)?;
            let (entries, new_blobs, new_bytes) = store_files(&blobs, &state, &[walk::Found { rel, path: abs.clone(), stamp }], hardlink, "hashing")?;
            let e = &entries[0];
            let profiled = profiled.map(|(schema, profile)| (serde_json::to_string(&schema), serde_json::to_string(&profile)));
            let profiled = match profiled {
                Some((Ok(s), Ok(p))) => Some((s, p)),
                Some(_) => bail!("could not serialise the profile of {}", abs.display()),
                None => None,
            };
            (e.hash.clone(), "file", e.size, 1, format.to_string(), profiled, new_blobs, new_bytes)
        };
        state.save()?;
        Ok(result)
    })
    .await??;
    let (hash, kind, size, files, format, profiled, new_blobs, new_bytes) = done;
    let (schema_json, profile_json) = profiled.unzip();
    let (version, created) = app
        .store
        .add_dataset_version(NewDatasetVersion {
            name,
            hash,
            kind: kind.to_string(),
            size: size as i64,
            files: files as i64,
            path: relative(&local, &abs),
            format,
            schema_json,
            profile_json,
        })
        .await?;
    let pointer_file = pointer::pointer_path(&abs);
    Pointer {
        name: version.name.clone(),
        version: version.version,
        path: abs.file_name().unwrap().to_string_lossy().into_owned(),
        kind: version.kind.clone(),
        hash: version.hash.clone(),
        size,
        files,
    }
    .write(&pointer_file)?;
    pointer::ignore_in_git(&abs).with_context(|| format!("adding {} to .gitignore", abs.display()))?;
    Ok(Added { version, created, pointer: pointer_file, new_blobs, new_bytes })
}

/// What a tracked path looks like against its pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataState {
    Unchanged,
    Modified,
    Missing,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusEntry {
    pub pointer: String,
    pub path: String,
    pub name: String,
    pub version: i64,
    pub state: DataState,
    /// For directories: what differs (files modified, missing, added).
    pub detail: String,
}

/// The pointer files named by `paths` (pointers, data paths or folders to
/// search), or every pointer in the workspace. Folders are searched the
/// way git sees them: hidden and git-ignored entries are skipped.
pub fn find_pointers(local: &Local, paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let root = local.workspace.root().to_path_buf();
    let roots: Vec<PathBuf> = if paths.is_empty() { vec![root] } else { paths.to_vec() };
    let mut found = Vec::new();
    for p in roots {
        let is_pointer = p.extension().is_some_and(|e| e == pointer::EXTENSION);
        if is_pointer {
            found.push(p);
        } else if pointer::pointer_path(&p).exists() {
            found.push(pointer::pointer_path(&p));
        } else if p.is_dir() {
            let walk = ignore::WalkBuilder::new(&p).hidden(true).git_ignore(true).require_git(false).build();
            for entry in walk {
                let entry = entry.with_context(|| format!("searching {} for pointer files", p.display()))?;
                if entry.file_type().is_some_and(|t| t.is_file()) && entry.path().extension().is_some_and(|e| e == pointer::EXTENSION) {
                    found.push(entry.into_path());
                }
            }
        } else {
            bail!("{} is not tracked (no {} beside it)", p.display(), pointer::pointer_path(&p).display());
        }
    }
    // Absolute, canonical paths: the hash cache is keyed by them.
    let mut found = found
        .into_iter()
        .map(|p| p.canonicalize().with_context(|| format!("cannot read pointer file {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    found.sort();
    found.dedup();
    Ok(found)
}

/// A directory version's manifest, from the blob store.
fn manifest(blobs: &BlobStore, p: &Pointer, pointer_file: &Path) -> Result<Manifest> {
    let bytes = manifest_bytes(blobs, p, pointer_file)?;
    let m: Manifest =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: the manifest {} is not a directory listing", pointer_file.display(), p.hash))?;
    for e in &m.files {
        check_entry_path(&e.path, pointer_file, &p.hash)?;
    }
    Ok(m)
}

/// A manifest's paths stay inside their folder: one pulled from a shared
/// remote must not name `../../.bashrc`.
fn check_entry_path(path: &str, pointer_file: &Path, hash: &str) -> Result<()> {
    let plain =
        !path.is_empty() && !path.contains(['\0', '\\']) && Path::new(path).components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain {
        bail!("{}: the manifest {hash} lists {path:?}, which is not a path inside the folder", pointer_file.display());
    }
    Ok(())
}

/// A manifest read in place (paths and hashes borrowed from its bytes):
/// `status` reads one per folder on every call.
#[derive(Deserialize)]
struct ManifestView<'a> {
    #[serde(borrow)]
    files: Vec<EntryView<'a>>,
}

#[derive(Deserialize)]
struct EntryView<'a> {
    #[serde(borrow)]
    path: std::borrow::Cow<'a, str>,
    hash: &'a str,
}

fn manifest_bytes(blobs: &BlobStore, p: &Pointer, pointer_file: &Path) -> Result<Vec<u8>> {
    blobs.get(&p.hash).map_err(|e| match e {
        crate::blobs::BlobError::Missing(_) => anyhow::anyhow!(
            "{}: its hash {} is not in the blob store (edited by hand, or not fetched yet: `kiln data pull`)",
            pointer_file.display(),
            p.hash
        ),
        other => anyhow::anyhow!("{}: {other}", pointer_file.display()),
    })
}

/// Whether a workspace file holds `hash`: by stamp from the cache, else by
/// reading it.
fn holds(state: &State, root: &Path, path: &Path, hash: &str) -> Result<Option<bool>> {
    // A link out of the workspace is a change, and is not read.
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) && walk::check_link(path, root).is_err() {
        return Ok(Some(false));
    }
    let now = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => hashing::Stamp::of(&m),
        Ok(_) => return Ok(Some(false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(Some(state.hash(path, now, &|_| {})?.0 == hash))
}

/// `kiln data status`.
pub fn status(local: &Local, paths: &[PathBuf]) -> Result<Vec<StatusEntry>> {
    // Independent work side by side: decoding the cache is CPU, finding
    // the pointers (and below, walking a folder) mostly system calls.
    let (state, pointers) = rayon::join(|| State::load(&local.workspace.dir), || find_pointers(local, paths));
    let root = local.root()?;
    let mut out = Vec::new();
    for pf in pointers? {
        let p = Pointer::read(&pf)?;
        let data = p.data_path(&pf);
        let (st, detail) = if p.kind == "file" {
            match holds(&state, &root, &data, &p.hash)? {
                None => (DataState::Missing, String::new()),
                Some(true) => (DataState::Unchanged, String::new()),
                Some(false) => (DataState::Modified, String::new()),
            }
        } else if !data.is_dir() {
            (DataState::Missing, String::new())
        } else {
            let bytes = manifest_bytes(&local.blobs, &p, &pf)?;
            // One walk gives every file's stamp: unchanged files are
            // recognised from the cache without another system call.
            let (found, m) = rayon::join(
                || walk::files(&data, walk::Links::FollowWithin(&root)),
                || {
                    serde_json::from_slice::<ManifestView>(&bytes)
                        .with_context(|| format!("{}: the manifest {} is not a directory listing", pf.display(), p.hash))
                },
            );
            let (found, m) = (found?, m?);
            for e in &m.files {
                check_entry_path(&e.path, &pf, &p.hash)?;
            }
            let present: std::collections::HashMap<&str, &walk::Found, foldhash::fast::RandomState> =
                found.iter().map(|f| (f.rel.as_str(), f)).collect();
            // Unchanged files are answered by the cache, in one pass; only
            // the rest are read, on all cores.
            let mut key = state.key(&data);
            key.push('/');
            let base = key.len();
            let mut to_read = Vec::new();
            let mut results: Vec<Result<Option<bool>>> = Vec::with_capacity(m.files.len());
            let view = state.view();
            for e in &m.files {
                match present.get(e.path.as_ref()) {
                    None => results.push(Ok(None)),
                    Some(f) => {
                        key.truncate(base);
                        key.push_str(&e.path);
                        match view.holds(&key, &f.stamp, e.hash) {
                            Some(same) => results.push(Ok(Some(same))),
                            None => to_read.push((*f, e)),
                        }
                    }
                }
            }
            drop(view);
            results.par_extend(to_read.par_iter().map(|(f, e)| Ok(Some(state.hash(&f.path, f.stamp, &|_| {})?.0 == e.hash))));
            let (mut modified, mut missing) = (0, 0);
            for r in results {
                match r? {
                    None => missing += 1,
                    Some(false) => modified += 1,
                    Some(true) => {}
                }
            }
            // A manifest lists each path once, so what is present and not
            // missing from it is all the manifest matched; the rest is new.
            let added = present.len() - (m.files.len() - missing);
            let parts: Vec<String> = [(modified, "modified"), (missing, "missing"), (added, "added")]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, w)| format!("{n} {w}"))
                .collect();
            (if parts.is_empty() { DataState::Unchanged } else { DataState::Modified }, parts.join(", "))
        };
        out.push(StatusEntry {
            pointer: relative(local, &pf),
            path: relative(
                local,
                &data.parent().and_then(|d| d.canonicalize().ok()).map(|d| d.join(data.file_name().unwrap())).unwrap_or(data.clone()),
            ),
            name: p.name,
            version: p.version,
            state: st,
            detail,
        });
    }
    state.save()?;
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckedOut {
    pub path: String,
    pub name: String,
    pub version: i64,
    /// Files written (0 when the data already matched).
    pub restored: u64,
    /// Files removed from a directory because the version does not have them.
    pub removed: u64,
}

/// `kiln data checkout`: make the workspace hold what the pointers name.
/// Changes that no version holds are not overwritten without `force`.
pub fn checkout(local: &Local, paths: &[PathBuf], force: bool, hardlink: bool) -> Result<Vec<CheckedOut>> {
    let state = State::load(&local.workspace.dir);
    let root = local.root()?;
    let mut out = Vec::new();
    for pf in find_pointers(local, paths)? {
        let p = Pointer::read(&pf)?;
        let data = p.data_path(&pf);
        let missing_blob = |hash: &str| {
            anyhow::anyhow!(
                "{}: the content {hash} it names is not in the blob store (edited by hand, or not fetched yet: `kiln data pull`)",
                pf.display()
            )
        };
        let (mut restored, mut removed) = (0u64, 0u64);
        let mut restore = |target: &Path, hash: &str| -> Result<()> {
            // Never write through a link: `--force` replaces it (the link,
            // not what it points at) with a real folder.
            if let Some(link) = linked_folder(&[&root, local.workspace.root()], target)? {
                if !force {
                    bail!("{} is a symbolic link; checkout does not write through links (`--force` replaces the link with a folder)", link.display());
                }
                std::fs::remove_file(&link).with_context(|| format!("removing the link {}", link.display()))?;
            }
            match holds(&state, &root, target, hash)? {
                Some(true) => return Ok(()),
                Some(false) if !force => {
                    // A link counts as a change no version holds: not read.
                    let link = std::fs::symlink_metadata(target).is_ok_and(|m| m.file_type().is_symlink());
                    let current = if link {
                        String::new()
                    } else {
                        hashing::stamp(target).and_then(|s| state.hash(target, s, &|_| {})).map(|(h, _)| h).unwrap_or_default()
                    };
                    if !local.blobs.contains(&current) {
                        bail!(
                            "{} has changes no version holds; `kiln data add {}` keeps them, `--force` discards them",
                            target.display(),
                            target.display()
                        );
                    }
                }
                _ => {}
            }
            if !local.blobs.contains(hash) {
                return Err(missing_blob(hash));
            }
            local.blobs.restore_to(hash, target, hardlink).with_context(|| format!("restoring {}", target.display()))?;
            state.remember(target, hashing::stamp(target)?, hash);
            restored += 1;
            Ok(())
        };
        if p.kind == "file" {
            restore(&data, &p.hash)?;
        } else {
            if !local.blobs.contains(&p.hash) {
                return Err(missing_blob(&p.hash));
            }
            let m = manifest(&local.blobs, &p, &pf)?;
            for e in &m.files {
                restore(&data.join(&e.path), &e.hash)?;
            }
            if data.is_dir() {
                let known: std::collections::HashSet<&str> = m.files.iter().map(|e| e.path.as_str()).collect();
                // Links are entries here, never followed: removing one
                // removes the link, never what it points at.
                for walk::Found { rel, path, .. } in walk::files(&data, walk::Links::Keep)? {
                    if !known.contains(rel.as_str()) {
                        if !force {
                            bail!("{} is not in version {} of `{}`; `--force` removes it", path.display(), p.version, p.name);
                        }
                        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                        removed += 1;
                    }
                }
            }
        }
        out.push(CheckedOut { path: relative(local, &data), name: p.name, version: p.version, restored, removed });
    }
    state.save()?;
    Ok(out)
}

/// The first folder between the workspace `root` and `target`'s parent
/// that is a symbolic link, if any. `target` is named from the workspace
/// root as found (`roots[1]`) or as the kernel names it (`roots[0]`).
fn linked_folder(roots: &[&Path; 2], target: &Path) -> Result<Option<PathBuf>> {
    let parent = target.parent().unwrap_or(Path::new("."));
    let parent = std::path::absolute(parent).with_context(|| format!("resolving {}", parent.display()))?;
    let Some((base, rel)) = roots.iter().find_map(|r| parent.strip_prefix(r).ok().map(|rel| (r.to_path_buf(), rel.to_path_buf()))) else {
        return Ok(None);
    };
    let mut at = base;
    for part in rel.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Ok(Some(at)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", at.display())),
        }
    }
    Ok(None)
}

/// Register a blob already in the store (an upload) as a version of
/// `name`. `filename` says what it is: a `.csv`, `.tsv` or `.parquet` file
/// gets a schema and profile, and is refused if malformed unless
/// `profile` is false.
pub async fn add_blob(app: &App, name: &str, blob: &str, size: u64, filename: &str, profile: bool) -> Result<(DatasetVersion, bool)> {
    check_name(name)?;
    let format = format_of(Path::new(filename));
    let file = app.blobs.file(blob)?;
    let blob_path = file.display().to_string();
    let profiled = if profile && !format.is_empty() {
        let (format, shown) = (format.to_string(), filename.to_string());
        let result = tokio::task::spawn_blocking(move || profile::profile_as(&file, Some(&format))).await?;
        // Name the upload, not the blob file, in the message.
        // A malformed upload is the client's to fix; failing to read the
        // blob back is the server's.
        let profiled = result.map_err(|e| {
            let message = e.to_string().replace(&blob_path, &shown);
            match e {
                profile::ProfileError::Io { .. } => anyhow::anyhow!(message),
                _ => crate::invalid::invalid(message),
            }
        })?;
        match profiled {
            Some((schema, prof)) => Some((serde_json::to_string(&schema)?, serde_json::to_string(&prof)?)),
            None => None,
        }
    } else {
        None
    };
    let (schema_json, profile_json) = profiled.unzip();
    Ok(app
        .store
        .add_dataset_version(NewDatasetVersion {
            name: name.to_string(),
            hash: blob.to_string(),
            kind: "file".into(),
            size: size as i64,
            files: 1,
            path: filename.to_string(),
            format: format.to_string(),
            schema_json,
            profile_json,
        })
        .await?)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Transfer {
    pub remote: String,
    /// Blobs the pointers need.
    pub blobs: u64,
    /// Blobs copied (the other side lacked them) and their bytes.
    pub copied: u64,
    pub bytes: u64,
}

/// The blobs a pointer needs: its content, and for a folder the files its
/// manifest lists (the manifest must be local, or fetched from `remote`).
/// Returns the ids and the bytes of a manifest fetched on the way.
async fn needed_blobs(local: &Local, pf: &Path, remote: Option<&remote::Remote>) -> Result<(Vec<String>, Option<u64>)> {
    let p = Pointer::read(pf)?;
    let mut ids = vec![p.hash.clone()];
    let mut fetched = None;
    if p.kind == "dir" {
        if !local.blobs.contains(&p.hash)
            && let Some(r) = remote
        {
            fetched = Some(r.pull(&local.blobs, &p.hash).await.with_context(|| format!("fetching the manifest of {}", pf.display()))?);
        }
        ids.extend(manifest(&local.blobs, &p, pf)?.files.into_iter().map(|e| e.hash));
    }
    Ok((ids, fetched))
}

/// Which side lacks a blob, and the copy that moves it there.
#[derive(Clone, Copy)]
enum Direction {
    Push,
    Pull,
}

/// Move the blobs among `ids` that the receiving side lacks, up to
/// [`remote::CONCURRENCY`] at a time; the first failure stops the rest.
async fn transfer(local: &Local, ids: Vec<String>, remote: &remote::Remote, direction: Direction) -> Result<Transfer> {
    use futures_util::{StreamExt, TryStreamExt};
    let mut ids = ids;
    ids.sort();
    ids.dedup();
    let bar = if ids.len() >= 100 { indicatif::ProgressBar::new(ids.len() as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_message(match direction {
        Direction::Push => "pushing",
        Direction::Pull => "pulling",
    });
    let moved: Vec<Option<u64>> = futures_util::stream::iter(ids.iter())
        .map(|id| {
            let bar = &bar;
            async move {
                let r = match direction {
                    Direction::Push if remote.contains(id).await? => None,
                    Direction::Push => Some(remote.push(&local.blobs, id).await?),
                    Direction::Pull if local.blobs.contains(id) => None,
                    Direction::Pull => Some(remote.pull(&local.blobs, id).await?),
                };
                bar.inc(1);
                anyhow::Ok(r)
            }
        })
        .buffer_unordered(remote::CONCURRENCY)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    let mut t = Transfer { remote: remote.name.clone(), blobs: ids.len() as u64, ..Default::default() };
    for size in moved.into_iter().flatten() {
        t.bytes += size;
        t.copied += 1;
    }
    Ok(t)
}

/// `kiln data push`: send the blobs the pointers name that the remote lacks.
pub async fn push(local: &Local, paths: &[PathBuf], remote_name: Option<&str>) -> Result<Transfer> {
    let root = local.workspace.root();
    let remote = remote::Config::load(root)?.remote(root, remote_name, true)?;
    let mut ids = Vec::new();
    for pf in find_pointers(local, paths)? {
        for id in needed_blobs(local, &pf, None).await?.0 {
            if !local.blobs.contains(&id) {
                bail!(
                    "{}: {id} is not in the local blob store, so it cannot be pushed (was the pointer edited, or the data never added here?)",
                    pf.display()
                );
            }
            ids.push(id);
        }
    }
    transfer(local, ids, &remote, Direction::Push).await
}

/// `kiln data pull`: fetch the blobs the pointers name that are not here,
/// then check the data out.
pub async fn pull(local: &Local, paths: &[PathBuf], remote_name: Option<&str>) -> Result<(Transfer, Vec<CheckedOut>)> {
    let root = local.workspace.root();
    let remote = remote::Config::load(root)?.remote(root, remote_name, false)?;
    let (mut ids, mut manifests, mut manifest_bytes) = (Vec::new(), 0, 0);
    for pf in find_pointers(local, paths)? {
        let (needed, fetched) = needed_blobs(local, &pf, Some(&remote)).await?;
        ids.extend(needed);
        if let Some(n) = fetched {
            manifests += 1;
            manifest_bytes += n;
        }
    }
    let mut t = transfer(local, ids, &remote, Direction::Pull).await?;
    t.copied += manifests;
    t.bytes += manifest_bytes;
    let done = checkout(local, paths, false, false)?;
    Ok((t, done))
}

/// The version a tracked file is, if it is one: a pointer beside it whose
/// hash the file still has (by stamp from the hash cache, else read).
pub fn tracked_version(local: &Local, path: &Path) -> Result<Option<(String, i64)>> {
    let pointer_file = pointer::pointer_path(path);
    if !pointer_file.exists() {
        return Ok(None);
    }
    let p = Pointer::read(&pointer_file)?;
    let state = State::load(&local.workspace.dir);
    let path = path.canonicalize().with_context(|| format!("cannot read {}", path.display()))?;
    let held = holds(&state, &local.root()?, &path, &p.hash)?;
    state.save()?;
    if held == Some(true) {
        return Ok(Some((p.name, p.version)));
    }
    tracing::warn!("{} differs from the version its pointer names ({}@{}); not recorded as that version", path.display(), p.name, p.version);
    Ok(None)
}

/// `NAME`, `NAME@3` or `NAME@latest`.
pub fn parse_ref(r: &str) -> Result<(String, Option<i64>)> {
    match r.split_once('@') {
        None => Ok((r.to_string(), None)),
        Some((n, "latest")) => Ok((n.to_string(), None)),
        Some((n, v)) => {
            let v: i64 = v.parse().ok().filter(|v| *v > 0).with_context(|| format!("`{r}`: a version is a number from 1, or `latest`"))?;
            Ok((n.to_string(), Some(v)))
        }
    }
}
