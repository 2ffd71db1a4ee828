//! The admin API's bearer token: a file under the state directory that only its owner can read.
//!
//! The daemon makes the file on its first start (32 random bytes as 64 hex digits, mode `0600`) and
//! reuses it afterwards, so scripts that read it keep working across restarts. The CLI reads the same
//! file, which is why the CLI needs the rights of the user the daemon runs as (root, usually): file
//! permissions are the access control, the token only carries them over the loopback socket.
//!
//! To rotate it, delete the file and restart the daemon.
//!
//! The token is compared in constant time, and neither `Debug` nor any log line shows it.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Random bytes in a new token.
const TOKEN_BYTES: usize = 32;
/// Shortest and longest token accepted from a file (an operator may write their own).
const MIN_LEN: usize = 16;
const MAX_LEN: usize = 512;

/// The admin API's bearer token, and the file it came from.
pub struct ApiToken {
    secret: Zeroizing<String>,
    path: PathBuf,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ApiToken {
    /// The daemon's side: reads the token at `path`, or makes one there if there is none. A file that
    /// others can read is refused, since anyone who could read it could have taken the token.
    pub fn load_or_create(path: &Path, rng: &mut (impl RngCore + CryptoRng)) -> io::Result<ApiToken> {
        match Self::load(path) {
            Ok(token) => {
                let mode = fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "{} can be read by other users (mode {:o}); delete it so that a new token \
                             is made, or make it private with `chmod 600 {}`",
                            path.display(),
                            mode & 0o777,
                            path.display()
                        ),
                    ));
                }
                return Ok(token);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
        rng.fill_bytes(&mut *bytes);
        let mut secret = Zeroizing::new(String::with_capacity(TOKEN_BYTES * 2 + 1));
        for b in bytes.iter() {
            secret.push(char::from(HEX[usize::from(b >> 4)]));
            secret.push(char::from(HEX[usize::from(b & 15)]));
        }
        match write_new(path, &secret) {
            Ok(()) => Ok(ApiToken {
                secret,
                path: path.to_path_buf(),
            }),
            // Another process made it between our read and our write: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("cannot create the API token file {}: {e}", path.display()),
            )),
        }
    }

    /// The CLI's side: reads the token the daemon made. The error names the file and says what to do.
    pub fn load(path: &Path) -> io::Result<ApiToken> {
        let text = match fs::read_to_string(path) {
            Ok(text) => Zeroizing::new(text),
            Err(e) => {
                let hint = match e.kind() {
                    io::ErrorKind::NotFound => {
                        "; the daemon creates it when it starts: is it running (`meshd up`), and with \
                         the same --config?"
                    }
                    io::ErrorKind::PermissionDenied => {
                        "; it is readable only by the user the daemon runs as (run this as root, e.g. \
                         with sudo)"
                    }
                    _ => "",
                };
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot read the API token {}: {e}{hint}", path.display()),
                ));
            }
        };
        let secret = text.trim();
        if secret.len() < MIN_LEN || secret.len() > MAX_LEN || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} does not hold an API token ({MIN_LEN} to {MAX_LEN} printable characters \
                     without spaces); delete it and restart the daemon to get a new one",
                    path.display()
                ),
            ));
        }
        Ok(ApiToken {
            secret: Zeroizing::new(secret.to_string()),
            path: path.to_path_buf(),
        })
    }

    /// A token held in memory only (tests, or a caller that keeps it elsewhere).
    pub fn from_secret(secret: &str, path: PathBuf) -> ApiToken {
        ApiToken {
            secret: Zeroizing::new(secret.to_string()),
            path,
        }
    }

    /// The token text, for the `Authorization` header. Never log it.
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// The file the token is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `presented` is this token. Constant time in the contents; the length may show, which
    /// says nothing of a 64-digit random token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.secret.as_bytes().ct_eq(presented).into()
    }

    /// Whether an `Authorization` header value carries this token as `Bearer <token>`.
    pub fn accepts_header(&self, value: &[u8]) -> bool {
        const SCHEME: &[u8] = b"bearer ";
        match value.split_at_checked(SCHEME.len()) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(SCHEME) => self.matches(rest.trim_ascii()),
            _ => false,
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes a new token file that is `0600` from its first byte and appears whole or not at all: the text
/// goes to a temporary file, is synced, and is linked into place (which, unlike a rename, fails if
/// another process made the file meanwhile).
fn write_new(path: &Path, secret: &str) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(secret.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::hard_link(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("meshd-api-auth-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_token_is_private_and_reused() {
        let dir = dir("reuse");
        let path = dir.join("state").join("api-token");
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let first = ApiToken::load_or_create(&path, &mut rng).unwrap();
        assert_eq!(first.expose().len(), 64);
        assert!(first.expose().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = ApiToken::load_or_create(&path, &mut rng).unwrap();
        assert_eq!(again.expose(), first.expose());
        assert_eq!(ApiToken::load(&path).unwrap().expose(), first.expose());
        assert!(!format!("{first:?}").contains(first.expose()));
        assert_eq!(
            fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temporary file left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        let dir = dir("mode");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api-token");
        fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = ApiToken::load_or_create(&path, &mut ChaCha20Rng::seed_from_u64(1)).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_and_garbage_files_say_what_to_do() {
        let dir = dir("errors");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api-token");
        let e = ApiToken::load(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("meshd up"), "{e}");
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
        fs::write(&path, "short\n").unwrap();
        let e = ApiToken::load(&path).unwrap_err();
        assert!(e.to_string().contains("delete it"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_header_must_carry_the_exact_token() {
        let token = ApiToken::from_secret("0123456789abcdef0123", PathBuf::new());
        assert!(token.accepts_header(b"Bearer 0123456789abcdef0123"));
        assert!(token.accepts_header(b"bearer 0123456789abcdef0123 "));
        assert!(!token.accepts_header(b"Bearer 0123456789abcdef012"));
        assert!(!token.accepts_header(b"Bearer 0123456789abcdef01234"));
        assert!(!token.accepts_header(b"Basic 0123456789abcdef0123"));
        assert!(!token.accepts_header(b"0123456789abcdef0123"));
        assert!(!token.accepts_header(b""));
    }
}
