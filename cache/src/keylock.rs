//! One lock per cache key, so that builds sharing a root execute a step once: the
//! first to miss the cache takes the key's lock (`locks/keys/<key>.lock`, `flock`) and
//! executes; the others wait for it, then find its record. A holder that dies loses its
//! lock to the kernel, and a waiter takes over. Builds lock only the steps they execute,
//! so a cached step costs no lock.
//!
//! The holder removes the file before it lets go, and a taker checks that the file it
//! locked is still the one at the path: otherwise two processes could each hold a lock on
//! a different file of the same name.

use crate::Store;
use crate::error::{CacheError, IoContext};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The lock of one cache key, held until dropped.
#[derive(Debug)]
pub struct KeyLock {
    file: File,
    path: PathBuf,
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        // Remove while still holding it; closing the file then releases the lock.
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn same_file(f: &File, path: &std::path::Path) -> bool {
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Store {
    pub(crate) fn key_locks_dir(&self) -> PathBuf {
        self.locks_dir().join("keys")
    }

    /// Takes the lock of cache key `key` if nobody holds it; `None` when another
    /// process (or another step of this one) does.
    pub fn try_lock_key(&self, key: &str) -> Result<Option<KeyLock>, CacheError> {
        // Same rules as record names: the key becomes a file name.
        let record = self.record_path(key)?;
        let name = record
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = self.key_locks_dir();
        let path = dir.join(format!("{name}.lock"));
        loop {
            let file = match File::options()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
                    continue;
                }
                Err(e) => return Err(e).ctx("open lock file", &path),
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(e).ctx("lock", &path),
            }
            // The previous holder may have removed the file between our open and lock.
            if same_file(&file, &path) {
                return Ok(Some(KeyLock { file, path }));
            }
        }
    }

    /// Removes key lock files nobody holds (left by killed builds). Returns how many.
    pub(crate) fn remove_stale_key_locks(&self) -> Result<usize, CacheError> {
        let dir = self.key_locks_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).ctx("read directory", &dir),
        };
        let mut removed = 0;
        for ent in rd {
            let ent = ent.ctx("read directory", &dir)?;
            let path = ent.path();
            let Ok(file) = File::options().read(true).write(true).open(&path) else {
                continue;
            };
            if file.try_lock().is_ok() && same_file(&file, &path) {
                drop(KeyLock { file, path });
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_key_and_no_file_left() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let a = store.try_lock_key("k1").unwrap().expect("free");
        assert!(store.try_lock_key("k1").unwrap().is_none());
        let b = store
            .try_lock_key("k2")
            .unwrap()
            .expect("another key is free");
        drop(a);
        let again = store.try_lock_key("k1").unwrap().expect("released");
        drop(again);
        drop(b);
        assert_eq!(std::fs::read_dir(store.key_locks_dir()).unwrap().count(), 0);
        assert!(store.try_lock_key("../x").is_err());
    }

    #[test]
    fn stale_lock_files_are_removed() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        std::fs::create_dir_all(store.key_locks_dir()).unwrap();
        std::fs::write(store.key_locks_dir().join("dead.lock"), "").unwrap();
        let held = store.try_lock_key("held").unwrap().unwrap();
        assert_eq!(store.remove_stale_key_locks().unwrap(), 1);
        assert!(store.key_locks_dir().join("held.lock").exists());
        drop(held);
    }
}
