//! Socket addresses in one form: a dual-stack IPv6 socket reports IPv4 peers v4-mapped
//! (`::ffff:192.0.2.1`), while maps, relay tables and logs name them as plain IPv4. Every address
//! that came off a socket goes through [`canonical`] before it is compared or stored.

use std::net::SocketAddr;

/// An address as the peer sees itself: IPv4 peers on the dual-stack socket arrive v4-mapped.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_become_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:51820".parse().unwrap();
        assert_eq!(canonical(mapped), "192.0.2.1:51820".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:51820".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
