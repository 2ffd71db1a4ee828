//! The controller's store against its contract: refusals change nothing, rejoins are idempotent,
//! addresses are unique and survive a reopen, and an acknowledged write survives `kill -9`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshd_controller::store::{DB_FILE, MIGRATIONS, Migration, NetworkSpec, Sighting, Store, StoreError};
use meshd_core::token::{TokenError, TokenPolicy};
use meshd_crypto::PublicKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// A directory under the target dir, emptied at the start and removed when the test passes (kept
/// when it fails, to look at).
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> Self {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("controller-store-{name}"));
        let _ = std::fs::remove_dir_all(&path);
        TestDir(path)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000 + secs)
}

fn key(n: u32) -> PublicKey {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&n.to_be_bytes());
    k[31] = 0x5a;
    PublicKey::from_bytes(k)
}

fn controller() -> PublicKey {
    PublicKey::from_bytes([0xc0; 32])
}

fn lab(v4: &str) -> NetworkSpec {
    NetworkSpec {
        name: "lab".into(),
        ipv4: v4.parse().unwrap(),
        ipv6: Some("fd44:30::/64".parse().unwrap()),
        mtu: 1376,
        reserve_controller: true,
    }
}

fn store_with_lab(dir: &TestDir) -> Store {
    let mut store = Store::open(&dir.0).unwrap();
    store.create_network(&lab("44.30.127.0/24"), at(0)).unwrap();
    store
}

/// Every row of every table, as text: two dumps are equal exactly when the content is.
fn dump(dir: &TestDir) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(
        dir.0.join(DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut out = Vec::new();
    for table in ["networks", "members", "tokens"] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
            .unwrap();
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let values: Vec<String> = (0..columns)
                .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                .collect();
            out.push(format!("{table}: {}", values.join(" | ")));
        }
    }
    out
}

fn token_error(result: Result<impl std::fmt::Debug, StoreError>) -> TokenError {
    match result {
        Err(StoreError::Token(e)) => e,
        other => panic!("expected a token refusal, got {other:?}"),
    }
}

#[test]
fn a_join_assigns_addresses_and_consumes_the_token() {
    let dir = TestDir::new("join");
    let mut store = store_with_lab(&dir);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (info, text) = store
        .create_token("lab", &controller(), TokenPolicy::single_use(), at(1), &mut rng)
        .unwrap();
    assert_eq!(info.limits.uses_left, Some(1));

    let joined = store.join(text.expose(), &key(1), "laptop", at(2)).unwrap();
    assert!(joined.new);
    let m = &joined.member;
    assert!(m.authorized);
    assert_eq!(m.name, "laptop");
    // .1 and ::1 belong to the controller.
    assert_eq!(m.ipv4, Ipv4Addr::new(44, 30, 127, 2));
    assert_eq!(m.ipv6, Some("fd44:30::2".parse().unwrap()));
    assert_eq!(m.created, at(2));
    assert_eq!(store.member("lab", &key(1)).unwrap(), *m);

    let tokens = store.tokens("lab").unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].limits.uses_left, Some(0));
    assert_eq!(tokens[0].max_uses, Some(1));
}

#[test]
fn the_token_carries_the_controller_key() {
    let dir = TestDir::new("token-key");
    let mut store = store_with_lab(&dir);
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (info, text) = store
        .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
        .unwrap();
    let parsed = meshd_controller::JoinToken::parse(text.expose()).unwrap();
    assert_eq!(parsed.controller_key(), &controller());
    assert_eq!(parsed.id(), info.id);
}

