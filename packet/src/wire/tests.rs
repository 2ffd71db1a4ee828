use super::*;
use proptest::prelude::*;
use zerocopy::IntoBytes;

fn initiation_bytes() -> Vec<u8> {
    let mut m = HandshakeInitiation::new();
    m.sender_index.set(0x0403_0201);
    m.unencrypted_ephemeral = [0xe1; 32];
    m.encrypted_static = [0x55; 48];
    m.encrypted_timestamp = [0x77; 28];
    m.mac1 = [0x11; 16];
    m.mac2 = [0x22; 16];
    m.as_bytes().to_vec()
}

fn response_bytes() -> Vec<u8> {
    let mut m = HandshakeResponse::new();
    m.sender_index.set(7);
    m.receiver_index.set(9);
    m.unencrypted_ephemeral = [0xe2; 32];
    m.encrypted_nothing = [0x33; 16];
    m.mac1 = [0x11; 16];
    m.as_bytes().to_vec()
}

fn cookie_bytes() -> Vec<u8> {
    let mut m = CookieReply::new();
    m.receiver_index.set(0xdead_beef);
    m.nonce = [0x44; 24];
    m.encrypted_cookie = [0x66; 32];
    m.as_bytes().to_vec()
}

fn data_bytes(payload_len: usize) -> Vec<u8> {
    let mut v = DataHeader::new(0x1122_3344, 0x0102_0304_0506_0708)
        .as_bytes()
        .to_vec();
    v.extend((0..payload_len).map(|i| i as u8));
    v
}

#[test]
fn fields_sit_at_the_paper_offsets() {
    let b = initiation_bytes();
    assert_eq!(&b[0..4], &[1, 0, 0, 0]);
    assert_eq!(
        &b[4..8],
        &[1, 2, 3, 4],
        "sender index is little-endian at offset 4"
    );
    assert_eq!(&b[8..40], &[0xe1; 32]);
    assert_eq!(&b[40..88], &[0x55; 48]);
    assert_eq!(&b[88..116], &[0x77; 28]);
    assert_eq!(&b[116..132], &[0x11; 16]);
    assert_eq!(&b[132..148], &[0x22; 16]);

    let b = response_bytes();
    assert_eq!(&b[0..4], &[2, 0, 0, 0]);
    assert_eq!(&b[4..8], &7u32.to_le_bytes());
    assert_eq!(&b[8..12], &9u32.to_le_bytes());
    assert_eq!(&b[12..44], &[0xe2; 32]);
    assert_eq!(&b[44..60], &[0x33; 16]);
    assert_eq!(&b[60..76], &[0x11; 16]);
    assert_eq!(&b[76..92], &[0; 16]);

    let b = cookie_bytes();
    assert_eq!(&b[0..4], &[3, 0, 0, 0]);
    assert_eq!(&b[4..8], &0xdead_beefu32.to_le_bytes());
    assert_eq!(&b[8..32], &[0x44; 24]);
    assert_eq!(&b[32..64], &[0x66; 32]);

    let b = data_bytes(0);
    assert_eq!(b, [4, 0, 0, 0, 0x44, 0x33, 0x22, 0x11, 8, 7, 6, 5, 4, 3, 2, 1]);
}

#[test]
fn mac_inputs_cover_the_bytes_before_each_mac() {
    let b = initiation_bytes();
    let m = HandshakeInitiation::ref_from_bytes(&b[..]).unwrap();
    assert_eq!(m.mac1_input(), &b[..116]);
    assert_eq!(m.mac2_input(), &b[..132]);
    let b = response_bytes();
    let m = HandshakeResponse::ref_from_bytes(&b[..]).unwrap();
    assert_eq!(m.mac1_input(), &b[..60]);
    assert_eq!(m.mac2_input(), &b[..76]);
}

