//! The ingress end to end: `meshd lab up` builds an Internet host, an ISP and a border running
//! BIRD, meshd on the border (controller and ingress) and on two nodes, one behind NAT; these tests
//! prove what the announcement does when meshd, its peers, the upstream session or BIRD come and go.
//! Each test builds a lab of its own (about 6 s) in its own mount and PID namespaces.
//!
//! The measured times are printed (run with `--nocapture` to see them); only the acceptance bounds
//! are asserted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use meshd_tests::e2e;
use meshd_tests::ingress::{
    BLOCK, BORDER_NS, HOLD_DOWN, IngressLab, NETWORK, NODE1_NS, POLL, Router, Stopwatch,
};
use nix::sys::signal::Signal;

/// How soon the ISP must lose the block once the border's meshd is gone.
const WITHDRAWN_AFTER_STOP: Duration = Duration::from_secs(2);
/// How soon the border withdraws, and the ISP loses, the block once the border has no live peer.
const WITHDRAWN_WHEN_UNHEALTHY: Duration = Duration::from_secs(5);
/// How soon the border withdraws the block once its upstream session is down.
const WITHDRAWN_WITHOUT_UPSTREAM: Duration = Duration::from_secs(10);
/// How soon the ISP has the block again after the border's BIRD restarted.
const BACK_AFTER_BIRD_RESTART: Duration = Duration::from_secs(15);
/// How long a return may take at most (BGP, peers and the hold-down included).
const RETURNS_WITHIN: Duration = Duration::from_secs(30);

/// Waits for the block to be back in table 201 and then at the ISP after `cause`, and checks that it
/// did not come back before the hold-down. Returns how long table 201 took.
fn returns_after_the_hold_down(lab: &IngressLab, cause: &str) -> Duration {
    let back = lab.wait(
        &format!("table 201 to hold the block again once {cause}"),
        RETURNS_WITHIN,
        || lab.announced(),
    );
    lab.wait(
        "the ISP to learn the block again",
        Duration::from_secs(10),
        || lab.isp_has_block(),
    );
    assert!(
        back >= HOLD_DOWN,
        "announced {back:?} after {cause}, before the hold-down"
    );
    back
}

/// 1. `meshd lab check` passes: both sessions Established, the ISP routes the block to the border,
///    the border exports only the block, the ingress is healthy and announced, the Internet host and
///    the nodes reach each other from and to the nodes' public addresses (no NAT, not through the
///    underlay), and the border and the nodes ping each other.
/// 5. Restarting meshd on the border and on node1 twice each leaves exactly one copy of every rule
///    and route meshd owns; a clean stop of node1 removes its rule and route.
#[test]
fn ingress_lab_checks_pass_and_restarts_leave_one_copy_of_each_rule() {
    e2e(|lab| {
        let lab = IngressLab::up(lab);
        let watch = Stopwatch::start();
        let check = lab.lab(&["check"]);
        println!("{}", check.stdout.trim_end());
        println!(
            "measured: `meshd lab check` took {:.1} s",
            watch.elapsed().as_secs_f64()
        );
        assert!(
            check.success(),
            "`meshd lab check` failed:\n{check}\n{}",
            lab.diagnostics()
        );

        let border_rule = format!("from {BLOCK} iif mesh0 lookup 123");
        for round in 1..=2 {
            for host in ["border", "node1"] {
                lab.signal_meshd(host, Signal::SIGTERM);
                lab.lab_ok(&["start", host]);
            }
            // Each comes back with its rules (the border's at once, node1's with its first map).
            lab.wait(
                &format!("the border's egress rule after restart {round}"),
                Duration::from_secs(10),
                || !lab.rules_with(BORDER_NS, &border_rule).is_empty(),
            );
            lab.wait(
                &format!("node1's source rule after restart {round}"),
                Duration::from_secs(15),
                || !lab.rules_with(NODE1_NS, "lookup 200").is_empty(),
            );
        }
        let took = lab.wait(
            "the border to announce again after its restarts",
            RETURNS_WITHIN,
            || lab.announced() && lab.isp_has_block(),
        );
        println!(
            "measured: after the second restarts, announced again {:.1} s later",
            took.as_secs_f64()
        );
        let exactly_one = |what: &str, lines: Vec<String>| {
            assert_eq!(
                lines.len(),
                1,
                "{what}: expected exactly one, found {lines:?}\n{}",
                lab.diagnostics()
            );
        };
        exactly_one(
            &format!("border: rule `{border_rule}`"),
            lab.rules_with(BORDER_NS, &border_rule),
        );
        exactly_one("border: table 123", lab.table(BORDER_NS, 123));
        let egress = lab.table(BORDER_NS, 123);
        assert!(
            egress[0].starts_with("default via 192.0.2.1"),
            "border: table 123 must hold the default route via the ISP: {egress:?}"
        );
        exactly_one("border: table 201", lab.table(BORDER_NS, 201));
        exactly_one("node1: rule `lookup 200`", lab.rules_with(NODE1_NS, "lookup 200"));
        exactly_one("node1: table 200", lab.table(NODE1_NS, 200));
        let node_route = lab.table(NODE1_NS, 200);
        assert!(
            node_route[0].starts_with("default dev mesh1"),
            "node1: table 200 must hold `default dev mesh1`: {node_route:?}"
        );

        // A clean stop takes node1's rule and route with it.
        lab.signal_meshd("node1", Signal::SIGTERM);
        assert_eq!(
            lab.rules_with(NODE1_NS, "lookup 200"),
            Vec::<String>::new(),
            "node1's rule outlived its meshd's clean stop"
        );
        assert_eq!(
            lab.table(NODE1_NS, 200),
            Vec::<String>::new(),
            "node1's table 200 outlived its meshd's clean stop"
        );
        lab.down();
    });
}

