//! State files: written whole or not at all, secrets readable by root only, and the lock that keeps
//! a state directory to one daemon.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` (and its parents) if missing, mode 0700: it holds keys.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Replaces `path` with `contents` atomically (a crash leaves the old file or the new one, never a
/// mix), mode 0600: write a temporary file beside it, flush it to disk, rename it over, and flush the
/// directory so the rename itself survives power loss.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Reads `path`, or `None` if it does not exist. Refuses a secret file others can read.
pub fn read_private(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is readable by other users (mode {:o}); run `chmod 600 {}`",
                    path.display(),
                    meta.permissions().mode() & 0o777,
                    path.display()
                ),
            ));
        }
        Ok(_) => {}
    }
    fs::read(path).map(Some)
}

/// An exclusive lock (`flock`) on a lock file, held while this value lives. The kernel releases it
/// when the process ends however it ends (`kill -9` included), so a stale file never blocks a start.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Why [`lock`] did not take the lock.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; the file names its pid, if it had written it yet.
    Held {
        path: PathBuf,
        pid: Option<u32>,
    },
    Io {
        path: PathBuf,
        error: io::Error,
    },
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Held { path, pid } => {
                let dir = path.parent().unwrap_or(Path::new("."));
                match pid {
                    Some(pid) => write!(
                        f,
                        "the state directory {} is in use by another meshd (pid {pid}, which holds the \
                         lock on {}); stop it first (`kill {pid}`), or give this one another state_dir",
                        dir.display(),
                        path.display()
                    ),
                    None => write!(
                        f,
                        "the state directory {} is in use by another meshd (it holds the lock on {} but \
                         has not written its pid yet); stop it first, or give this one another state_dir",
                        dir.display(),
                        path.display()
                    ),
                }
            }
            LockError::Io { path, error } => write!(f, "cannot lock {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for LockError {}

/// Takes the lock on `path` (creating the file, mode 0600) without waiting, and writes this process's
/// pid into it. If another process holds it, says which.
pub fn lock(path: &Path) -> Result<DirLock, LockError> {
    let io_error = |error| LockError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(LockError::Held {
                path: path.to_path_buf(),
                pid,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io_error(e)),
    }
    file.set_len(0).map_err(io_error)?;
    file.rewind().map_err(io_error)?;
    writeln!(file, "{}", std::process::id()).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    Ok(DirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_is_private() {
        let dir = std::env::temp_dir().join(format!("meshd-files-{}", std::process::id()));
        ensure_private_dir(&dir).unwrap();
        let path = dir.join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(read_private(&path).unwrap().unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_private(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(read_private(&dir.join("missing")).unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_locked_file_names_its_holder_and_frees_on_drop() {
        let dir = std::env::temp_dir().join(format!("meshd-lock-{}", std::process::id()));
        ensure_private_dir(&dir).unwrap();
        let path = dir.join("meshd.lock");
        let held = lock(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // flock locks belong to the open file, so a second open in this process is refused too.
        let e = lock(&path).unwrap_err();
        assert!(
            matches!(e, LockError::Held { pid: Some(pid), .. } if pid == std::process::id()),
            "{e:?}"
        );
        let message = e.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())) && message.contains("state_dir"),
            "{message}"
        );
        drop(held);
        let again = lock(&path).unwrap();
        drop(again);
        fs::remove_dir_all(&dir).unwrap();
    }
}
