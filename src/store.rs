//! TEMPORARY placeholder until the store branch lands.
use crate::profile::Profile;
use std::path::{Path, PathBuf};
pub struct Store {
    dir: PathBuf,
}
pub struct StoreLock;
pub struct LoadReport {
    pub profiles: Vec<Profile>,
    pub set_aside: Vec<(PathBuf, String)>,
}
pub struct SaveReport {
    pub saved: usize,
    pub failed: Vec<(PathBuf, String)>,
}
impl Store {
    pub fn open(dir: &Path) -> std::io::Result<Store> {
        std::fs::create_dir_all(dir)?;
        Ok(Store { dir: dir.into() })
    }
    pub fn lock(&self) -> std::io::Result<StoreLock> {
        let _ = &self.dir;
        Ok(StoreLock)
    }
    pub fn load_all(&self) -> LoadReport {
        LoadReport {
            profiles: vec![],
            set_aside: vec![],
        }
    }
    pub fn save_all(&self, p: &[Profile]) -> SaveReport {
        SaveReport {
            saved: p.len(),
            failed: vec![],
        }
    }
}