/// 2. When the border's meshd stops (SIGTERM, then SIGKILL, as a crash), the ISP loses the block
///    within 2 s; after `meshd lab start border` it returns, but not before the hold-down.
#[test]
fn ingress_withdraws_when_meshd_stops_and_returns_after_the_hold_down() {
    e2e(|lab| {
        let lab = IngressLab::up(lab);
        for signal in [Signal::SIGTERM, Signal::SIGKILL] {
            assert!(
                lab.isp_has_block(),
                "the ISP must have {BLOCK} before the {signal}"
            );
            let pid = lab.meshd_pid("border");
            let watch = lab.signal_meshd("border", signal);
            lab.wait(
                &format!("the ISP to lose {BLOCK} after {signal} of the border's meshd (pid {pid})"),
                WITHDRAWN_AFTER_STOP + Duration::from_secs(3),
                || !lab.isp_has_block(),
            );
            let withdrawn = watch.elapsed();
            println!(
                "measured: {signal} of the border's meshd -> the ISP lost {BLOCK} after {} ms",
                withdrawn.as_millis()
            );
            assert!(
                withdrawn <= WITHDRAWN_AFTER_STOP,
                "after {signal} the ISP kept {BLOCK} for {withdrawn:?} (at most {WITHDRAWN_AFTER_STOP:?})"
            );

            let restart = Stopwatch::start();
            lab.lab_ok(&["start", "border"]);
            let ready = restart.elapsed();
            lab.wait(
                &format!("the ISP to learn {BLOCK} again after the restart"),
                RETURNS_WITHIN,
                || lab.isp_has_block(),
            );
            let back = restart.elapsed();
            println!(
                "measured: after {signal}, `meshd lab start border` answered in {} ms; the ISP had \
                 {BLOCK} again {:.1} s after the start (hold-down {} s)",
                ready.as_millis(),
                back.as_secs_f64(),
                HOLD_DOWN.as_secs()
            );
            assert!(
                back >= HOLD_DOWN,
                "re-announced {back:?} after the restart, before the hold-down of {HOLD_DOWN:?}"
            );
            // Whatever the crash left behind, the restarted meshd owns one copy of each.
            let rules = lab.rules_with(BORDER_NS, &format!("from {BLOCK} iif mesh0 lookup 123"));
            assert_eq!(rules.len(), 1, "after {signal} and a restart: {rules:?}");
            assert_eq!(
                lab.table(BORDER_NS, 123).len(),
                1,
                "{:?}",
                lab.table(BORDER_NS, 123)
            );
        }
        lab.down();
    });
}

