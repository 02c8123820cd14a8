//! What killed processes leave behind: temp entries (`.rb<pid>-…`) in the store's
//! directories, mounts under `tmp/`, key lock files nobody holds. None of it is ever named
//! by a record or the index, so it is a note, tidied on repair (what `Store::open` does
//! too).

use super::Checker;
use crate::error::CacheError;
use crate::fsutil;
use std::path::Path;

impl Checker {
    pub(super) fn leftovers(&mut self) -> Result<(), CacheError> {
        for dir in self.store.temp_dirs() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            let dead: usize = rd
                .flatten()
                .filter_map(|e| fsutil::temp_owner(&e.file_name()))
                .filter(|pid| !Path::new(&format!("/proc/{pid}")).exists())
                .count();
            if dead == 0 {
                continue;
            }
            if self.repair {
                fsutil::remove_stale_temps(&dir)?;
            }
            self.note(
                dir.display().to_string(),
                format!("{dead} temporary entries of processes that are gone"),
                "removed",
            );
        }
        let stale = count_unheld_locks(&self.store.key_locks_dir());
        if stale > 0 {
            if self.repair {
                self.store.remove_stale_key_locks()?;
            }
            self.note(
                self.store.key_locks_dir().display().to_string(),
                format!("{stale} step lock files nobody holds"),
                "removed",
            );
        }
        Ok(())
    }
}

/// Lock files in `dir` that no process holds (what `remove_stale_key_locks` would take).
fn count_unheld_locks(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| {
            std::fs::File::open(e.path())
                .map(|f| f.try_lock_shared().is_ok())
                .unwrap_or(false)
        })
        .count()
}
