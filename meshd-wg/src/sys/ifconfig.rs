//! Addresses and link state of the mesh interface, set with iproute2's `ip`.
//!
//! `ip address replace` is idempotent, so applying the same set twice changes nothing. IPv6 addresses
//! are added with `nodad`: the interface is a point-to-multipoint tunnel where no other host can hold
//! the address, and duplicate detection would hold the address back for a second or more.

use std::io;
use std::net::IpAddr;
use std::process::Command;

/// Gives `interface` these addresses (with prefix lengths) and this MTU, and brings it up.
pub fn configure(interface: &str, addresses: &[(IpAddr, u8)], mtu: u16) -> io::Result<()> {
    ip(&["link", "set", "dev", interface, "mtu", &mtu.to_string(), "up"])?;
    for (addr, len) in addresses {
        let cidr = format!("{addr}/{len}");
        match addr {
            IpAddr::V4(_) => ip(&["-4", "address", "replace", &cidr, "dev", interface])?,
            IpAddr::V6(_) => ip(&["-6", "address", "replace", &cidr, "dev", interface, "nodad"])?,
        }
    }
    Ok(())
}

/// Takes an address (with its prefix length) off `interface`; one that is not there is no error.
pub fn remove_address(interface: &str, addr: IpAddr, len: u8) -> io::Result<()> {
    let cidr = format!("{addr}/{len}");
    let family = if addr.is_ipv4() { "-4" } else { "-6" };
    match ip(&[family, "address", "del", &cidr, "dev", interface]) {
        Err(e) if e.to_string().contains("Cannot assign requested address") => Ok(()),
        other => other,
    }
}

fn ip(args: &[&str]) -> io::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run `ip` (install iproute2): {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}