/// 3. The announcement follows health while meshd runs: (a) with both nodes deauthorized the border
///    has no live peer, so table 201 and then the ISP lose the block; authorized again, it returns
///    after the hold-down; (b) with the upstream session down (disabled at the ISP) it is withdrawn,
///    and it returns after the hold-down once the session is back.
/// 4. BIRD's own life does not touch it: `birdc configure` on the border keeps the ISP's route and
///    the session, and a restart of the border's BIRD leaves table 201 alone while the ISP gets the
///    block back within 15 s.
#[test]
fn ingress_follows_health_and_outlives_bird_reconfigure_and_restart() {
    e2e(|lab| {
        let lab = IngressLab::up(lab);

        // 3a: no live peer.
        let watch = Stopwatch::start();
        for node in ["node1", "node2"] {
            lab.border_cli(&["member", "deauthorize", node, "--network", NETWORK]);
        }
        lab.wait(
            "table 201 to lose the block with both nodes deauthorized",
            WITHDRAWN_WHEN_UNHEALTHY,
            || !lab.announced(),
        );
        let gone = watch.elapsed();
        lab.wait(
            "the ISP to lose the block with both nodes deauthorized",
            WITHDRAWN_WHEN_UNHEALTHY.saturating_sub(watch.elapsed()),
            || !lab.isp_has_block(),
        );
        println!(
            "measured: both nodes deauthorized -> table 201 emptied after {} ms, the ISP lost the block \
             after {} ms",
            gone.as_millis(),
            watch.elapsed().as_millis()
        );
        let watch = Stopwatch::start();
        for node in ["node1", "node2"] {
            lab.border_cli(&["member", "authorize", node, "--network", NETWORK]);
        }
        let back = returns_after_the_hold_down(&lab, "the nodes are authorized");
        println!(
            "measured: nodes authorized again -> announced after {:.1} s, at the ISP after {:.1} s",
            back.as_secs_f64(),
            watch.elapsed().as_secs_f64()
        );

        // 3b: the upstream session down.
        let session = Router::Isp.session();
        let watch = Stopwatch::start();
        let said = lab.birdc(Router::Isp, &["disable", session]);
        assert!(
            said.contains("disabled"),
            "`birdc disable {session}` at the ISP: {said}"
        );
        let gone = lab.wait(
            "table 201 to lose the block with the upstream session down",
            WITHDRAWN_WITHOUT_UPSTREAM,
            || !lab.announced(),
        );
        println!(
            "measured: upstream session disabled at the ISP -> table 201 emptied after {} ms",
            gone.as_millis()
        );
        assert!(!lab.isp_has_block(), "the ISP has the block without a session");
        let watch_up = Stopwatch::start();
        let said = lab.birdc(Router::Isp, &["enable", session]);
        assert!(
            said.contains("enabled"),
            "`birdc enable {session}` at the ISP: {said}"
        );
        let back = returns_after_the_hold_down(&lab, "the session is back");
        println!(
            "measured: upstream session enabled -> announced after {:.1} s, at the ISP after {:.1} s \
             ({:.1} s since the disable)",
            back.as_secs_f64(),
            watch_up.elapsed().as_secs_f64(),
            watch.elapsed().as_secs_f64()
        );

        // 4: `birdc configure` on the border changes nothing.
        let since_before = lab.session_since(Router::Border);
        assert!(
            since_before.is_some(),
            "the border's BIRD does not list its session {}\n{}",
            Router::Border.session(),
            lab.diagnostics()
        );
        let said = lab.birdc(Router::Border, &["configure"]);
        assert!(
            said.contains("Reconfigur"),
            "`birdc configure` on the border: {said}"
        );
        let mut polls = 0;
        let watch = Stopwatch::start();
        while watch.elapsed() < Duration::from_secs(3) {
            assert!(
                lab.isp_has_block(),
                "the ISP lost the block {:?} after `birdc configure` on the border\n{}",
                watch.elapsed(),
                lab.diagnostics()
            );
            polls += 1;
            thread::sleep(POLL);
        }
        let since_after = lab.session_since(Router::Border);
        println!(
            "measured: `birdc configure` on the border -> the ISP kept the block through {polls} polls in \
             3 s; the session is Established since {} before and {} after",
            since_before.as_deref().unwrap_or("?"),
            since_after.as_deref().unwrap_or("?")
        );
        assert_eq!(
            since_before, since_after,
            "the session's Since changed with `birdc configure`: it was reset"
        );

        // 4: restarting the border's BIRD leaves meshd's route in place.
        let stop = AtomicBool::new(false);
        let missing = AtomicUsize::new(0);
        let checked = AtomicUsize::new(0);
        let back = thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    if !lab.announced() {
                        missing.fetch_add(1, Ordering::Relaxed);
                    }
                    checked.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(POLL);
                }
            });
            lab.lab_ok(&["stop", "border-bird"]);
            lab.lab_ok(&["start", "border-bird"]);
            let back = lab.wait(
                "the ISP to learn the block again after the border's BIRD restarted",
                BACK_AFTER_BIRD_RESTART,
                || lab.isp_has_block(),
            );
            // And a little longer: meshd must not withdraw while BIRD's session settles.
            thread::sleep(Duration::from_secs(2));
            stop.store(true, Ordering::Relaxed);
            back
        });
        println!(
            "measured: the border's BIRD restarted -> the ISP had the block again after {:.1} s; table \
             201 was checked {} times and missed the route {} times",
            back.as_secs_f64(),
            checked.load(Ordering::Relaxed),
            missing.load(Ordering::Relaxed)
        );
        assert_eq!(
            missing.load(Ordering::Relaxed),
            0,
            "meshd withdrew the block from table 201 while its BIRD restarted\n{}",
            lab.diagnostics()
        );
        assert!(lab.isp_has_block());
        lab.down();
    });
}
