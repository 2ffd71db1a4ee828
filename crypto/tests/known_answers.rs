//! Known-answer tests for every primitive, through the same wrappers the protocol uses.
//!
//! Sources of the expected values are named at each test: RFCs and drafts, the BLAKE2 reference KAT
//! file, constants other WireGuard implementations publish, and (for HMAC/KDF, which have no
//! published WireGuard vectors) values computed independently with CPython's `hashlib.blake2s` and
//! `hmac` modules; the script is in the comment so it can be rerun.

use meshd_crypto::noise::{CONSTRUCTION, IDENTIFIER, initial_chaining_key, initial_hash};
use meshd_crypto::primitives::{aead, dh, hash, kdf};

fn h<const N: usize>(s: &str) -> [u8; N] {
    let v = hex::decode(s.split_whitespace().collect::<String>()).unwrap();
    v.try_into().unwrap()
}

fn hv(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

const SUNSCREEN: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";

/// RFC 8439 section 2.8.2, through `ChaChaPoly`, the type the data path seals and opens with.
#[test]
fn chacha20_poly1305_rfc8439_2_8_2() {
    let key: [u8; 32] = h("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    let nonce: [u8; 12] = h("070000004041424344454647");
    let aad = hv("50515253c0c1c2c3c4c5c6c7");
    let ciphertext = hv("d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
        3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
        92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
        3ff4def08e4b7a9de576d26586cec64b6116");
    let tag: [u8; 16] = h("1ae10b594f09e26a7e902ecbd0600691");

    let cipher = aead::ChaChaPoly::new(&key);
    let mut buf = SUNSCREEN.to_vec();
    let mut got_tag = [0u8; 16];
    cipher.seal_in_place(nonce, &aad, &mut buf, &mut got_tag).unwrap();
    assert_eq!(buf, ciphertext);
    assert_eq!(got_tag, tag);

    buf.extend_from_slice(&tag);
    let plain = cipher.open_in_place(nonce, &aad, &mut buf).unwrap();
    assert_eq!(plain, SUNSCREEN);

    let mut forged = ciphertext.clone();
    forged.extend_from_slice(&tag);
    forged[0] ^= 1;
    assert!(cipher.open_in_place(nonce, &aad, &mut forged).is_err());
}

/// draft-irtf-cfrg-xchacha-03 appendix A.3.1 (AEAD_XChaCha20_Poly1305), through `xseal`/`xopen`, the
/// functions cookie replies use.
#[test]
fn xchacha20_poly1305_draft_a_3_1() {
    let key: [u8; 32] = h("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    let nonce: [u8; 24] = h("404142434445464748494a4b4c4d4e4f5051525354555657");
    let aad = hv("50515253c0c1c2c3c4c5c6c7");
    let ciphertext = hv("bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb
        731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452
        2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
        21f9664c97637da9768812f615c68b13b52e");
    let tag = hv("c0875924c1c7987947deafd8780acf49");

    let mut sealed = vec![0u8; SUNSCREEN.len() + 16];
    aead::xseal(&key, &nonce, &aad, SUNSCREEN, &mut sealed).unwrap();
    assert_eq!(&sealed[..SUNSCREEN.len()], &ciphertext[..]);
    assert_eq!(&sealed[SUNSCREEN.len()..], &tag[..]);

    let mut plain = vec![0u8; SUNSCREEN.len()];
    aead::xopen(&key, &nonce, &aad, &sealed, &mut plain).unwrap();
    assert_eq!(plain, SUNSCREEN);
}

/// RFC 7693 appendix B (BLAKE2s-256 of "abc"), and the BLAKE2 reference `blake2s-kat.txt` keyed
/// entries (key 00..1f, inputs "" and 00) for the keyed mode MAC is built on.
#[test]
fn blake2s_rfc7693_and_reference_kat() {
    assert_eq!(
        hash::hash(&[b"abc"]),
        h::<32>("508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
    );
    assert_eq!(
        hash::hash(&[b"a", b"", b"bc"]),
        h::<32>("508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
    );
    // MAC is BLAKE2s keyed and with the 16-byte output length in its parameter block, which differs
    // from truncating a 32-byte output. Python:
    //   hashlib.blake2s(m, key=k, digest_size=16).hexdigest()
    // for (k, m) = (bytes(range(32)), b"abc"), (bytes(range(32)), b""), and the 16-byte cookie-sized
    // key (bytes(range(16)), b"abc").
    let key: Vec<u8> = (0u8..32).collect();
    assert_eq!(
        hash::mac(&key, &[b"abc"]),
        h::<16>("61ba5f165c194692e09d12520cc4c74a")
    );
    assert_eq!(hash::mac(&key, &[]), h::<16>("9536f9b267655743dee97b8a670f9f53"));
    assert_eq!(
        hash::mac(&key[..16], &[b"abc"]),
        h::<16>("75296c2d2c0f51210b383f386bc8b1ff")
    );
}

/// RFC 7748 section 5.2 (two scalar multiplications) and 6.1 (the Alice/Bob exchange).
#[test]
fn x25519_rfc7748() {
    for (scalar, u, out) in [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ] {
        let s = x25519_dalek::StaticSecret::from(h::<32>(scalar));
        assert_eq!(*dh::dh(&s, &h(u)).unwrap(), h::<32>(out));
    }

    let alice = x25519_dalek::StaticSecret::from(h::<32>(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    ));
    let bob = x25519_dalek::StaticSecret::from(h::<32>(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    ));
    let alice_pub = dh::public_key(&alice);
    let bob_pub = dh::public_key(&bob);
    assert_eq!(
        alice_pub,
        h::<32>("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    );
    assert_eq!(
        bob_pub,
        h::<32>("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    );
    let shared = h::<32>("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_eq!(*dh::dh(&alice, &bob_pub).unwrap(), shared);
    assert_eq!(*dh::dh(&bob, &alice_pub).unwrap(), shared);

    // The same through the key type the daemon stores.
    let k = meshd_crypto::StaticSecret::from_bytes(h(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    ));
    assert_eq!(k.public_key().as_bytes(), &alice_pub);
}

/// The initial chaining key and hash, as published by other WireGuard implementations (e.g.
/// rustyguard's `CONSTRUCTION_HASH` and `IDENTIFIER_HASH` byte arrays).
#[test]
fn noise_initial_constants() {
    assert_eq!(CONSTRUCTION, b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s");
    assert_eq!(IDENTIFIER, b"WireGuard v1 zx2c4 Jason@zx2c4.com");
    assert_eq!(
        initial_chaining_key(),
        h::<32>("60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36")
    );
    assert_eq!(
        initial_hash(),
        h::<32>("2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3")
    );
}

/// HMAC-BLAKE2s and KDF1/2/3. Expected values from CPython:
///
/// ```python
/// import hashlib, hmac
/// HM = lambda k, m: hmac.new(k, m, hashlib.blake2s).digest()
/// HM(bytes(range(32)), b"abc").hex()            # hmac
/// HM(bytes(range(100)), b"abc").hex()           # key longer than the 64-byte block
/// ci = hashlib.blake2s(b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s").digest()
/// t0 = HM(ci, b"\x42" * 32); t1 = HM(t0, b"\x01"); t2 = HM(t0, t1 + b"\x02"); t3 = HM(t0, t2 + b"\x03")
/// ```
#[test]
fn hmac_blake2s_and_kdf() {
    let key: Vec<u8> = (0u8..32).collect();
    assert_eq!(
        hash::hmac(&key, &[b"abc"]),
        h::<32>("82623be5bc0a391b24dce53e67d028eff92d586de0485ac37822e597d049c74f")
    );
    let long: Vec<u8> = (0u8..100).collect();
    assert_eq!(
        hash::hmac(&long, &[b"ab", b"c"]),
        h::<32>("c1b751501db12b753069a918627b623179be55c8cc7ca5c4e14bdf32274ac656")
    );

    let ci = initial_chaining_key();
    let input = [0x42u8; 32];
    let t1 = h::<32>("7c2e52a7caca44d65a8e13a5eedc5a1c053d4923396dde6808ca7381c9fa31d1");
    let t2 = h::<32>("32016483cdab35bc3625293aaf8a06aeff1505e5ad3f7bce2858ba7c24fbc9c3");
    let t3 = h::<32>("8ad1f3ddf2249e1bf68b8b5d329d6c5751696093facfa5a2f8993152009a41c8");
    assert_eq!(kdf::kdf1(&ci, &input), t1);
    assert_eq!(kdf::kdf2(&ci, &input), (t1, t2));
    assert_eq!(kdf::kdf3(&ci, &input), (t1, t2, t3));
}

/// The mac1 key of a receiver is `HASH("mac1----" || Spub)`; Python:
/// `hashlib.blake2s(b"mac1----" + bytes([9] * 32)).hexdigest()`.
#[test]
fn mac1_key_label() {
    assert_eq!(
        hash::hash(&[meshd_crypto::cookie::LABEL_MAC1, &[9u8; 32]]),
        h::<32>("248139402e7359c192c496c58a8397a55274981f3bd3f714ac08105ee678c8c7")
    );
}
