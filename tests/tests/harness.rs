//! The harness's own promises: isolation, cleanup, NAT, and failures that cannot pass silently.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use meshd_tests::isolation::run_isolated;
use meshd_tests::{End, Nat, NatRouter, e2e, veth, wait_until};
use nix::sys::signal::kill;

/// Set by `a_failing_body_fails_its_test` for the fixture below.
const FIXTURE_FAIL: &str = "MESHD_E2E_FIXTURE_FAIL";

#[test]
fn namespaces_are_private_to_the_test_and_removed_on_drop() {
    e2e(|lab| {
        let ns = lab.netns("solo");
        let path = Path::new("/run/netns").join(ns.name());
        assert!(path.exists(), "{} missing", path.display());
        assert!(ns.name().starts_with(lab.prefix()));
        // The names live on a tmpfs of this run's own, which the host never sees.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for dir in ["/run/netns", "/run/wireguard"] {
            let private = mounts.lines().any(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                fields.get(4) == Some(&dir) && line.contains(" - tmpfs meshd-e2e ")
            });
            assert!(private, "{dir} is not this run's private tmpfs:\n{mounts}");
        }
        // And this test is alone in its PID namespace (the last line of cleanup).
        assert_eq!(std::process::id(), 1);

        let daemon = ns.spawn("sleeper", &["sleep", "600"], &[]);
        let pid = daemon.pid();
        let straggler = ns.spawn("straggler", &["sleep", "600"], &[]);
        let straggler_pid = straggler.pid();
        // Leak one guard: deleting the namespace must still end the process inside it.
        std::mem::forget(straggler);
        drop(daemon);
        assert!(kill(pid, None).is_err(), "the daemon outlived its guard");
        drop(ns);
        assert!(!path.exists(), "{} outlived its guard", path.display());
        // A leaked process is killed but not reaped by us (we forgot its Child): a zombie at most.
        wait_until("the leaked process to be killed", Duration::from_secs(5), || {
            let stat = std::fs::read_to_string(format!("/proc/{straggler_pid}/stat")).unwrap_or_default();
            stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z")
        });
    });
}

#[test]
fn nat_router_masquerades_the_inside_host() {
    e2e(|lab| {
        let inside = lab.netns("lan");
        let outside = lab.netns("wan");
        let nat = NatRouter::new(
            lab,
            "nat",
            &inside,
            &outside,
            "203.0.113.1",
            "203.0.113.2",
            Nat::PortPreserving,
        );
        let server: SocketAddr = "203.0.113.2:7000".parse().unwrap();
        let listener = outside.enter(|| TcpListener::bind(server)).unwrap();
        let _client = inside
            .enter(|| TcpStream::connect_timeout(&server, Duration::from_secs(5)))
            .unwrap();
        let (_, seen_from) = listener.accept().unwrap();
        // Without the NAT the outside has no route back to 192.0.2.0/24 and the connect would fail.
        assert_eq!(seen_from.ip(), nat.public_addr);
    });
}

#[test]
fn veth_joins_two_namespaces_over_both_families() {
    e2e(|lab| {
        let a = lab.netns("a");
        let b = lab.netns("b");
        veth(
            End {
                ns: &a,
                dev: "x",
                addrs: &["100.64.0.1/30", "2001:db8:2::1/64"],
            },
            End {
                ns: &b,
                dev: "y",
                addrs: &["100.64.0.2/30", "2001:db8:2::2/64"],
            },
        );
        a.ping_ok("100.64.0.2".parse().unwrap(), 2, Duration::from_secs(5));
        b.ping_ok("2001:db8:2::1".parse().unwrap(), 2, Duration::from_secs(5));
        let report = meshd_tests::tcp_transfer(
            &a,
            &b,
            "2001:db8:2::2".parse().unwrap(),
            9000,
            8 << 20,
            Duration::from_secs(30),
        )
        .unwrap();
        report.assert_intact();
        assert_eq!(report.received_bytes, 8 << 20);
    });
}

/// Fails only when asked to, inside an isolated run started by the test below.
#[test]
fn fixture_fails_on_request() {
    e2e(|_lab| {
        assert!(std::env::var_os(FIXTURE_FAIL).is_none(), "failing on request");
    });
}

#[test]
fn a_failing_body_fails_its_test() {
    meshd_tests::isolation::check_prerequisites();
    let err = run_isolated("fixture_fails_on_request", &[(FIXTURE_FAIL, "1")]).unwrap_err();
    assert!(err.contains("failing on request"), "{err}");
    // A failed test keeps its files for inspection and says where; this failure was wanted.
    let kept = err
        .lines()
        .find_map(|line| {
            line.split_once("its files are kept in ")
                .map(|(_, dir)| dir.trim())
        })
        .unwrap_or_else(|| panic!("the failure does not say where its files are: {err}"));
    assert!(Path::new(kept).is_dir(), "{kept} is not a directory");
    std::fs::remove_dir_all(kept).unwrap();
    assert!(run_isolated("fixture_fails_on_request", &[]).is_ok());
}

#[test]
fn an_isolated_run_that_ran_no_test_fails() {
    meshd_tests::isolation::check_prerequisites();
    let err = run_isolated("no_such_test", &[]).unwrap_err();
    assert!(err.contains("did not run exactly one passing test"), "{err}");
}
