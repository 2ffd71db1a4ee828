//! What the data path sends: one datagram, or a run of equal-sized ones, over one path.

use std::net::SocketAddr;

use super::{Path, PathId};

/// A send the data path makes: from `src` (or whichever address the OS routes from) to `dst`, with
/// an IP TTL / hop limit other than the socket's if `ttl` says so (a low TTL opens the local NAT
/// without reaching the remote one), and as UDP GSO segments of `segment_size` bytes if set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub src: Option<SocketAddr>,
    pub dst: SocketAddr,
    pub ttl: Option<u8>,
    pub segment_size: Option<usize>,
    /// The path the send belongs to, for what the send's outcome teaches (EMSGSIZE, an error).
    pub path: PathId,
}

impl Transmit {
    /// One datagram over `path`, with the socket's TTL.
    pub fn on(path: &Path) -> Self {
        Transmit {
            src: path.local(),
            dst: path.remote(),
            ttl: None,
            segment_size: None,
            path: path.id(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PathKind, PathSet};
    use super::*;

    #[test]
    fn a_transmit_goes_from_the_paths_local_address_to_its_remote_one() {
        let mut set = PathSet::default();
        let local = Some("198.51.100.2:51820".parse().unwrap());
        let remote = "192.0.2.1:51820".parse().unwrap();
        let id = set.add(local, remote, PathKind::Direct);
        let t = Transmit::on(set.get(id).unwrap());
        assert_eq!(
            t,
            Transmit {
                src: local,
                dst: remote,
                ttl: None,
                segment_size: None,
                path: id
            }
        );
    }
}
