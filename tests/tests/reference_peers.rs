//! The harness proven with reference implementations only: if these fail, the harness or the
//! machine is broken, not meshd. The data-plane tests for meshd-wg run the same [`TunnelPair`]
//! scenario with `WgImpl::meshd_wg()` in either role.

use std::time::Duration;

use meshd_tests::{Family, Initiator, PairConfig, Side, WgImpl, e2e};

const MIB: u64 = 1 << 20;

/// Pings both ways over both inner families, one bulk transfer each way, the counters `wg show`
/// reports, and a clean shutdown of both daemons.
fn full_check(lab: &meshd_tests::Lab, a: &WgImpl, b: &WgImpl, config: PairConfig, bytes: u64) {
    meshd_tests::pair::full_check(lab, a, b, config, bytes, Duration::from_secs(60));
}

#[test]
fn wireguard_go_pair_over_ipv4() {
    e2e(|lab| {
        let wg_go = WgImpl::wireguard_go();
        let config = PairConfig {
            underlay: Family::V4,
            initiator: Initiator::Both,
        };
        full_check(lab, &wg_go, &wg_go, config, 64 * MIB);
    });
}

#[test]
fn wireguard_go_pair_over_ipv6_responder_learns_endpoint() {
    e2e(|lab| {
        let wg_go = WgImpl::wireguard_go();
        let config = PairConfig {
            underlay: Family::V6,
            initiator: Initiator::Only(Side::B),
        };
        full_check(lab, &wg_go, &wg_go, config, 16 * MIB);
    });
}

// A second, independent implementation on one side shows the scenario really is parameterised by
// implementation. Opt-in because boringtun-cli is a cargo install, not a Debian package.
#[test]
#[ignore = "needs boringtun-cli (cargo install boringtun-cli --locked); run with --ignored"]
fn boringtun_cli_with_wireguard_go_each_initiating() {
    e2e(|lab| {
        let boringtun = WgImpl::boringtun_cli();
        let wg_go = WgImpl::wireguard_go();
        let config = PairConfig {
            underlay: Family::V4,
            initiator: Initiator::Only(Side::A),
        };
        full_check(lab, &boringtun, &wg_go, config, 16 * MIB);
    });
}

#[test]
#[ignore = "needs boringtun-cli (cargo install boringtun-cli --locked); run with --ignored"]
fn wireguard_go_with_boringtun_cli_each_initiating() {
    e2e(|lab| {
        let boringtun = WgImpl::boringtun_cli();
        let wg_go = WgImpl::wireguard_go();
        let config = PairConfig {
            underlay: Family::V6,
            initiator: Initiator::Only(Side::A),
        };
        full_check(lab, &wg_go, &boringtun, config, 16 * MIB);
    });
}
