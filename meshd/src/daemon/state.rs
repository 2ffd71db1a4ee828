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
//!
//! A key is made only on a first start: when `node.key` is missing but the other files show that
//! this node had one (a membership, a map, a controller database), starting is refused, since a new
//! key would make the node a stranger to its controller, or strand every token and member of a
//! controller. `meshd up --new-key` makes a new key all the same, knowing that.

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use meshd_crypto::StaticSecret;
use zeroize::Zeroizing;

use meshd_core::map::NetworkMap;
use meshd_core::mesh::membership::Membership;
use meshd_wg::sys::files::{read_private, write_atomic};

pub const KEY_FILE: &str = "node.key";
pub const MEMBERSHIP_FILE: &str = "membership.json";
pub const MAP_FILE: &str = "map.bin";

/// The files whose presence shows that this state directory had a key.
const KEY_EVIDENCE: &[&str] = &[
    MEMBERSHIP_FILE,
    MAP_FILE,
    meshd_controller::store::DB_FILE,
    "controller.db-wal",
];

/// The node's key: read from `node.key`, or made from `seed` (fresh OS randomness) and written there
/// on first start. A missing key where other state shows there was one is an error unless `new_key`;
/// then the saved membership and map, which belong to the old key, are removed too.
pub fn node_key(dir: &Path, seed: [u8; 32], new_key: bool) -> anyhow::Result<StaticSecret> {
    let path = dir.join(KEY_FILE);
    if new_key && path.exists() {
        bail!(
            "--new-key replaces a lost key, but {} is there; to replace a working key, move that \
             file away first (the node then joins again as a new machine)",
            path.display()
        );
    }
    let evidence: Vec<String> = KEY_EVIDENCE
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !path.exists() && !evidence.is_empty() {
        if !new_key {
            bail!(
                "{} is missing, but {} shows that this node had a key; meshd does not make a new \
                 one in its place. Restore node.key from a backup. If it is lost for good, start \
                 with `meshd up --new-key`: the node then is a stranger to its controller and joins \
                 again with a new token (on a controller, every join token and every member names \
                 the old key: each member must join again)",
                path.display(),
                evidence.join(" and ")
            );
        }
        for stale in [MEMBERSHIP_FILE, MAP_FILE] {
            remove_if_there(&dir.join(stale))?;
        }
        tracing::warn!(
            "making a new node key in place of the lost one, as --new-key asks; the membership of \
             the old key is forgotten"
        );
    }
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

/// Removes the membership and map: the node was removed from its network, or left it.
pub fn forget(dir: &Path) -> anyhow::Result<()> {
    remove_if_there(&dir.join(MEMBERSHIP_FILE))?;
    remove_if_there(&dir.join(MAP_FILE))
}

fn remove_if_there(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

pub fn save(dir: &Path, membership: &Membership, map: Option<&NetworkMap>) -> anyhow::Result<()> {
    let path = dir.join(MEMBERSHIP_FILE);
    let mut text = serde_json::to_vec_pretty(membership).context("encoding the membership")?;
    text.push(b'\n');
    write_atomic(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let map_path = dir.join(MAP_FILE);
    match map {
        Some(map) => write_atomic(&map_path, &map.encode())
            .with_context(|| format!("cannot write {}", map_path.display())),
        None => remove_if_there(&map_path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("meshd-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        meshd_wg::sys::files::ensure_private_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn a_lost_key_is_not_replaced_where_state_shows_there_was_one() {
        for evidence in [MEMBERSHIP_FILE, MAP_FILE, "controller.db"] {
            let dir = dir(&format!("lost-{evidence}"));
            std::fs::write(dir.join(evidence), b"x").unwrap();
            let e = format!("{:#}", node_key(&dir, [5; 32], false).unwrap_err());
            assert!(e.contains("node.key is missing") && e.contains(evidence), "{e}");
            assert!(e.contains("--new-key"), "{e}");
            assert!(!dir.join(KEY_FILE).exists(), "a key was made");
            // --new-key makes one, and forgets the old key's membership and map.
            let key = node_key(&dir, [5; 32], true).unwrap();
            assert!(dir.join(KEY_FILE).exists());
            assert!(!dir.join(MEMBERSHIP_FILE).exists() && !dir.join(MAP_FILE).exists());
            assert_eq!(
                node_key(&dir, [6; 32], false).unwrap().public_key(),
                key.public_key()
            );
            // ... but never replaces a key that is there.
            let e = format!("{:#}", node_key(&dir, [7; 32], true).unwrap_err());
            assert!(e.contains("move that file away"), "{e}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn key_is_made_once_private_and_read_back() {
        let dir = dir("once");
        let a = node_key(&dir, [5; 32], false).unwrap();
        let b = node_key(&dir, [6; 32], false).unwrap();
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
