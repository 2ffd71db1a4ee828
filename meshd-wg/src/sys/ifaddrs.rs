//! The machine's own IP addresses, which a node reports to its controller so the controller can tell
//! whether the address it sees a node at is the node's own (reachable) or a NAT's.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses of interfaces that are up, except loopback, link-local addresses and the interfaces
/// named in `skip` (the mesh interface: its addresses are not underlay addresses).
pub fn local_addresses(skip: &[&str]) -> io::Result<Vec<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a pointer to a list it allocates into `list`; freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a non-null node of the list getifaddrs returned, valid until freeifaddrs.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_flags & libc::IFF_UP as u32 == 0 {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) }.to_string_lossy();
        if skip.iter().any(|s| *s == name) {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points at a sockaddr whose family says its real type.
        let addr = unsafe {
            match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(entry.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(entry.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        let skip_addr = match addr {
            IpAddr::V4(a) => a.is_loopback() || a.is_link_local() || a.is_unspecified(),
            IpAddr::V6(a) => a.is_loopback() || a.is_unicast_link_local() || a.is_unspecified(),
        };
        if !skip_addr && !out.contains(&addr) {
            out.push(addr);
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once; nothing borrowed from it outlives this.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_never_listed() {
        let addrs = local_addresses(&[]).unwrap();
        assert!(addrs.iter().all(|a| !a.is_loopback()), "{addrs:?}");
    }
}