#[test]
fn parses_each_message_type() {
    let b = initiation_bytes();
    match parse(&b).unwrap() {
        Message::Initiation(m) => assert_eq!(m.sender_index.get(), 0x0403_0201),
        other => panic!("{other:?}"),
    }
    let b = response_bytes();
    match parse(&b).unwrap() {
        Message::Response(m) => {
            assert_eq!(m.sender_index.get(), 7);
            assert_eq!(m.receiver_index.get(), 9);
        }
        other => panic!("{other:?}"),
    }
    let b = cookie_bytes();
    let m = parse(&b).unwrap();
    assert!(matches!(m, Message::CookieReply(_)));
    assert_eq!(m.receiver_index(), Some(0xdead_beef));

    let b = data_bytes(16);
    match parse(&b).unwrap() {
        Message::Data { header, payload } => {
            assert_eq!(header.receiver_index.get(), 0x1122_3344);
            assert_eq!(header.counter.get(), 0x0102_0304_0506_0708);
            assert_eq!(payload, &b[16..]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn data_needs_header_and_tag() {
    assert_eq!(parse(&data_bytes(15)).unwrap_err(), ParseError::BadMessageLength);
    assert!(parse(&data_bytes(16)).is_ok(), "a keepalive is header + tag");
    assert!(
        parse(&data_bytes(17)).is_ok(),
        "unpadded payloads are accepted (boringtun sends them)"
    );
    assert!(parse(&data_bytes(1500)).is_ok());
}

#[test]
fn rejects_wrong_lengths_of_fixed_messages() {
    for (b, len) in [
        (initiation_bytes(), 148),
        (response_bytes(), 92),
        (cookie_bytes(), 64),
    ] {
        assert_eq!(parse(&b[..len - 1]).unwrap_err(), ParseError::BadMessageLength);
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(parse(&longer).unwrap_err(), ParseError::BadMessageLength);
        assert_eq!(parse(&b[..4]).unwrap_err(), ParseError::BadMessageLength);
    }
}

#[test]
fn rejects_short_unknown_and_reserved() {
    assert_eq!(parse(&[]).unwrap_err(), ParseError::Truncated);
    assert_eq!(parse(&[1, 0, 0]).unwrap_err(), ParseError::Truncated);
    for t in [0u8, 5, 6, 0x80, 0xff] {
        let mut b = initiation_bytes();
        b[0] = t;
        assert_eq!(parse(&b).unwrap_err(), ParseError::UnknownType, "type {t}");
    }
    for i in 1..4 {
        let mut b = data_bytes(16);
        b[i] = 1;
        assert_eq!(parse(&b).unwrap_err(), ParseError::ReservedNotZero);
        assert_eq!(message_type(&b).unwrap_err(), ParseError::ReservedNotZero);
    }
    assert_eq!(message_type(&data_bytes(0)), Ok(TYPE_DATA));
}

#[test]
fn message_len_and_write_to_reproduce_the_datagram() {
    for b in [
        initiation_bytes(),
        response_bytes(),
        cookie_bytes(),
        data_bytes(100),
    ] {
        let m = parse(&b).unwrap();
        assert_eq!(m.len(), b.len());
        assert_eq!(m.message_type(), b[0]);
        let mut out = Vec::new();
        m.write_to(&mut out);
        assert_eq!(out, b);
    }
}

fn valid_message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(initiation_bytes()),
        Just(response_bytes()),
        Just(cookie_bytes()),
        (0usize..200).prop_map(|n| data_bytes(16 + n)),
    ]
}

proptest! {
    #[test]
    fn parse_never_panics_on_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(m) = parse(&b) {
            let mut out = Vec::new();
            m.write_to(&mut out);
            prop_assert_eq!(out, b);
        }
    }

    #[test]
    fn parse_never_panics_on_mutated_messages(
        b in valid_message(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut b = b;
        for (at, x) in flips {
            let i = at.index(b.len());
            b[i] ^= x;
        }
        if truncate {
            let n = cut.index(b.len() + 1);
            b.truncate(n);
        }
        match parse(&b) {
            Ok(m) => {
                prop_assert!((1..=4).contains(&b[0]));
                prop_assert_eq!(&b[1..4], &[0, 0, 0]);
                prop_assert_eq!(m.len(), b.len());
            }
            Err(ParseError::Truncated) => prop_assert!(b.len() < 4),
            Err(ParseError::UnknownType) => prop_assert!(!(1..=4).contains(&b[0])),
            Err(ParseError::ReservedNotZero) => prop_assert_ne!(&b[1..4], &[0, 0, 0]),
            Err(ParseError::BadMessageLength) => {}
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }
}
