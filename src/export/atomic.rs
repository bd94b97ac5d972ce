//! Atomic writes: a reader sees either the old file (or folder) or the whole
//! new one, never a half-written one.
//!
//! Files are written to a temporary name in the same folder, synced and then
//! renamed over the target, because a rename within one file system is
//! atomic on POSIX systems. An [`OutputDir`] stages a whole folder the same
//! way.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::error::{Error, Result};

/// Tells apart the temporary names of one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Builds a hidden sibling path of `target` that no other writer uses:
/// `.NAME.KIND.PID.COUNTER`.
fn sibling_temp_path(target: &Path, kind: &str) -> Result<PathBuf> {
    let name = target.file_name().ok_or_else(|| {
        Error::invalid(
            "output path",
            target.display(),
            "must end in a file or folder name",
        )
    })?;
    let unique = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp_name = format!(
        ".{}.{kind}.{}.{unique}",
        name.to_string_lossy(),
        std::process::id()
    );
    Ok(target.with_file_name(temp_name))
}

/// Returns the folder that contains `path`, `.` for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Syncs a folder so that a rename inside it survives a crash. Opening a
/// folder to sync it is not possible on every platform, so a failure is
/// only logged.
fn sync_dir(dir: &Path) {
    if let Err(error) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), %error, "could not sync folder");
    }
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same
/// folder, synced to disk, then renamed over `path`. The folder must exist.
/// On failure the temporary file is removed and `path` is left unchanged.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let temp = sibling_temp_path(path, "tmp")?;
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(source) = written {
        // The temporary file may not exist if creating it failed.
        let _ = fs::remove_file(&temp);
        return Err(Error::io(path, source));
    }
    sync_dir(parent_dir(path));
    Ok(())
}

/// Writes `value` as pretty-printed JSON, atomically (see [`write_atomic`]).
pub fn write_json_atomic<T: Serialize + ?Sized>(path: impl AsRef<Path>, value: &T) -> Result<()> {
    let path = path.as_ref();
    let mut json = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        context: path.display().to_string(),
        source,
    })?;
    json.push(b'\n');
    write_atomic(path, &json)
}

/// Checks whether `path` is missing or an empty folder. A file there counts
/// as not empty.
fn is_absent_or_empty_dir(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io(path, e)),
        Ok(meta) if meta.is_dir() => {
            let mut entries = fs::read_dir(path).map_err(|e| Error::io(path, e))?;
            Ok(entries.next().is_none())
        }
        Ok(_) => Ok(false),
    }
}

/// An output folder built in a hidden staging folder beside its target and
/// renamed into place by [`OutputDir::commit`]. Dropped without a commit,
/// it removes the staging folder, so a failed run leaves no partial output.
#[derive(Debug)]
pub struct OutputDir {
    target: PathBuf,
    staging: PathBuf,
    overwrite: bool,
    committed: bool,
}

impl OutputDir {
    /// Starts an output folder for `target`, creating the folders above it
    /// when they are missing.
    ///
    /// Returns [`Error::OutputExists`] if `target` exists and is not an empty
    /// folder, unless `overwrite` is set, in which case the old folder is
    /// replaced on commit.
    pub fn create(target: impl Into<PathBuf>, overwrite: bool) -> Result<Self> {
        let target = target.into();
        if !overwrite && !is_absent_or_empty_dir(&target)? {
            return Err(Error::OutputExists { path: target });
        }
        let staging = sibling_temp_path(&target, "partial")?;
        let parent = parent_dir(&staging);
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        fs::create_dir(&staging).map_err(|e| Error::io(&staging, e))?;
        tracing::debug!(
            target = %target.display(),
            staging = %staging.display(),
            "staging output folder"
        );
        Ok(Self {
            target,
            staging,
            overwrite,
            committed: false,
        })
    }

    /// Returns the folder the output is moved to on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Returns the staging folder itself, for writers that fill a folder
    /// (such as a model saver). It becomes the target on commit.
    pub fn staging_dir(&self) -> &Path {
        &self.staging
    }

    /// Returns the staging path of `relative`, for writers that need a path of
    /// their own, after creating its parent folders.
    ///
    /// Returns an error if `relative` is absolute or leaves the folder.
    pub fn path(&self, relative: impl AsRef<Path>) -> Result<PathBuf> {
        let relative = relative.as_ref();
        let is_inside = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !is_inside || relative.as_os_str().is_empty() {
            return Err(Error::invalid(
                "output file",
                relative.display(),
                "must be a relative path inside the output folder, without `..`",
            ));
        }
        let staged = self.staging.join(relative);
        let parent = parent_dir(&staged);
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        Ok(staged)
    }

    /// Writes `bytes` to `relative` inside the staged folder and returns the
    /// staged path.
    pub fn write(&self, relative: impl AsRef<Path>, bytes: &[u8]) -> Result<PathBuf> {
        let staged = self.path(relative)?;
        write_atomic(&staged, bytes)?;
        Ok(staged)
    }

    /// Writes `value` as pretty JSON to `relative` inside the staged folder.
    pub fn write_json<T: Serialize + ?Sized>(
        &self,
        relative: impl AsRef<Path>,
        value: &T,
    ) -> Result<PathBuf> {
        let staged = self.path(relative)?;
        write_json_atomic(&staged, value)?;
        Ok(staged)
    }

    /// Moves the staged folder to its target and returns the target.
    ///
    /// An empty folder at the target is replaced. A non-empty one is replaced
    /// only with `overwrite`: it is first renamed aside, then removed once
    /// the new folder is in place, and renamed back if the move fails.
    pub fn commit(mut self) -> Result<PathBuf> {
        sync_dir(&self.staging);
        let mut old = None;
        if !is_absent_or_empty_dir(&self.target)? {
            if !self.overwrite {
                return Err(Error::OutputExists {
                    path: self.target.clone(),
                });
            }
            let aside = sibling_temp_path(&self.target, "old")?;
            fs::rename(&self.target, &aside).map_err(|e| Error::io(&self.target, e))?;
            old = Some(aside);
        } else if self.target.is_dir() {
            fs::remove_dir(&self.target).map_err(|e| Error::io(&self.target, e))?;
        }
        if let Err(source) = fs::rename(&self.staging, &self.target) {
            if let Some(aside) = &old {
                if let Err(error) = fs::rename(aside, &self.target) {
                    tracing::error!(
                        old = %aside.display(),
                        target = %self.target.display(),
                        %error,
                        "could not restore the previous output folder"
                    );
                }
            }
            return Err(Error::io(&self.target, source));
        }
        self.committed = true;
        sync_dir(parent_dir(&self.target));
        if let Some(aside) = old {
            if let Err(error) = fs::remove_dir_all(&aside) {
                tracing::warn!(old = %aside.display(), %error, "could not remove the replaced output folder");
            }
        }
        tracing::info!(target = %self.target.display(), "wrote output folder");
        Ok(self.target.clone())
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Err(error) = fs::remove_dir_all(&self.staging) {
            tracing::warn!(
                staging = %self.staging.display(),
                %error,
                "could not remove the staging folder of an uncommitted output"
            );
        }
    }
}
