//! The files under a tracked folder with their stamps, as fast as the
//! kernel allows: `status` over 10,000 unchanged files is this walk plus
//! cache lookups.
//!
//! Each directory is opened once and its entries are `stat`ed relative to
//! that descriptor (`fstatat`), so the kernel resolves one name per file
//! rather than the whole path (a full-path `stat` per file was most of the
//! time in a profile of the walkdir version). Entries are `stat`ed on all
//! cores. Symlinks are followed, like `cp -rL`, as long as they stay
//! inside the workspace: a link out of it is an error (data is tracked
//! from inside the workspace, and nothing outside is read through a link),
//! and so is a link back to a folder being walked. `checkout` walks
//! without following, so it sees (and may remove) the links themselves.

use crate::hashing::Stamp;
use anyhow::{Result, bail};
use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A regular file found under the walked folder.
#[derive(Debug, Clone)]
pub struct Found {
    /// Relative to the walked folder, `/`-separated.
    pub rel: String,
    pub path: PathBuf,
    pub stamp: Stamp,
}

/// How a walk treats symlinks.
#[derive(Debug, Clone, Copy)]
pub enum Links<'a> {
    /// Follow those that resolve inside this folder (the canonical
    /// workspace root); a link out of it is an error.
    FollowWithin(&'a Path),
    /// Report a link as the entry it is (its own stamp), never follow it.
    Keep,
}

/// Every regular file under `root`, sorted by `rel`.
pub fn files(root: &Path, links: Links) -> Result<Vec<Found>> {
    let fd = open_dir(root)?;
    let st = rustix::fs::fstat(&fd).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", root.display()))?;
    let mut out = Vec::new();
    walk(&fd, root, "", &[(st.st_dev, st.st_ino, root.to_path_buf())], links, &mut out)?;
    out.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Refuse a symlink whose target lies outside `within`.
pub fn check_link(link: &Path, within: &Path) -> Result<()> {
    let target = link.canonicalize().map_err(|e| anyhow::anyhow!("cannot follow the link {}: {e}", link.display()))?;
    if !target.starts_with(within) {
        bail!(
            "{} is a symbolic link to {}, outside the workspace {}; Kiln does not follow links out of it",
            link.display(),
            target.display(),
            within.display()
        );
    }
    Ok(())
}

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, DIR_FLAGS, Mode::empty()).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

/// What an entry turned out to be once links are followed.
enum Kind {
    File(Stamp),
    Dir(u64, u64),
    Other,
}

