//! `meshd-wg`: a WireGuard interface in userspace, a drop-in for wireguard-go.

use std::ffi::OsString;
use std::process::ExitCode;

use meshd_wg::sys::process;

const USAGE: &str = "\
Usage: meshd-wg [-f|--foreground] INTERFACE

Creates the TUN device INTERFACE and serves WireGuard on it, configured with wg(8) through
/var/run/wireguard/INTERFACE.sock exactly as wireguard-go is:

    meshd-wg wg0
    wg set wg0 private-key ./private listen-port 51820 peer PUBKEY allowed-ips 10.0.0.2/32 endpoint 192.0.2.2:51820
    ip address add 10.0.0.1/24 dev wg0 && ip link set wg0 up

wg-quick uses it with WG_QUICK_USERSPACE_IMPLEMENTATION=meshd-wg.

Options:
  -f, --foreground   stay in the foreground and log to standard error (default: detach once serving;
                     WG_PROCESS_FOREGROUND=1 has the same effect)
  -h, --help         print this help
  -V, --version      print the version

Environment:
  LOG_LEVEL          debug (or verbose), info (default), warn, error, or silent; debug includes the
                     counters of dropped packets by reason

The daemon removes the interface and its socket and exits on SIGTERM or SIGINT, or when the interface
is deleted (ip link del INTERFACE). It needs root (or CAP_NET_ADMIN) and /dev/net/tun.";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut foreground = std::env::var_os("WG_PROCESS_FOREGROUND").is_some_and(|v| v == "1");
    let mut interface = None;
    for arg in &args {
        match arg.to_str() {
            Some("-f" | "--foreground") => foreground = true,
            Some("-h" | "--help") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Some("-V" | "--version") => {
                println!("meshd-wg {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            Some(s) if s.starts_with('-') => return usage_error(&format!("unknown option {s}")),
            Some(name) if interface.is_none() => interface = Some(name.to_string()),
            Some(extra) => return usage_error(&format!("unexpected argument {extra}")),
            None => return usage_error("arguments must be UTF-8"),
        }
    }
    let Some(interface) = interface else {
        return usage_error("missing INTERFACE");
    };
    if let Err(why) = valid_interface_name(&interface) {
        return usage_error(&why);
    }

    meshd_wg::sys::logging::init();
    if !foreground {
        let mut child_args = vec![OsString::from("--foreground")];
        child_args.push(OsString::from(&interface));
        return match process::spawn_background(&child_args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("meshd-wg: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match meshd_wg::run(&interface, || Ok(process::notify_ready()?)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshd-wg: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(why: &str) -> ExitCode {
    eprintln!("meshd-wg: {why}\n\n{USAGE}");
    ExitCode::from(2)
}

/// Linux interface names: 1 to 15 bytes, no '/', no whitespace, not "." or "..".
fn valid_interface_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid interface name (1-15 characters, no '/', ':' or spaces)"
        ))
    }
}
