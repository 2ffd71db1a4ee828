//! The data path outlives a process out of file descriptors: the tunnel keeps passing traffic and
//! the interface stays, whatever else fails for want of a descriptor.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use meshd_tests::wg::socket_path;
use meshd_tests::{Family, Initiator, PairConfig, Side, TunnelPair, WgImpl, e2e, wait_until};

/// Idle clients opened against the daemon's configuration socket: more than it has descriptors left.
const CLIENTS: usize = 64;
/// Descriptors the daemon may open beyond those it holds when the limit is lowered.
const SPARE: usize = 6;

/// 1. meshd-wg's open-files limit is lowered (prlimit) to a few more than it holds, and idle clients
///    of its configuration socket take the rest, so every new descriptor fails with EMFILE. For
///    several seconds of that (the TX thread looks at the MTU every second), pings and 16 MiB of TCP
///    still cross the tunnel both ways, the daemon runs on and its interface stays; once the clients
///    leave, `wg show` is served again.
#[test]
fn meshd_wg_keeps_forwarding_with_every_descriptor_taken() {
    e2e(|lab| {
        meshd_tests::tools::require("prlimit", "util-linux");
        let meshd = WgImpl::meshd_wg();
        let config = PairConfig {
            underlay: Family::V4,
            initiator: Initiator::Both,
        };
        let mut pair = TunnelPair::up(lab, &meshd, &meshd, config);
        pair.ping_both_ways();
        let pid = pair.a.daemon().pid().as_raw();
        let ifname = pair.a.ifname().to_owned();
        let open = open_fds(pid);
        let limit = (open + SPARE).to_string();
        pair.a.netns().run(&[
            "prlimit",
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ]);

        let socket = socket_path(&ifname);
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            match UnixStream::connect(&socket) {
                Ok(c) => clients.push(c),
                Err(_) => break,
            }
        }
        // The daemon accepts until it has no descriptor left.
        let mut now_open = 0;
        wait_until(
            &format!("meshd-wg (pid {pid}) to hold all {limit} descriptors it may"),
            Duration::from_secs(5),
            || {
                now_open = open_fds(pid);
                now_open + 1 >= open + SPARE
            },
        );
        println!(
            "meshd-wg held {open} descriptors, may hold {limit}, holds {now_open}; {} idle clients",
            clients.len()
        );
        // Longer than the TX thread's MTU check interval, several times over.
        std::thread::sleep(Duration::from_millis(3500));
        assert!(
            pair.a.daemon().exited().is_none(),
            "meshd-wg exited when out of descriptors:\n{}",
            pair.a.daemon().log_tail(20)
        );
        assert!(
            pair.a.netns().has_link(&ifname),
            "the interface {ifname} went away when the daemon ran out of descriptors:\n{}",
            pair.a.daemon().log_tail(20)
        );
        assert!(
            open_fds(pid) + 1 >= open + SPARE,
            "descriptors were freed during the test"
        );
        pair.ping_both_ways();
        pair.transfer(Side::A, Family::V4, 16 << 20, Duration::from_secs(60));
        pair.transfer(Side::B, Family::V4, 16 << 20, Duration::from_secs(60));
        assert!(pair.a.netns().has_link(&ifname));

        drop(clients);
        wait_until("`wg show` to be served again", Duration::from_secs(10), || {
            pair.a
                .netns()
                .try_run(&["wg", "show", &ifname], Duration::from_secs(2))
                .is_ok()
        });
        pair.shutdown_checked();
    });
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("cannot list the descriptors of pid {pid}: {e}"))
}
