//! The node's files under the state directory:
//!
//! - `node.key`: the node's private key, base64 as `wg genkey` writes it, mode 0600;
//! - `membership.json`: the network this node joined and its place in it ([`Membership`]);
//! - `map.bin`: the last complete network map (postcard), so a restarted node works while the
//!   controller is away;
//! - `controller.db`: the controller's database, on a controller (see `controller::store`);
//! - `api-token`: the admin API's bearer token, mode 0600;
//! - `api.sock`: the admin API's Unix socket, mode 0600, while the daemon runs;
//! - `meshd.lock`: locked (`flock`) by the running daemon, holding its pid (`sys::files::lock`).
//!
//! Every write is atomic (`sys::files::write_atomic`).

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use meshd_crypto::StaticSecret;
use zeroize::Zeroizing;

use crate::mesh::map::NetworkMap;
use crate::mesh::membership::Membership;
use crate::sys::files::{read_private, write_atomic};

pub const KEY_FILE: &str = "node.key";
pub const MEMBERSHIP_FILE: &str = "membership.json";
pub const MAP_FILE: &str = "map.bin";

/// The node's key: read from `node.key`, or made from `seed` (fresh OS randomness) and written there
/// on first start.
pub fn node_key(dir: &Path, seed: [u8; 32]) -> anyhow::Result<StaticSecret> {
    let path = dir.join(KEY_FILE);
    if let Some(text) = read_private(&path).with_context(|| format!("cannot read {}", path.display()))? {
        let text = Zeroizing::new(text);
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim_ascii())
                .with_context(|| format!("{} is not a base64 key", path.display()))?,
        );
        let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) else {
            bail!("{} does not hold a 32-byte key", path.display());
        };
        return Ok(StaticSecret::from_bytes(key));
    }
    let secret = StaticSecret::from_bytes(seed);
    let mut text = Zeroizing::new(STANDARD.encode(*secret.to_bytes()));
    text.push('\n');
    write_atomic(&path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!("made a new node key in {}", path.display());
    Ok(secret)
}

/// The membership and last map, if this node joined a network.
pub fn load(dir: &Path) -> anyhow::Result<(Option<Membership>, Option<NetworkMap>)> {
    let path = dir.join(MEMBERSHIP_FILE);
    let Some(text) = read_private(&path).with_context(|| format!("cannot read {}", path.display()))? else {
        return Ok((None, None));
    };
    let membership: Membership = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is damaged; restore it, or remove it and join again with a new token",
            path.display()
        )
    })?;
    let map_path = dir.join(MAP_FILE);
    let map = match read_private(&map_path) {
        Ok(Some(bytes)) => match NetworkMap::decode(&bytes) {
            Ok(map) => Some(map),
            Err(e) => {
                tracing::warn!(
                    "ignoring {}: {e}; the controller sends a new map",
                    map_path.display()
                );
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("ignoring {}: {e}", map_path.display());
            None
        }
    };
    Ok((Some(membership), map))
}

pub fn save(dir: &Path, membership: &Membership, map: Option<&NetworkMap>) -> anyhow::Result<()> {
    let path = dir.join(MEMBERSHIP_FILE);
    let mut text = serde_json::to_vec_pretty(membership).context("encoding the membership")?;
    text.push(b'\n');
    write_atomic(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let map_path = dir.join(MAP_FILE);
    match map {
        Some(map) => write_atomic(&map_path, &map.encode())
            .with_context(|| format!("cannot write {}", map_path.display()))?,
        None => match std::fs::remove_file(&map_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", map_path.display())),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_is_made_once_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("meshd-state-{}", std::process::id()));
        crate::sys::files::ensure_private_dir(&dir).unwrap();
        let a = node_key(&dir, [5; 32]).unwrap();
        let b = node_key(&dir, [6; 32]).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(&dir).unwrap(), (None, None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
