//! Owner-only directories for what the mesh keeps on disk: the data
//! directory, the signing keys under it, SQLite files, TLS keys.
//!
//! `std::fs::create_dir_all` creates directories `0777` less the umask, so
//! under `umask 000` anyone on the machine can list and replace what they
//! hold. [`create_private_dir`] creates them `0700` whatever the umask. Its
//! own crate because the store, the auth and the gRPC adapters all write
//! such directories and may not depend on one another (ARCHITECTURE.md,
//! "Architecture invariants").

use std::io;
use std::path::Path;

/// Creates `dir` and every missing parent, each directory it creates
/// readable, writable and searchable by its owner only (`0700`), whatever
/// the process's umask (a `mkdir` mode is masked by the umask; the mode is
/// then set explicitly, so an umask of `077` or of `777` gives `0700` too).
///
/// A directory that already exists is left as it is: it may be shared on
/// purpose (`.`, `/etc` as the parent of a configured key file, `/tmp`),
/// and std has no safe way to ask whether it is ours to narrow. Only what
/// this call created is made owner-only.
///
/// # Errors
/// A directory that cannot be created or whose mode cannot be set; a path
/// that exists but is not a directory.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        create_missing(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

#[cfg(unix)]
fn create_missing(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_missing(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)),
        // Made by another process meanwhile: not ours to narrow.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::os::unix::fs::PermissionsExt as _;
    use std::path::PathBuf;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// A fresh directory of this test's own, `0777` as `umask 000` would
    /// leave it; removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("adapters-files-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn every_directory_it_creates_is_owner_only_under_a_wide_open_parent() {
        let parent = Scratch::new("created");
        let keys = parent.0.join("data").join("keys");
        create_private_dir(&keys).unwrap();
        assert_eq!(mode(&parent.0.join("data")), 0o700);
        assert_eq!(mode(&keys), 0o700);
        assert_eq!(mode(&parent.0), 0o777, "the parent is not ours to narrow");
        // Again: nothing to do, nothing changes.
        create_private_dir(&keys).unwrap();
        assert_eq!(mode(&keys), 0o700);
    }

    #[test]
    fn a_directory_that_exists_is_left_as_it_is() {
        let parent = Scratch::new("existing");
        let shared = parent.0.join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o750)).unwrap();
        create_private_dir(&shared.join("keys")).unwrap();
        assert_eq!(mode(&shared), 0o750);
        assert_eq!(mode(&shared.join("keys")), 0o700);
    }

    #[test]
    fn a_file_in_the_way_is_an_error() {
        let parent = Scratch::new("file");
        let file = parent.0.join("data");
        std::fs::write(&file, "").unwrap();
        assert!(create_private_dir(&file).is_err());
        assert!(create_private_dir(&file.join("keys")).is_err());
    }
}
