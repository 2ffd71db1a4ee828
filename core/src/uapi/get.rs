//! Rendering the answer to `get=1`.

use std::fmt::Write;

use zeroize::Zeroizing;

use super::encode_key;
use crate::node::DeviceStatus;

/// The answer to `get=1` for the node's status, ending in `errno=0` and the empty line. It contains
/// the private key, as the protocol requires: the socket that carries it is only accessible to root.
pub fn render(status: &DeviceStatus) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(256 + 256 * status.peers.len()));
    let s = &mut *out;
    if let Some(key) = &status.private_key {
        line(s, "private_key", encode_key(key));
    }
    line(s, "listen_port", status.listen_port);
    if status.fwmark != 0 {
        line(s, "fwmark", status.fwmark);
    }
    for peer in &status.peers {
        line(s, "public_key", encode_key(&peer.public_key));
        let psk = peer.preshared_key.as_deref().copied().unwrap_or([0; 32]);
        line(s, "preshared_key", encode_key(&psk));
        line(s, "protocol_version", 1);
        if let Some(endpoint) = peer.endpoint {
            line(s, "endpoint", endpoint);
        }
        let handshake = peer.last_handshake.unwrap_or_default();
        line(s, "last_handshake_time_sec", handshake.as_secs());
        line(s, "last_handshake_time_nsec", handshake.subsec_nanos());
        line(s, "tx_bytes", peer.tx_bytes);
        line(s, "rx_bytes", peer.rx_bytes);
        line(
            s,
            "persistent_keepalive_interval",
            peer.persistent_keepalive_interval,
        );
        for prefix in &peer.allowed_ips {
            line(s, "allowed_ip", prefix);
        }
    }
    s.push_str("errno=0\n\n");
    out
}

fn line(out: &mut String, key: &str, value: impl std::fmt::Display) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{key}={value}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::PeerStatus;
    use std::time::Duration;

    #[test]
    fn renders_what_wg_parses() {
        let status = DeviceStatus {
            private_key: Some(Zeroizing::new([0x11; 32])),
            listen_port: 51820,
            fwmark: 0,
            peers: vec![PeerStatus {
                public_key: [0x22; 32],
                preshared_key: None,
                endpoint: Some("[2001:db8::2]:51821".parse().unwrap()),
                last_handshake: Some(Duration::new(1_700_000_000, 5)),
                rx_bytes: 10,
                tx_bytes: 20,
                persistent_keepalive_interval: 25,
                allowed_ips: vec![
                    "198.51.100.0/24".parse().unwrap(),
                    "2001:db8:2::/48".parse().unwrap(),
                ],
            }],
        };
        let text = render(&status);
        let expected = format!(
            "private_key={}\nlisten_port=51820\npublic_key={}\npreshared_key={}\nprotocol_version=1\n\
             endpoint=[2001:db8::2]:51821\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n\
             tx_bytes=20\nrx_bytes=10\npersistent_keepalive_interval=25\nallowed_ip=198.51.100.0/24\n\
             allowed_ip=2001:db8:2::/48\nerrno=0\n\n",
            "11".repeat(32),
            "22".repeat(32),
            "00".repeat(32)
        );
        assert_eq!(*text, expected);
    }

    #[test]
    fn an_empty_device_has_only_the_port_and_errno() {
        let text = render(&DeviceStatus {
            fwmark: 7,
            ..Default::default()
        });
        assert_eq!(*text, "listen_port=0\nfwmark=7\nerrno=0\n\n");
    }
}
