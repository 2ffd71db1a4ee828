//! meshd-wg moving real packets: against itself and against wireguard-go (the Debian package), in
//! both roles, over both underlay families, with bulk transfers whose checksums must match.

use std::time::Duration;

use meshd_tests::{Family, Initiator, PairConfig, Side, TunnelPair, WgImpl, e2e};

const MIB: u64 = 1 << 20;

fn full_check(lab: &meshd_tests::Lab, a: &WgImpl, b: &WgImpl, config: PairConfig, bytes: u64) {
    let pair = TunnelPair::up(lab, a, b, config);
    pair.ping_both_ways();
    pair.transfer(Side::A, Family::V4, bytes, Duration::from_secs(120));
    pair.transfer(Side::B, Family::V6, bytes, Duration::from_secs(120));
    pair.check_wg_show(bytes);
    pair.shutdown_checked();
}

#[test]
fn meshd_wg_pair_over_ipv4_with_256_mib_each_way() {
    e2e(|lab| {
        let meshd = WgImpl::meshd_wg();
        let config = PairConfig {
            underlay: Family::V4,
            initiator: Initiator::Both,
        };
        full_check(lab, &meshd, &meshd, config, 256 * MIB);
    });
}

#[test]
fn meshd_wg_pair_over_ipv6_responder_learns_endpoint() {
    e2e(|lab| {
        let meshd = WgImpl::meshd_wg();
        let config = PairConfig {
            underlay: Family::V6,
            initiator: Initiator::Only(Side::B),
        };
        full_check(lab, &meshd, &meshd, config, 32 * MIB);
    });
}

#[test]
fn meshd_wg_initiates_to_wireguard_go() {
    e2e(|lab| {
        let config = PairConfig {
            underlay: Family::V4,
            initiator: Initiator::Only(Side::A),
        };
        full_check(
            lab,
            &WgImpl::meshd_wg(),
            &WgImpl::wireguard_go(),
            config,
            32 * MIB,
        );
    });
}

#[test]
fn wireguard_go_initiates_to_meshd_wg() {
    e2e(|lab| {
        let config = PairConfig {
            underlay: Family::V6,
            initiator: Initiator::Only(Side::A),
        };
        full_check(
            lab,
            &WgImpl::wireguard_go(),
            &WgImpl::meshd_wg(),
            config,
            32 * MIB,
        );
    });
}
