//! Join tokens made by hand, for the tests of tokens a controller must refuse.
//!
//! The format (docs/protocol.md, core/src/token.rs) is
//! `meshd1-` + base32(controller key (32) || id (8) || secret (16) || check (4)), with
//! check = BLAKE2s-256("meshd token check v1" || the first 56 bytes)[..4]. A token that merely has a
//! character changed fails the check and is *malformed*; to present a controller with a token it does
//! not *know*, the test takes a real token of that controller and replaces the id or the secret,
//! recomputing the check, exactly as a token from a lost database or a guessed secret would look.
//!
//! The codec is written out here rather than taken from the daemon crate, so these tests check the
//! format as documented, not meshd against itself; the hash is the workspace's BLAKE2s.

pub const PREFIX: &str = "meshd1-";
const PAYLOAD_LEN: usize = 60;
const SIGNED_LEN: usize = 56;
const KEY_LEN: usize = 32;
const ID_LEN: usize = 8;
const CHECK_LABEL: &[u8] = b"meshd token check v1";
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The bytes of a well-formed token, or `None` if it is not one (bad prefix, length, alphabet or check).
pub fn decode(text: &str) -> Option<[u8; PAYLOAD_LEN]> {
    let body = text.trim().strip_prefix(PREFIX)?;
    if body.len() != PAYLOAD_LEN * 8 / 5 {
        return None;
    }
    let mut out = [0u8; PAYLOAD_LEN];
    for (chars, bytes) in body.as_bytes().chunks_exact(8).zip(out.chunks_exact_mut(5)) {
        let mut bits = 0u64;
        for &c in chars {
            let v = match c.to_ascii_lowercase() {
                c @ b'a'..=b'z' => c - b'a',
                c @ b'2'..=b'7' => c - b'2' + 26,
                _ => return None,
            };
            bits = bits << 5 | u64::from(v);
        }
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (bits >> (32 - 8 * i)) as u8;
        }
    }
    (check(&out[..SIGNED_LEN]) == out[SIGNED_LEN..]).then_some(out)
}

/// A well-formed token for these 56 bytes (key, id, secret), with its check.
pub fn encode(signed: &[u8; SIGNED_LEN]) -> String {
    let mut payload = [0u8; PAYLOAD_LEN];
    payload[..SIGNED_LEN].copy_from_slice(signed);
    payload[SIGNED_LEN..].copy_from_slice(&check(signed));
    let mut text = String::from(PREFIX);
    for group in payload.chunks_exact(5) {
        let bits = group.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        for i in (0..8).rev() {
            text.push(char::from(BASE32[(bits >> (i * 5)) as usize & 31]));
        }
    }
    text
}

/// `token` with every bit of its id and secret flipped: the same controller key and a valid check,
/// but an id the controller never issued.
#[track_caller]
pub fn with_unknown_id(token: &str) -> String {
    let mut signed = signed_part(token);
    for b in &mut signed[KEY_LEN..] {
        *b ^= 0xff;
    }
    encode(&signed)
}

/// `token` with the same key and id, and a different secret: a real token's name with a guessed secret.
#[track_caller]
pub fn with_wrong_secret(token: &str) -> String {
    let mut signed = signed_part(token);
    for b in &mut signed[KEY_LEN + ID_LEN..] {
        *b ^= 0x5a;
    }
    encode(&signed)
}

/// `token` with one character changed, as a bad copy would: the check no longer matches.
#[track_caller]
pub fn damaged(token: &str) -> String {
    signed_part(token);
    let mut chars: Vec<char> = token.trim().chars().collect();
    let i = PREFIX.len() + 20;
    chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
    let damaged: String = chars.into_iter().collect();
    assert!(
        decode(&damaged).is_none(),
        "a changed character must break the check"
    );
    damaged
}

/// The token id as `meshd token list` shows it (16 hex digits).
#[track_caller]
pub fn id_hex(token: &str) -> String {
    signed_part(token)[KEY_LEN..KEY_LEN + ID_LEN]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[track_caller]
fn signed_part(token: &str) -> [u8; SIGNED_LEN] {
    let payload = decode(token).unwrap_or_else(|| panic!("{token:?} is not a well-formed meshd1 token"));
    let mut signed = [0u8; SIGNED_LEN];
    signed.copy_from_slice(&payload[..SIGNED_LEN]);
    signed
}

fn check(signed: &[u8]) -> [u8; 4] {
    use blake2::{Blake2s256, Digest};
    let digest = Blake2s256::new()
        .chain_update(CHECK_LABEL)
        .chain_update(signed)
        .finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_tokens_are_well_formed_and_differ_where_intended() {
        let mut signed = [0u8; SIGNED_LEN];
        for (i, b) in signed.iter_mut().enumerate() {
            *b = i as u8;
        }
        let token = encode(&signed);
        // Computed independently (Python's hashlib.blake2s and base64.b32encode).
        assert_eq!(
            token,
            "meshd1-aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypsaijcemsckjrhfausukzmfuxc6mbrgiztinjwg5x5i37i"
        );
        assert_eq!(decode(&token).unwrap()[..SIGNED_LEN], signed);
        assert_eq!(
            decode(&token.to_uppercase().replace("MESHD1-", PREFIX)).unwrap()[..SIGNED_LEN],
            signed
        );
        assert_eq!(id_hex(&token), "2021222324252627");

        let unknown = decode(&with_unknown_id(&token)).unwrap();
        assert_eq!(unknown[..KEY_LEN], signed[..KEY_LEN]);
        assert_ne!(
            unknown[KEY_LEN..KEY_LEN + ID_LEN],
            signed[KEY_LEN..KEY_LEN + ID_LEN]
        );

        let guessed = decode(&with_wrong_secret(&token)).unwrap();
        assert_eq!(guessed[..KEY_LEN + ID_LEN], signed[..KEY_LEN + ID_LEN]);
        assert_ne!(guessed[KEY_LEN + ID_LEN..SIGNED_LEN], signed[KEY_LEN + ID_LEN..]);

        assert!(decode(&damaged(&token)).is_none());
        assert!(decode("meshd1-abc").is_none());
    }
}