#[test]
fn every_refusal_names_its_cause_and_changes_nothing() {
    let dir = TestDir::new("refusals");
    let mut store = store_with_lab(&dir);
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let policy = TokenPolicy::uses(NonZeroU32::new(1).unwrap());
    let (_, used_up) = store
        .create_token("lab", &controller(), policy, at(1), &mut rng)
        .unwrap();
    store.join(used_up.expose(), &key(1), "first", at(2)).unwrap();
    let (_, expiring) = store
        .create_token("lab", &controller(), policy.expiring(at(100)), at(1), &mut rng)
        .unwrap();
    let (revoked_info, revoked) = store
        .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
        .unwrap();
    store.revoke_token(revoked_info.id).unwrap();
    // A genuine-looking token this controller never made.
    let (_, foreign) = {
        let other = TestDir::new("refusals-other");
        let mut other = store_with_lab(&other);
        other
            .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
            .unwrap()
    };
    // (A known id with a wrong secret: a_wrong_secret_under_a_known_id_is_unknown.)
    let mut damaged = used_up.expose().to_owned();
    damaged.truncate(damaged.len() - 1);

    let before = dump(&dir);
    let now = at(200);
    assert_eq!(
        token_error(store.join(used_up.expose(), &key(9), "n", now)),
        TokenError::UsedUp
    );
    assert_eq!(
        token_error(store.join(expiring.expose(), &key(9), "n", now)),
        TokenError::Expired { at: at(100) }
    );
    assert_eq!(
        token_error(store.join(revoked.expose(), &key(9), "n", now)),
        TokenError::Revoked
    );
    assert_eq!(
        token_error(store.join(foreign.expose(), &key(9), "n", now)),
        TokenError::Unknown
    );
    assert_eq!(
        token_error(store.join(&damaged, &key(9), "n", now)),
        TokenError::Malformed
    );
    // (A name that could not be printed is not refused but made safe: see
    // `members_get_unique_dns_names_and_keep_what_they_asked_for_as_a_label`.)
    assert_eq!(dump(&dir), before);
    assert!(matches!(
        store.member("lab", &key(9)),
        Err(StoreError::NoSuchMember { .. })
    ));
}

#[test]
fn a_wrong_secret_under_a_known_id_is_unknown() {
    let dir = TestDir::new("wrong-secret");
    let mut store = store_with_lab(&dir);
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let (info, text) = store
        .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
        .unwrap();
    // Replace the stored hash, as if the presented secret were a different one: the id is known,
    // the secret does not match.
    {
        let conn = rusqlite::Connection::open(dir.0.join(DB_FILE)).unwrap();
        conn.execute(
            "UPDATE tokens SET hash = zeroblob(32) WHERE id = ?1",
            [&info.id.as_bytes()[..]],
        )
        .unwrap();
    }
    let before = dump(&dir);
    assert_eq!(
        token_error(store.join(text.expose(), &key(1), "n", at(2))),
        TokenError::Unknown
    );
    assert_eq!(dump(&dir), before);
}

#[test]
fn a_rejoin_returns_the_same_member_and_takes_no_use() {
    let dir = TestDir::new("rejoin");
    let mut store = store_with_lab(&dir);
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let two = TokenPolicy::uses(NonZeroU32::new(2).unwrap());
    let (_, text) = store
        .create_token("lab", &controller(), two, at(1), &mut rng)
        .unwrap();
    let first = store.join(text.expose(), &key(1), "a", at(2)).unwrap();
    let before = dump(&dir);
    let again = store.join(text.expose(), &key(1), "renamed", at(3)).unwrap();
    assert!(!again.new);
    assert_eq!(again.member, first.member);
    assert_eq!(dump(&dir), before, "a rejoin wrote something");
    // The second use is still there for another machine, and then the token is used up.
    let other = store.join(text.expose(), &key(2), "b", at(4)).unwrap();
    assert!(other.new);
    assert_eq!(
        token_error(store.join(text.expose(), &key(3), "c", at(5))),
        TokenError::UsedUp
    );
    // A used-up token still lets its own members rejoin.
    assert!(!store.join(text.expose(), &key(1), "a", at(6)).unwrap().new);

    // A deauthorized member that rejoins stays deauthorized.
    store.set_authorized("lab", &key(2), false).unwrap();
    let rejoined = store.join(text.expose(), &key(2), "b", at(7)).unwrap();
    assert!(!rejoined.member.authorized);
}