/// Walk the open directory `fd` (at `path`, `prefix` relative to the
/// root); `ancestors` are the (device, inode, path) of the folders being
/// walked, to catch a symlink loop. Subfolders are walked on all cores,
/// one folder per task; a folder with many entries also has its entries
/// `stat`ed in parallel batches. (A parallel `stat` of every folder's
/// entries, even 100 of them, spent more on waking threads than it saved.)
fn walk(fd: &OwnedFd, path: &Path, prefix: &str, ancestors: &[(u64, u64, PathBuf)], links: Links, out: &mut Vec<Found>) -> Result<()> {
    let shown = |name: &CString| path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
    let dir = rustix::fs::Dir::read_from(fd).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut names: Vec<(CString, FileType)> = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        names.push((name.to_owned(), entry.file_type()));
    }
    // A known file or folder needs one stat (files) or none (folders);
    // links and unknown types are stat'ed, following links.
    let kind_of = |(name, ty): &(CString, FileType)| -> Result<Kind> {
        if *ty == FileType::Directory {
            return Ok(Kind::Dir(0, 0));
        }
        if !matches!(*ty, FileType::RegularFile | FileType::Symlink | FileType::Unknown) {
            return Ok(Kind::Other);
        }
        let lstat =
            |flags| rustix::fs::statat(fd.as_fd(), name.as_c_str(), flags).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", shown(name).display()));
        // The link itself first (an unknown type may be one).
        let mut st = lstat(AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            match links {
                Links::Keep => return Ok(Kind::File(Stamp::of_stat(&st))),
                Links::FollowWithin(root) => {
                    check_link(&shown(name), root)?;
                    st = lstat(AtFlags::empty())?;
                }
            }
        }
        Ok(match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File(Stamp::of_stat(&st)),
            FileType::Directory => Kind::Dir(st.st_dev, st.st_ino),
            _ => Kind::Other,
        })
    };
    let kinds: Vec<Result<Kind>> =
        if names.len() >= 2 * BATCH { names.par_iter().with_min_len(BATCH).map(kind_of).collect() } else { names.iter().map(kind_of).collect() };
    let mut subdirs = Vec::new();
    for ((name, _), kind) in names.iter().zip(kinds) {
        let text = String::from_utf8_lossy(name.to_bytes());
        let rel = if prefix.is_empty() { text.into_owned() } else { format!("{prefix}/{text}") };
        match kind? {
            Kind::File(stamp) => out.push(Found { path: shown(name), rel, stamp }),
            Kind::Dir(dev, ino) => subdirs.push((name, rel, dev, ino)),
            Kind::Other => {}
        }
    }
    let walked: Vec<Result<Vec<Found>>> = subdirs
        .into_par_iter()
        .map(|(name, rel, mut dev, mut ino)| {
            let child_path = shown(name);
            let child = rustix::fs::openat(fd, name.as_c_str(), DIR_FLAGS, Mode::empty())
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", child_path.display()))?;
            if dev == 0 && ino == 0 {
                let st = rustix::fs::fstat(&child).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", child_path.display()))?;
                (dev, ino) = (st.st_dev, st.st_ino);
            }
            if let Some((_, _, a)) = ancestors.iter().find(|(d, i, _)| (*d, *i) == (dev, ino)) {
                bail!("symlink loop: {} leads back to {}", child_path.display(), a.display());
            }
            let mut inner = ancestors.to_vec();
            inner.push((dev, ino, child_path.clone()));
            let mut found = Vec::new();
            walk(&child, &child_path, &rel, &inner, links, &mut found)?;
            Ok(found)
        })
        .collect();
    for found in walked {
        out.extend(found?);
    }
    Ok(())
}

/// Entries `stat`ed per parallel task in a large folder.
const BATCH: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_through_links_and_refuses_a_loop() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("set");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("top.txt"), "1").unwrap();
        std::fs::write(root.join("a/b/deep.txt"), "22").unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/o.txt"), "333").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("linked")).unwrap();
        std::os::unix::fs::symlink(root.join("top.txt"), root.join("alias.txt")).unwrap();
        let found = files(&root, Links::FollowWithin(dir.path())).unwrap();
        let rels: Vec<(&str, u64)> = found.iter().map(|f| (f.rel.as_str(), f.stamp.size)).collect();
        assert_eq!(rels, [("a/b/deep.txt", 2), ("alias.txt", 1), ("linked/o.txt", 3), ("top.txt", 1)]);
        assert_eq!(found[0].path, root.join("a/b/deep.txt"));
        // The stamp is the one std reports for the (followed) file.
        assert_eq!(found[1].stamp, Stamp::of(&std::fs::metadata(root.join("top.txt")).unwrap()));

        std::os::unix::fs::symlink(&root, root.join("a/b/back")).unwrap();
        let e = files(&root, Links::FollowWithin(dir.path())).unwrap_err().to_string();
        assert!(e.contains("symlink loop") && e.contains("a/b/back"), "{e}");
    }

    #[test]
    fn links_out_of_the_workspace_are_refused_or_kept_as_links() {
        let dir = tempfile::tempdir().unwrap();
        let (ws, outside) = (dir.path().join("ws"), dir.path().join("outside"));
        std::fs::create_dir_all(ws.join("set")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "s").unwrap();
        std::fs::write(ws.join("set/a.txt"), "a").unwrap();
        std::os::unix::fs::symlink(&outside, ws.join("set/linked")).unwrap();
        let ws = ws.canonicalize().unwrap();
        let e = files(&ws.join("set"), Links::FollowWithin(&ws)).unwrap_err().to_string();
        assert!(e.contains("set/linked is a symbolic link") && e.contains("outside the workspace"), "{e}");
        let kept = files(&ws.join("set"), Links::Keep).unwrap();
        let rels: Vec<&str> = kept.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["a.txt", "linked"], "the link is an entry; nothing behind it is walked");
    }
}
