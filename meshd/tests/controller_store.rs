//! The controller's store against its contract: refusals change nothing, rejoins are idempotent,
//! addresses are unique and survive a reopen, and an acknowledged write survives `kill -9`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshd::controller::store::{DB_FILE, NetworkSpec, Sighting, Store, StoreError};
use meshd::controller::token::{TokenError, TokenPolicy};
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
    let parsed = meshd::controller::JoinToken::parse(text.expose()).unwrap();
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
    assert!(matches!(
        store.join(expiring.expose(), &key(9), "bad\nname", at(3)),
        Err(StoreError::Invalid(_))
    ));
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
    let gone = store.remove_member("lab", &key(20)).unwrap();
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
        store.remove_member("lab", &key(1)).unwrap();
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
    large_mtu.mtu = meshd::controller::store::MAX_MTU;
    assert!(
        store.create_network(&large_mtu, at(1)).is_ok(),
        "the largest MTU is accepted"
    );
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
        store.remove_member("nope", &key(1)),
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
