//! One daemon per directory: an advisory lock on `<dir>/.lock`, held while the process runs.
//!
//! Two daemons on one datasets directory would each write every point (duplicate rows), each
//! compact and delete the other's part files mid-read, and each compact the incidents journal
//! under the other. So `run` takes the lock on the datasets root and on the incidents directory
//! before anything is read, and `train` takes it too (a running daemon's trainer and the command
//! would number their models alike). The lock is the kernel's (`flock`): it is released when the
//! process exits however it exits, so a crash never leaves a stale lock to clear by hand. The
//! file holds the holder's pid, for the message the second process prints; the file itself is
//! hidden (a leading `.`), which every dataset reader skips.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::StoreError;

/// The lock file's name in the directory it guards.
pub const LOCK_FILE: &str = ".lock";

/// A held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct DirectoryLock {
    /// The open lock file: the lock lives as long as this descriptor.
    _file: File,
}

/// Locks `directory` (creating it) for this process, or says which process holds it.
pub fn lock_directory(directory: &Path) -> Result<DirectoryLock, StoreError> {
    let path = directory.join(LOCK_FILE);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source: std::io::Error| StoreError::Io { path, source }
    };
    std::fs::create_dir_all(directory).map_err(io(directory))?;
    // Not truncated on open: the holder's pid must still be readable when the lock is refused.
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() { "pid unknown".to_owned() } else { holder.to_owned() };
            return Err(StoreError::Locked { path: directory.to_owned(), holder });
        }
        Err(TryLockError::Error(source)) => return Err(StoreError::Io { path, source }),
    }
    let pid = format!("pid {}\n", std::process::id());
    file.set_len(0).map_err(io(&path))?;
    file.rewind().map_err(io(&path))?;
    file.write_all(pid.as_bytes()).map_err(io(&path))?;
    Ok(DirectoryLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("datasets");
        let first = lock_directory(&root).unwrap();
        // flock locks belong to the open file, so a second open in this process is refused as
        // another process would be.
        let refused = lock_directory(&root).unwrap_err();
        let message = refused.to_string();
        assert!(matches!(refused, StoreError::Locked { .. }), "{refused:?}");
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        assert!(message.contains(&root.display().to_string()), "{message}");
        drop(first);
        let again = lock_directory(&root).unwrap();
        assert_eq!(std::fs::read_to_string(root.join(LOCK_FILE)).unwrap(), format!("pid {}\n", std::process::id()));
        drop(again);
    }

    #[test]
    fn the_lock_file_is_invisible_to_the_series_listing() {
        let dir = tempfile::tempdir().unwrap();
        let _lock = lock_directory(dir.path()).unwrap();
        assert!(super::super::Datasets::new(dir.path()).series().unwrap().is_empty());
    }
}