#[test]
fn addresses_are_unique_under_many_joins_until_the_block_runs_out() {
    let dir = TestDir::new("many");
    let mut store = Store::open(&dir.0).unwrap();
    // A /25 with the controller's address reserved: 125 members.
    store.create_network(&lab("10.9.0.0/25"), at(0)).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let (_, text) = store
        .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
        .unwrap();
    let mut v4 = BTreeSet::new();
    let mut v6 = BTreeSet::new();
    for n in 0..125 {
        let m = store
            .join(text.expose(), &key(n), &format!("node{n}"), at(2))
            .unwrap()
            .member;
        assert!(v4.insert(m.ipv4), "{} given twice", m.ipv4);
        assert!(v6.insert(m.ipv6.unwrap()));
    }
    let want: BTreeSet<Ipv4Addr> = (2..=126).map(|h| Ipv4Addr::new(10, 9, 0, h)).collect();
    assert_eq!(v4, want);
    let before = dump(&dir);
    match store.join(text.expose(), &key(999), "one too many", at(3)) {
        Err(StoreError::Alloc(e)) => assert!(e.to_string().contains("10.9.0.0/25"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(dump(&dir), before);

    // Removing a member frees its address for the next join; deauthorizing does not.
    store.set_authorized("lab", &key(10), false).unwrap();
    assert!(matches!(
        store.join(text.expose(), &key(999), "x", at(3)),
        Err(StoreError::Alloc(_))
    ));
    let gone = store.remove_member("lab", &key(20), at(50)).unwrap();
    let next = store.join(text.expose(), &key(999), "x", at(4)).unwrap();
    assert_eq!(next.member.ipv4, gone.ipv4);
    assert_eq!(store.members("lab").unwrap().len(), 125);
}

#[test]
fn state_and_addresses_survive_a_reopen() {
    let dir = TestDir::new("reopen");
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let (members, tokens, networks) = {
        let mut store = store_with_lab(&dir);
        let mut other = lab("10.1.0.0/16");
        other.name = "other".into();
        other.ipv6 = None;
        store.create_network(&other, at(0)).unwrap();
        let (_, text) = store
            .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
            .unwrap();
        for n in 0..5 {
            store.join(text.expose(), &key(n), "m", at(2)).unwrap();
        }
        store.remove_member("lab", &key(1), at(50)).unwrap();
        store.set_authorized("lab", &key(3), false).unwrap();
        let endpoint: SocketAddr = "198.51.100.7:51820".parse().unwrap();
        let seen = [Sighting {
            public_key: key(4),
            at: at(50),
            endpoint: Some(endpoint),
        }];
        assert_eq!(store.record_seen("lab", &seen).unwrap(), 1);
        (
            store.members("lab").unwrap(),
            store.tokens("lab").unwrap(),
            store.networks().unwrap(),
        )
    };
    let store = Store::open(&dir.0).unwrap();
    assert_eq!(store.members("lab").unwrap(), members);
    assert_eq!(store.tokens("lab").unwrap(), tokens);
    assert_eq!(store.networks().unwrap(), networks);
    let names: Vec<_> = networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["lab", "other"]);
    let m4 = store.member("lab", &key(4)).unwrap();
    assert_eq!(m4.last_seen, Some(at(50)));
    assert_eq!(m4.last_endpoint, Some("198.51.100.7:51820".parse().unwrap()));
    assert!(!store.member("lab", &key(3)).unwrap().authorized);
    let hosts: Vec<u8> = members.iter().map(|m| m.ipv4.octets()[3]).collect();
    // key(1) had .3 and was removed.
    assert_eq!(hosts, [2, 4, 5, 6]);
}

#[test]
fn record_seen_never_moves_last_seen_back_and_keeps_the_endpoint_when_none_is_given() {
    let dir = TestDir::new("seen");
    let mut store = store_with_lab(&dir);
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let (_, text) = store
        .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
        .unwrap();
    store.join(text.expose(), &key(1), "m", at(2)).unwrap();
    let endpoint: SocketAddr = "[2001:db8::1]:51820".parse().unwrap();
    let seen = |t, endpoint| Sighting {
        public_key: key(1),
        at: at(t),
        endpoint,
    };
    store
        .record_seen("lab", &[seen(10, Some(endpoint)), seen(5, None)])
        .unwrap();
    let m = store.member("lab", &key(1)).unwrap();
    assert_eq!(m.last_seen, Some(at(10)));
    assert_eq!(m.last_endpoint, Some(endpoint));
    // A key that is not a member is skipped, not an error.
    let stranger = Sighting {
        public_key: key(77),
        at: at(11),
        endpoint: None,
    };
    assert_eq!(store.record_seen("lab", &[stranger]).unwrap(), 0);
}

#[test]
fn network_operations_refuse_what_cannot_work() {
    let dir = TestDir::new("networks");
    let mut store = store_with_lab(&dir);
    assert!(matches!(
        store.create_network(&lab("10.0.0.0/24"), at(1)),
        Err(StoreError::NetworkExists(_))
    ));
    let mut tiny = lab("10.0.0.1/32");
    tiny.name = "tiny".into();
    assert!(matches!(
        store.create_network(&tiny, at(1)),
        Err(StoreError::Alloc(_))
    ));
    let mut small_mtu = lab("10.0.0.0/24");
    small_mtu.name = "small".into();
    small_mtu.mtu = 1200;
    assert!(matches!(
        store.create_network(&small_mtu, at(1)),
        Err(StoreError::Invalid(_))
    ));
    // WireGuard's usual 1420 does not fit a relayed path: refused, saying what fits.
    let mut large_mtu = lab("10.0.1.0/24");
    large_mtu.name = "large".into();
    large_mtu.mtu = 1420;
    match store.create_network(&large_mtu, at(1)) {
        Err(StoreError::Invalid(message)) => assert!(message.contains("1376"), "{message}"),
        other => panic!("an MTU of 1420 must be refused: {other:?}"),
    }
    large_mtu.mtu = meshd_controller::store::MAX_MTU;
    // Its own v6 block: lab()'s would overlap the first network's.
    large_mtu.ipv6 = Some("fd44:31::/64".parse().unwrap());
    let created = store.create_network(&large_mtu, at(1));
    assert!(created.is_ok(), "the largest MTU is accepted: {created:?}");
    assert!(matches!(store.network("nope"), Err(StoreError::NoSuchNetwork(_))));
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    assert!(matches!(
        store.create_token("nope", &controller(), TokenPolicy::single_use(), at(1), &mut rng),
        Err(StoreError::NoSuchNetwork(_))
    ));
    assert!(matches!(
        store.create_token(
            "lab",
            &controller(),
            TokenPolicy::single_use().expiring(at(1)),
            at(1),
            &mut rng
        ),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.set_authorized("lab", &key(1), true),
        Err(StoreError::NoSuchMember { .. })
    ));
    assert!(matches!(
        store.remove_member("nope", &key(1), at(50)),
        Err(StoreError::NoSuchNetwork(_))
    ));
    let lab = store.network("lab").unwrap();
    assert_eq!(lab.plan.controller_v4(), Some(Ipv4Addr::new(44, 30, 127, 1)));
    assert_eq!(lab.mtu, 1376);
}

#[test]
fn the_controller_node_gets_the_reserved_addresses() {
    let dir = TestDir::new("controller-member");
    let mut store = store_with_lab(&dir);
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let (_, text) = store
        .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
        .unwrap();
    // A node that joins first still does not get the controller's address.
    let node = store.join(text.expose(), &key(1), "node", at(2)).unwrap();
    assert_eq!(node.member.ipv4, Ipv4Addr::new(44, 30, 127, 2));
    let me = store
        .add_controller_member("lab", &controller(), "border", at(3))
        .unwrap();
    assert_eq!(me.ipv4, Ipv4Addr::new(44, 30, 127, 1));
    assert_eq!(me.ipv6, Some("fd44:30::1".parse().unwrap()));
    assert!(me.authorized);
    let before = dump(&dir);
    assert_eq!(
        store
            .add_controller_member("lab", &controller(), "border", at(4))
            .unwrap(),
        me
    );
    // Another key cannot take the controller's address while it is held.
    assert!(matches!(
        store.add_controller_member("lab", &key(2), "impostor", at(4)),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(dump(&dir), before);
    // A network that reserves nothing refuses.
    let mut plain = lab("10.2.0.0/24");
    plain.name = "plain".into();
    plain.ipv6 = None;
    plain.reserve_controller = false;
    store.create_network(&plain, at(5)).unwrap();
    assert!(matches!(
        store.add_controller_member("plain", &controller(), "border", at(6)),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn ingress_is_off_for_a_new_member_and_survives_a_reopen_once_set() {
    let dir = TestDir::new("ingress");
    let mut store = store_with_lab(&dir);
    let me = store
        .add_controller_member("lab", &controller(), "border", at(1))
        .unwrap();
    assert!(!me.ingress);
    let set = store.set_ingress("lab", &controller(), true).unwrap();
    assert!(set.ingress);
    assert_eq!(set.ipv4, me.ipv4);
    drop(store);
    let mut store = Store::open(&dir.0).unwrap();
    assert!(store.member("lab", &controller()).unwrap().ingress);
    let before = dump(&dir);
    assert!(matches!(
        store.set_ingress("lab", &key(7), true),
        Err(StoreError::NoSuchMember { .. })
    ));
    assert!(matches!(
        store.set_ingress("nope", &controller(), true),
        Err(StoreError::NoSuchNetwork(_))
    ));
    assert_eq!(dump(&dir), before);
    assert!(!store.set_ingress("lab", &controller(), false).unwrap().ingress);
}

const CRASH_DIR_ENV: &str = "MESHD_CONTROLLER_STORE_CRASH_DIR";

/// The child half of [`an_acknowledged_join_survives_kill_9`]: joins members one after another and
/// prints each one after `join` returned, until it is killed.
#[test]
#[ignore = "a helper: an_acknowledged_join_survives_kill_9 runs it in a child process"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let mut store = Store::open(Path::new(&dir)).unwrap();
    store.create_network(&lab("10.0.0.0/16"), at(0)).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let (_, text) = store
        .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
        .unwrap();
    let mut out = std::io::stdout().lock();
    // Bounded so that a parent that never kills us does not leave us running forever.
    for n in 0..60_000 {
        let m = store.join(text.expose(), &key(n), "m", at(2)).unwrap().member;
        writeln!(out, "ACK {n} {}", m.ipv4).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn an_acknowledged_join_survives_kill_9() {
    let dir = TestDir::new("crash");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, &dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Kill while the child is writing flat out: right after the 40th acknowledgement it is already
    // in the middle of the next join.
    while acked.len() < 40 {
        let line = lines
            .next()
            .expect("the child stopped before acknowledging 40 joins")
            .unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (n, addr) = rest.split_once(' ').unwrap();
            acked.push((n.parse::<u32>().unwrap(), addr.parse::<Ipv4Addr>().unwrap()));
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child ended on its own: {status:?}");

    let store = Store::open(&dir.0).unwrap();
    for (n, addr) in acked {
        let m = store.member("lab", &key(n)).unwrap();
        assert_eq!(m.ipv4, addr, "member {n}");
    }
}

fn invalid(result: Result<impl std::fmt::Debug, StoreError>) -> String {
    match result {
        Err(StoreError::Invalid(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn spec(name: &str, v4: &str, v6: Option<&str>) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        ipv4: v4.parse().unwrap(),
        ipv6: v6.map(|p| p.parse().unwrap()),
        mtu: 1376,
        reserve_controller: true,
    }
}

#[test]
fn overlapping_and_special_purpose_blocks_are_refused_by_name() {
    let dir = TestDir::new("blocks");
    let mut store = store_with_lab(&dir);
    let before = dump(&dir);
    // Overlaps with lab's 44.30.127.0/24 and fd44:30::/64, inside, around or equal, name lab.
    for (v4, v6) in [
        ("44.30.127.128/25", None),
        ("44.30.0.0/16", None),
        ("44.30.127.0/24", None),
        ("10.5.0.0/24", Some("fd44:30::/48")),
        ("10.5.0.0/24", Some("fd44:30:0:0:1::/80")),
    ] {
        let why = invalid(store.create_network(&spec("second", v4, v6), at(1)));
        assert!(
            why.contains("overlaps") && why.contains("\"lab\""),
            "{v4} {v6:?}: {why}"
        );
    }
    // Special-purpose ranges, named in the error.
    for (v4, v6, named) in [
        ("0.0.0.0/0", None, "0.0.0.0/8"),
        ("127.0.0.0/8", None, "loopback"),
        ("224.0.0.0/4", None, "multicast"),
        ("169.254.0.0/16", None, "link-local"),
        ("240.0.0.0/4", None, "reserved"),
        ("255.255.255.255/32", None, "broadcast"),
        ("10.6.0.0/24", Some("::/0"), "unspecified"),
        ("10.6.0.0/24", Some("ff00::/8"), "multicast"),
        ("10.6.0.0/24", Some("fe80::/64"), "link-local"),
        ("10.6.0.0/24", Some("::ffff:0:0/96"), "IPv4-mapped"),
    ] {
        let why = invalid(store.create_network(&spec("second", v4, v6), at(1)));
        assert!(why.contains(named), "{v4} {v6:?}: {why}");
    }
    assert_eq!(dump(&dir), before, "a refused network changed the database");
    // What private meshes and labs use is fine, side by side.
    for (i, (v4, v6)) in [
        ("10.0.0.0/8", Some("fd00:1::/64")),
        ("100.64.0.0/10", None),
        ("192.168.7.0/24", Some("2001:db8::/48")),
        ("198.51.100.0/24", None),
        ("203.0.113.0/24", Some("2001:db8:1::/64")),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .create_network(&spec(&format!("ok{i}"), v4, v6), at(2))
            .unwrap();
    }
}

#[test]
fn a_network_with_members_is_deleted_only_by_force_and_its_members_are_recorded_removed() {
    let dir = TestDir::new("delete");
    let mut store = store_with_lab(&dir);
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let (_, text) = store
        .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
        .unwrap();
    store
        .add_controller_member("lab", &controller(), "border", at(1))
        .unwrap();
    store.join(text.expose(), &key(1), "a", at(2)).unwrap();
    store.join(text.expose(), &key(2), "b", at(2)).unwrap();
    let before = dump(&dir);
    match store.delete_network("lab", false, &controller(), at(3)) {
        Err(e @ StoreError::NetworkHasMembers { members: 2, .. }) => {
            assert!(e.to_string().contains("--force"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dump(&dir), before);
    let id = store.network("lab").unwrap().id;
    assert_eq!(
        store.delete_network("lab", true, &controller(), at(3)).unwrap(),
        2
    );
    assert!(matches!(store.network("lab"), Err(StoreError::NoSuchNetwork(_))));
    assert!(store.network_names().unwrap().is_empty());
    let removed: BTreeSet<_> = store
        .removals()
        .unwrap()
        .into_iter()
        .map(|r| (r.network, r.network_id, r.public_key))
        .collect();
    assert_eq!(
        removed,
        BTreeSet::from([("lab".into(), id, key(1)), ("lab".into(), id, key(2))])
    );
    // Its tokens went with it, and the block is free for a new network with a new id.
    assert!(matches!(
        store.join(text.expose(), &key(3), "c", at(4)),
        Err(StoreError::Token(TokenError::Unknown))
    ));
    let again = store.create_network(&lab("44.30.127.0/24"), at(5)).unwrap();
    assert_ne!(again.id, id);
    // An empty network (but for the controller) needs no force.
    store
        .add_controller_member("lab", &controller(), "border", at(5))
        .unwrap();
    assert_eq!(
        store.delete_network("lab", false, &controller(), at(6)).unwrap(),
        0
    );
    assert!(matches!(
        store.delete_network("lab", false, &controller(), at(6)),
        Err(StoreError::NoSuchNetwork(_))
    ));
}

#[test]
fn a_removal_is_recorded_until_the_key_joins_again() {
    let dir = TestDir::new("removals");
    let mut store = store_with_lab(&dir);
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let (_, text) = store
        .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
        .unwrap();
    store.join(text.expose(), &key(1), "a", at(2)).unwrap();
    assert!(store.removals().unwrap().is_empty());
    store.remove_member("lab", &key(1), at(3)).unwrap();
    let removals = store.removals().unwrap();
    assert_eq!(removals.len(), 1);
    assert_eq!(removals[0].public_key, key(1));
    assert_eq!(removals[0].network_id, store.network("lab").unwrap().id);
    assert_eq!(removals[0].at, at(3));
    let joined = store.join(text.expose(), &key(1), "a", at(4)).unwrap();
    assert!(joined.new);
    assert!(store.removals().unwrap().is_empty());
}

#[test]
fn members_get_unique_dns_names_and_keep_what_they_asked_for_as_a_label() {
    let dir = TestDir::new("names");
    let mut store = store_with_lab(&dir);
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let (_, text) = store
        .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
        .unwrap();
    let asked = [
        "laptop",
        "laptop",
        "Laptop",
        "evil\u{202E}gpj.exe",
        "zero\u{200B}width",
        "",
        "tab\there",
        "Küche",
    ];
    let mut got = Vec::new();
    for (i, name) in asked.iter().enumerate() {
        let m = store
            .join(text.expose(), &key(i as u32 + 1), name, at(2))
            .unwrap()
            .member;
        got.push((m.name, m.label));
    }
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "laptop",
            "laptop-2",
            "laptop-3",
            "evil-gpj-exe",
            "zero-width",
            "node",
            "tab-here",
            "k-che"
        ]
    );
    let labels: Vec<&str> = got.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        labels,
        [
            "laptop",
            "laptop",
            "Laptop",
            "evilgpj.exe",
            "zerowidth",
            "",
            "tabhere",
            "Küche"
        ]
    );
    // The controller's own node is named the same way.
    let own = store
        .add_controller_member("lab", &controller(), "Laptop", at(3))
        .unwrap();
    assert_eq!(own.name, "laptop-4");
    // They read back after a reopen.
    drop(store);
    let store = Store::open(&dir.0).unwrap();
    let mut all: Vec<String> = store
        .members("lab")
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), asked.len() + 1);
}

#[test]
fn an_older_database_gets_unique_names_and_network_ids_on_upgrade() {
    let dir = TestDir::new("upgrade");
    std::fs::create_dir_all(&dir.0).unwrap();
    {
        // A database as meshd with the first two schema versions left it, duplicate names included.
        let conn = rusqlite::Connection::open(dir.0.join(DB_FILE)).unwrap();
        for step in &MIGRATIONS[..2] {
            let Migration::Sql(sql) = step else {
                panic!("the first steps are SQL")
            };
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 2;
             INSERT INTO networks VALUES (1, 'lab', '10.7.0.0/24', NULL, 1420, 1, 0);
             INSERT INTO networks VALUES (2, 'two', '10.8.0.0/24', NULL, 1420, 1, 0);",
        )
        .unwrap();
        for (i, (net, name)) in [
            (1, "laptop"),
            (1, "laptop"),
            (1, "Bad\u{202E}Name"),
            (2, "laptop"),
        ]
        .into_iter()
        .enumerate()
        {
            conn.execute(
                "INSERT INTO members (network_id, public_key, name, authorized, ipv4, created)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5)",
                rusqlite::params![
                    net,
                    &key(i as u32).as_bytes()[..],
                    name,
                    format!("10.{}.0.{}", 6 + net, i + 2),
                    i as i64
                ],
            )
            .unwrap();
        }
    }
    let store = Store::open(&dir.0).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as u32);
    let lab: Vec<(String, String)> = store
        .members("lab")
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.label))
        .collect();
    assert_eq!(
        lab,
        [
            ("laptop".to_string(), "laptop".to_string()),
            ("laptop-2".to_string(), "laptop".to_string()),
            ("bad-name".to_string(), "BadName".to_string()),
        ]
    );
    // Names are unique per network, not across networks.
    assert_eq!(store.members("two").unwrap()[0].name, "laptop");
    let (a, b) = (store.network("lab").unwrap().id, store.network("two").unwrap().id);
    assert_ne!(a, b);
}

/// A database with some members, closed (checkpointed) so that it is all in the one file.
fn populated(dir: &TestDir) -> u64 {
    let mut store = store_with_lab(dir);
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let (_, text) = store
        .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
        .unwrap();
    for i in 0..200 {
        store
            .join(text.expose(), &key(i + 1), &format!("member-{i}"), at(2))
            .unwrap();
    }
    drop(store);
    std::fs::metadata(dir.0.join(DB_FILE)).unwrap().len()
}

fn damaged(dir: &TestDir) -> String {
    match Store::open(&dir.0) {
        Err(e @ StoreError::Damaged { .. }) => e.to_string(),
        other => panic!("expected the database to be refused, got {other:?}"),
    }
}

#[test]
fn a_damaged_database_is_refused_and_left_as_it_is() {
    let dir = TestDir::new("damaged");
    let len = populated(&dir);
    assert!(len > 16 * 4096, "{len} bytes");
    let path = dir.0.join(DB_FILE);
    let original = std::fs::read(&path).unwrap();

    // Truncated to nothing, as a full disk or a bad copy leaves it.
    std::fs::write(&path, b"").unwrap();
    let why = damaged(&dir);
    assert!(why.contains("is empty") && why.contains("backup"), "{why}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "the file was written");

    // Cut in the middle of its pages.
    std::fs::write(&path, &original[..original.len() / 2]).unwrap();
    let why = damaged(&dir);
    assert!(
        why.contains("integrity") || why.contains("cannot be read"),
        "{why}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), original.len() as u64 / 2);

    // Cut inside its first page, and something else altogether.
    std::fs::write(&path, &original[..100]).unwrap();
    damaged(&dir);
    std::fs::write(&path, b"not a database at all, but long enough to have a header").unwrap();
    let why = damaged(&dir);
    assert!(why.contains("not an SQLite database"), "{why}");

    // A valid SQLite file without the schema.
    std::fs::remove_file(&path).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE unrelated (x INTEGER);")
        .unwrap();
    let why = damaged(&dir);
    assert!(why.contains("no schema"), "{why}");

    // The log without the database it belongs to.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(dir.0.join(format!("{DB_FILE}-wal")), b"x").unwrap();
    let why = damaged(&dir);
    assert!(why.contains("-wal"), "{why}");
    assert!(!path.exists(), "a database was made in its place");

    // Put back, it opens with everything.
    std::fs::remove_file(dir.0.join(format!("{DB_FILE}-wal"))).unwrap();
    std::fs::write(&path, &original).unwrap();
    assert_eq!(Store::open(&dir.0).unwrap().members("lab").unwrap().len(), 200);
}

#[test]
fn a_backup_taken_while_the_store_is_open_restores_everything() {
    let dir = TestDir::new("backup");
    let mut store = store_with_lab(&dir);
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let (_, text) = store
        .create_token("lab", &controller(), TokenPolicy::unlimited(), at(1), &mut rng)
        .unwrap();
    for i in 0..20 {
        store.join(text.expose(), &key(i + 1), "m", at(2)).unwrap();
    }
    let copy = dir.0.join("copy.db");
    // While the store is open and has written (its last commits only in the write-ahead log).
    let info = meshd_controller::store::backup(&dir.0, &copy).unwrap();
    assert_eq!((info.networks, info.members), (1, 20));
    assert_eq!(info.schema_version, MIGRATIONS.len() as u32);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!dir.0.join("copy.db-wal").exists());
    // Never over an existing file.
    let e = meshd_controller::store::backup(&dir.0, &copy).unwrap_err();
    assert!(e.to_string().contains("never overwrites"), "{e}");
    // Restored into a fresh state directory, it is the same controller state.
    let restored = TestDir::new("backup-restored");
    std::fs::create_dir_all(&restored.0).unwrap();
    std::fs::copy(&copy, restored.0.join(DB_FILE)).unwrap();
    let back = Store::open(&restored.0).unwrap();
    assert_eq!(back.members("lab").unwrap(), store.members("lab").unwrap());
    assert_eq!(back.network("lab").unwrap(), store.network("lab").unwrap());
    // No database, no backup.
    let empty = TestDir::new("backup-none");
    std::fs::create_dir_all(&empty.0).unwrap();
    assert!(meshd_controller::store::backup(&empty.0, &empty.0.join("x.db")).is_err());
    assert!(!empty.0.join("x.db").exists());
}
