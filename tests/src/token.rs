//! Join tokens made by hand, for the tests of tokens a controller must refuse.
//!
//! The format (docs/protocol.md, meshd/src/controller/token.rs) is
//! `meshd1-` + base32(controller key (32) || id (8) || secret (16) || check (4)), with
//! check = BLAKE2s-256("meshd token check v1" || the first 56 bytes)[..4]. A token that merely has a
//! character changed fails the check and is *malformed*; to present a controller with a token it does
//! not *know*, the test takes a real token of that controller and replaces the id or the secret,
//! recomputing the check, exactly as a token from a lost database or a guessed secret would look.
//!
//! BLAKE2s is written out here (RFC 7693) because the harness keeps to the dependencies it has.

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
    let mut input = CHECK_LABEL.to_vec();
    input.extend_from_slice(signed);
    let digest = blake2s256(&input);
    [digest[0], digest[1], digest[2], digest[3]]
}

const IV: [u32; 8] = [
    0x6A09_E667,
    0xBB67_AE85,
    0x3C6E_F372,
    0xA54F_F53A,
    0x510E_527F,
    0x9B05_688C,
    0x1F83_D9AB,
    0x5BE0_CD19,
];

const SIGMA: [[usize; 16]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];

/// Unkeyed BLAKE2s with a 32-byte digest (RFC 7693).
pub fn blake2s256(data: &[u8]) -> [u8; 32] {
    let mut h = IV;
    h[0] ^= 0x0101_0000 ^ 32;
    let blocks = data.len().div_ceil(64).max(1);
    for i in 0..blocks {
        let chunk = &data[i * 64..data.len().min((i + 1) * 64)];
        let mut block = [0u8; 64];
        block[..chunk.len()].copy_from_slice(chunk);
        let last = i + 1 == blocks;
        let counter = if last { data.len() } else { (i + 1) * 64 } as u64;
        compress(&mut h, &block, counter, last);
    }
    let mut out = [0u8; 32];
    for (word, bytes) in h.iter().zip(out.chunks_exact_mut(4)) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    out
}

fn compress(h: &mut [u32; 8], block: &[u8; 64], counter: u64, last: bool) {
    let mut m = [0u32; 16];
    for (word, bytes) in m.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    let mut v = [0u32; 16];
    v[..8].copy_from_slice(h);
    v[8..].copy_from_slice(&IV);
    v[12] ^= counter as u32;
    v[13] ^= (counter >> 32) as u32;
    if last {
        v[14] = !v[14];
    }
    for s in &SIGMA {
        g(&mut v, 0, 4, 8, 12, m[s[0]], m[s[1]]);
        g(&mut v, 1, 5, 9, 13, m[s[2]], m[s[3]]);
        g(&mut v, 2, 6, 10, 14, m[s[4]], m[s[5]]);
        g(&mut v, 3, 7, 11, 15, m[s[6]], m[s[7]]);
        g(&mut v, 0, 5, 10, 15, m[s[8]], m[s[9]]);
        g(&mut v, 1, 6, 11, 12, m[s[10]], m[s[11]]);
        g(&mut v, 2, 7, 8, 13, m[s[12]], m[s[13]]);
        g(&mut v, 3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for i in 0..8 {
        h[i] ^= v[i] ^ v[i + 8];
    }
}

fn g(v: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize, x: u32, y: u32) {
    v[a] = v[a].wrapping_add(v[b]).wrapping_add(x);
    v[d] = (v[d] ^ v[a]).rotate_right(16);
    v[c] = v[c].wrapping_add(v[d]);
    v[b] = (v[b] ^ v[c]).rotate_right(12);
    v[a] = v[a].wrapping_add(v[b]).wrapping_add(y);
    v[d] = (v[d] ^ v[a]).rotate_right(8);
    v[c] = v[c].wrapping_add(v[d]);
    v[b] = (v[b] ^ v[c]).rotate_right(7);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn blake2s_known_answers() {
        // RFC 7693 appendix B, and the empty message.
        assert_eq!(
            hex(&blake2s256(b"abc")),
            "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
        );
        assert_eq!(
            hex(&blake2s256(b"")),
            "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9"
        );
        // Exactly one block, one byte more, and several blocks: the counter and last-block rules.
        for (len, digest) in [
            (
                64,
                "56f34e8b96557e90c1f24b52d0c89d51086acf1b00f634cf1dde9233b8eaaa3e",
            ),
            (
                65,
                "1b53ee94aaf34e4b159d48de352c7f0661d0a40edff95a0b1639b4090e974472",
            ),
            (
                256,
                "5fdeb59f681d975f52c8e69c5502e02a12a3afcc5836ba58f42784c439228781",
            ),
        ] {
            let input: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert_eq!(hex(&blake2s256(&input)), digest, "{len} bytes");
        }
    }

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
