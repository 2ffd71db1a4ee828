//! `meshd.toml`: what `meshd up` runs and where it keeps its state.
//!
//! ```toml
//! # /etc/meshd/meshd.toml (every key is optional; these are the defaults)
//! state_dir = "/var/lib/meshd"   # node key, membership, last map, controller database, API token
//! interface = "mesh0"            # the TUN device; `wg show mesh0` works on it
//! listen_port = 51820            # UDP port of the tunnel and of meshd's control messages (0: any)
//! api = "127.0.0.1:7450"         # admin API over TCP; loopback addresses only, port not 0
//! api_tcp = true                 # serve `api` too (the CLI uses <state_dir>/api.sock either way)
//!
//! [controller]
//! enabled = false                # run the controller (networks, members, tokens) in this daemon
//! # name = "border"              # the controller's own node's name [default: the host name]
//!
//! [routing]                      # a node whose network has an ingress: its public addresses
//! table = 200                    # route table with `default dev mesh0` for traffic from them
//! rule_priority = 1000           # priority of `ip rule from <address> lookup <table>`
//! fwmark = 0x4d53                # mark on meshd's own UDP socket; `fwmark .. lookup main` at
//!                                # rule_priority - 1 keeps the tunnel's own packets out of the tunnel
//!
//! [ingress]                      # this node is an ingress (border router) of its network
//! enabled = false
//! bird_socket = "/run/bird/bird.ctl"  # BIRD's control socket, used read-only
//! # upstream = "isp"             # BIRD's BGP protocol to the upstream (needed if enabled)
//! announce_table = 201           # kernel table BIRD learns the announcement from
//! route_protocol = 201           # rtm_protocol of every route meshd adds (not 0, 2 or 12)
//! hold_down_secs = 10            # healthy this long before the block is announced again
//! bird_restart_grace_secs = 30   # a restarted BIRD has this long to bring the session back up
//! egress_table = 123             # table for traffic from the block arriving on the mesh
//! # egress_gateway = "192.0.2.1" # the upstream router: that table's default route (needed if enabled)
//! # egress_gateway6 = "2001:db8::1"  # the same for IPv6, when the network has an IPv6 block
//! rule_priority = 1000           # priority of `ip rule from <block> iif mesh0 lookup <egress_table>`
//! ```
//!
//! The CLI reads the same file to find the API socket (or address and token file), so `meshd --config
//! FILE ...` talks to the daemon started with `meshd up --config FILE`. Every key, with its default and
//! an example, is in `docs/config.md`; `meshd up --print-config` prints the configuration in effect.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where `meshd` looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/meshd/meshd.toml";
/// Where state lives unless the configuration says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/meshd";
pub const DEFAULT_INTERFACE: &str = "mesh0";
pub const DEFAULT_LISTEN_PORT: u16 = 51820;
pub const DEFAULT_API_PORT: u16 = 7450;

/// The file under the state directory that holds the admin API's bearer token (mode 0600).
pub const API_TOKEN_FILE: &str = "api-token";
/// The admin API's Unix socket under the state directory (mode 0600), which the CLI uses.
pub const API_SOCKET_FILE: &str = "api.sock";
/// The lock file under the state directory: held by the running daemon, holding its pid.
pub const LOCK_FILE: &str = "meshd.lock";
/// The longest interface name Linux takes (IFNAMSIZ less the terminating NUL).
pub const MAX_INTERFACE_NAME: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub state_dir: PathBuf,
    pub interface: String,
    pub listen_port: u16,
    /// The admin API's loopback TCP address, served when `api_tcp` is on.
    pub api: SocketAddr,
    /// Whether to serve the admin API on `api` as well as on the Unix socket in the state directory.
    pub api_tcp: bool,
    pub controller: ControllerConfig,
    pub routing: RoutingConfig,
    pub ingress: IngressConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    pub enabled: bool,
    /// The name of the controller's own node in its networks (what members' `meshd status` shows);
    /// the host name when unset.
    pub name: Option<String>,
}

/// Source-based policy routing on a node that holds a public address from its network's block.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// The table `default dev <interface>` goes into; the node's rules look it up.
    pub table: u32,
    /// Priority of the node's `from <address> lookup <table>` rules; below `main` (32766) so they
    /// are consulted first.
    pub rule_priority: u32,
    /// Mark meshd puts on its own UDP socket. The rules skip marked packets, so the tunnel's own
    /// traffic never enters the tunnel, whatever source address it carries.
    pub fwmark: u32,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            table: 200,
            rule_priority: 1000,
            fwmark: 0x4d53,
        }
    }
}

/// The ingress role: announcing the network's block through BIRD and forwarding its traffic.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    pub enabled: bool,
    pub bird_socket: PathBuf,
    /// The name of BIRD's BGP protocol towards the upstream (`protocol bgp isp { ... }` is "isp").
    pub upstream: String,
    pub announce_table: u32,
    pub route_protocol: u8,
    pub hold_down_secs: u64,
    pub bird_restart_grace_secs: u64,
    pub egress_table: u32,
    /// The upstream router: the egress table's default route goes through it. Empty when
    /// `enabled = false`.
    pub egress_gateway: Option<Ipv4Addr>,
    /// The upstream router for IPv6, when the network has an IPv6 block.
    pub egress_gateway6: Option<std::net::Ipv6Addr>,
    pub rule_priority: u32,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            enabled: false,
            bird_socket: PathBuf::from("/run/bird/bird.ctl"),
            upstream: String::new(),
            announce_table: 201,
            route_protocol: 201,
            hold_down_secs: 10,
            bird_restart_grace_secs: 30,
            egress_table: 123,
            egress_gateway: None,
            egress_gateway6: None,
            rule_priority: 1000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            interface: DEFAULT_INTERFACE.to_string(),
            listen_port: DEFAULT_LISTEN_PORT,
            api: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_API_PORT)),
            api_tcp: true,
            controller: ControllerConfig::default(),
            routing: RoutingConfig::default(),
            ingress: IngressConfig::default(),
        }
    }
}

/// Why a configuration was not loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// `--config` named a file that cannot be read.
    Read { path: PathBuf, error: std::io::Error },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    Parse { path: PathBuf, message: String },
    /// Well-formed but not usable; the text says which key and why.
    Invalid { path: PathBuf, message: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            ConfigError::Parse { path, message } => write!(f, "{}: {message}", path.display()),
            ConfigError::Invalid { path, message } => write!(f, "{}: {message}", path.display()),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads `path`. With `explicit` false (no `--config` given) a missing file means the defaults, so a
    /// machine runs without writing one; a file named on the command line must exist.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(Config::default()),
            Err(error) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    error,
                });
            }
        };
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and checks configuration text (errors carry an empty path; [`Config::load`] fills it).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.check().map_err(|message| ConfigError::Invalid {
            path: PathBuf::new(),
            message,
        })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if !self.api.ip().is_loopback() {
            return Err(format!(
                "api = \"{}\" is not a loopback address; the admin API listens on loopback only \
                 (for example \"127.0.0.1:{DEFAULT_API_PORT}\")",
                self.api
            ));
        }
        if self.api.port() == 0 {
            return Err(format!(
                "api = \"{}\" has port 0, which would put the admin API on a random port the CLI \
                 cannot find; give a fixed port, such as {DEFAULT_API_PORT}",
                self.api
            ));
        }
        check_interface_name(&self.interface)?;
        if let Some(name) = &self.controller.name {
            check_node_name(name)?;
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err("state_dir is empty; give a directory such as \"/var/lib/meshd\"".to_string());
        }
        self.check_routing()?;
        if self.ingress.enabled {
            self.check_ingress()?;
        }
        Ok(())
    }

    fn check_routing(&self) -> Result<(), String> {
        let r = &self.routing;
        if reserved_table(r.table) {
            return Err(format!(
                "[routing] table = {} is a kernel table (0, 253, 254 and 255 are unspec, default, main \
                 and local); pick another, such as 200",
                r.table
            ));
        }
        if r.rule_priority < 2 || r.rule_priority >= 32766 {
            return Err(format!(
                "[routing] rule_priority = {} must be between 2 and 32765, so the rule comes before \
                 the main table's (32766) with room for the fwmark rule just before it",
                r.rule_priority
            ));
        }
        if r.fwmark == 0 {
            return Err(
                "[routing] fwmark = 0 marks nothing; pick a non-zero mark such as 0x4d53".to_string(),
            );
        }
        Ok(())
    }

    fn check_ingress(&self) -> Result<(), String> {
        let i = &self.ingress;
        let identifier = i
            .upstream
            .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && i.upstream.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            return Err(format!(
                "[ingress] upstream = {:?}: give the name of BIRD's BGP protocol towards your upstream \
                 (`protocol bgp isp {{ ... }}` is \"isp\")",
                i.upstream
            ));
        }
        if i.egress_gateway.is_none() {
            return Err(
                "[ingress] egress_gateway is missing: give the upstream router's address, for example \
                 \"192.0.2.1\"; traffic from the block leaves through it"
                    .to_string(),
            );
        }
        for (key, table) in [
            ("announce_table", i.announce_table),
            ("egress_table", i.egress_table),
        ] {
            if reserved_table(table) {
                return Err(format!(
                    "[ingress] {key} = {table} is a kernel table (0, 253, 254, 255); pick another"
                ));
            }
        }
        if i.announce_table == i.egress_table || i.announce_table == self.routing.table {
            return Err(format!(
                "[ingress] announce_table = {} is used for another purpose too; BIRD learns everything \
                 in it, so it must hold the announcement alone",
                i.announce_table
            ));
        }
        if matches!(i.route_protocol, 0 | 2 | 12) {
            return Err(format!(
                "[ingress] route_protocol = {} is one BIRD does not learn (0 unspec, 2 kernel, 12 \
                 bird); pick another, such as 201",
                i.route_protocol
            ));
        }
        if i.rule_priority == 0 || i.rule_priority >= 32766 {
            return Err(format!(
                "[ingress] rule_priority = {} must be between 1 and 32765",
                i.rule_priority
            ));
        }
        Ok(())
    }

    /// How long the ingress must be healthy before it announces its block.
    pub fn hold_down(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.ingress.hold_down_secs)
    }

    /// The admin API's bearer token file.
    pub fn api_token_path(&self) -> PathBuf {
        self.state_dir.join(API_TOKEN_FILE)
    }

    /// The admin API's Unix socket.
    pub fn api_socket_path(&self) -> PathBuf {
        self.state_dir.join(API_SOCKET_FILE)
    }

    /// The state directory's lock file.
    pub fn lock_path(&self) -> PathBuf {
        self.state_dir.join(LOCK_FILE)
    }

    /// The configuration as TOML, every key with its value in effect (unset optional keys are left
    /// out), for `meshd up --print-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }
}

/// An interface name meshd can create: 1 to 15 (IFNAMSIZ - 1) letters, digits, `-`, `_` and `.`, not
/// `.` or `..`. (Linux takes more, such as `:` and non-ASCII bytes, which tools and scripts trip on.)
/// Whether the name is taken by an interface that is not meshd's is checked when the daemon starts.
pub fn check_interface_name(name: &str) -> Result<(), String> {
    let fits = !name.is_empty()
        && name.len() <= MAX_INTERFACE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != "..";
    if fits {
        Ok(())
    } else {
        Err(format!(
            "interface = {name:?} is not an interface name meshd can use: 1 to {MAX_INTERFACE_NAME} \
             characters, each a letter, a digit, '-', '_' or '.' (for example \"{DEFAULT_INTERFACE}\")"
        ))
    }
}

/// A name for the controller's own node: a DNS label (1 to 63 lower-case letters, digits and `-`, not
/// starting or ending with `-`), so it reads the same in every listing and can serve as a host name.
fn check_node_name(name: &str) -> Result<(), String> {
    let fits = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if fits {
        Ok(())
    } else {
        Err(format!(
            "[controller] name = {name:?} is not a name meshd can use: 1 to 63 lower-case letters, \
             digits and '-', not starting or ending with '-' (for example \"border\")"
        ))
    }
}

/// Tables the kernel gives a meaning: unspec, default, main and local.
fn reserved_table(table: u32) -> bool {
    matches!(table, 0 | 253 | 254 | 255)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn every_key_is_read() {
        let c = Config::parse(
            "state_dir = \"/tmp/x\"\ninterface = \"m1\"\nlisten_port = 0\napi = \"[::1]:9\"\n\
             [controller]\nenabled = true\n",
        )
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.interface, "m1");
        assert_eq!(c.listen_port, 0);
        assert_eq!(c.api, "[::1]:9".parse().unwrap());
        assert!(c.controller.enabled);
    }

    #[test]
    fn unknown_keys_and_public_api_addresses_are_refused() {
        let e = Config::parse("listen_prot = 1\n").unwrap_err().to_string();
        assert!(e.contains("listen_prot"), "{e}");
        let e = Config::parse("api = \"0.0.0.0:7450\"\n").unwrap_err().to_string();
        assert!(e.contains("loopback"), "{e}");
        let e = Config::parse("interface = \"a/b\"\n").unwrap_err().to_string();
        assert!(e.contains("interface"), "{e}");
    }

    #[test]
    fn ingress_needs_an_upstream_and_a_gateway() {
        let e = Config::parse("[ingress]\nenabled = true\negress_gateway = \"192.0.2.1\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("upstream"), "{e}");
        let e = Config::parse("[ingress]\nenabled = true\nupstream = \"isp\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("egress_gateway"), "{e}");
        let c = Config::parse(
            "[ingress]\nenabled = true\nupstream = \"isp\"\negress_gateway = \"192.0.2.1\"\n\
             hold_down_secs = 3\n",
        )
        .unwrap();
        assert_eq!(c.hold_down(), std::time::Duration::from_secs(3));
        assert_eq!(c.ingress.announce_table, 201);
    }

    #[test]
    fn tables_and_protocols_the_kernel_or_bird_own_are_refused() {
        for (text, word) in [
            ("[routing]\ntable = 254\n", "table"),
            ("[routing]\nrule_priority = 32766\n", "rule_priority"),
            ("[routing]\nfwmark = 0\n", "fwmark"),
            (
                "[ingress]\nenabled = true\nupstream = \"isp\"\negress_gateway = \"192.0.2.1\"\nroute_protocol = 12\n",
                "route_protocol",
            ),
            (
                "[ingress]\nenabled = true\nupstream = \"isp\"\negress_gateway = \"192.0.2.1\"\negress_table = 201\n",
                "announce_table",
            ),
        ] {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(e.contains(word), "{text}: {e}");
        }
    }

    #[test]
    fn an_api_port_of_0_is_refused() {
        let e = Config::parse("api = \"127.0.0.1:0\"\n").unwrap_err().to_string();
        assert!(e.contains("port 0") && e.contains("7450"), "{e}");
        assert!(Config::parse("api = \"127.0.0.1:7451\"\napi_tcp = false\n").is_ok());
    }

    #[test]
    fn interface_names_are_checked_by_their_characters_and_length() {
        for bad in [
            "",
            "a\nb",
            "mesh 0",
            "a/b",
            "mesh:0",
            ".",
            "..",
            "0123456789abcdef",
            "mésh",
            "a\0",
        ] {
            let text = format!("interface = {bad:?}\n").replace("\\0", "\\u0000");
            let e = Config::parse(&text).unwrap_err().to_string();
            assert!(
                e.contains("interface") && e.contains("15 characters"),
                "{bad:?}: {e}"
            );
        }
        for good in ["mesh0", "wg-lab", "m_1.2", "0123456789abcde"] {
            let c = Config::parse(&format!("interface = {good:?}\n")).unwrap();
            assert_eq!(c.interface, good);
        }
    }

    #[test]
    fn the_controller_can_name_its_node() {
        let c = Config::parse("[controller]\nenabled = true\nname = \"border\"\n").unwrap();
        assert_eq!(c.controller.name.as_deref(), Some("border"));
        assert_eq!(Config::default().controller.name, None);
        for bad in ["", "Border", "-x", "x-", "a b", "\u{202e}x"] {
            let e = Config::parse(&format!("[controller]\nname = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("[controller] name"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_printed_configuration_reads_back_the_same() {
        let c = Config::parse(
            "state_dir = \"/tmp/x\"\ninterface = \"m1\"\napi_tcp = false\n[controller]\nenabled = true\n\
             name = \"border\"\n[routing]\nfwmark = 7\n[ingress]\nenabled = true\nupstream = \"isp\"\n\
             egress_gateway = \"192.0.2.1\"\negress_gateway6 = \"2001:db8::1\"\n",
        )
        .unwrap();
        let printed = c.to_toml();
        assert_eq!(Config::parse(&printed).unwrap(), c, "{printed}");
        assert_eq!(
            Config::parse(&Config::default().to_toml()).unwrap(),
            Config::default()
        );
    }

    /// Every key of the configuration, as `section.key` (top-level keys without a section), read from
    /// the struct itself through serde so that a new key cannot be missed.
    fn every_key() -> Vec<(Option<String>, String)> {
        let value = serde_json::to_value(Config::default()).unwrap();
        let mut keys = Vec::new();
        for (key, v) in value.as_object().unwrap() {
            match v.as_object() {
                Some(table) => keys.extend(table.keys().map(|k| (Some(key.clone()), k.clone()))),
                None => keys.push((None, key.clone())),
            }
        }
        keys
    }

    #[test]
    fn every_key_is_documented_in_docs_config_md() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/config.md")).unwrap();
        let section = |name: Option<&str>| -> String {
            let heading = match name {
                Some(n) => format!("## `[{n}]`"),
                None => "## Top level".to_string(),
            };
            let start = doc
                .find(&heading)
                .unwrap_or_else(|| panic!("docs/config.md has no heading {heading:?}"));
            let rest = &doc[start + heading.len()..];
            rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
        };
        let keys = every_key();
        assert!(keys.len() >= 20, "{keys:?}");
        for (table, key) in keys {
            let text = section(table.as_deref());
            assert!(
                text.contains(&format!("| `{key}` |")),
                "docs/config.md does not document `{key}` in its {table:?} section"
            );
        }
    }

    #[test]
    fn missing_default_file_is_fine_but_a_named_one_is_not() {
        let path = Path::new("/nonexistent/meshd.toml");
        assert_eq!(Config::load(path, false).unwrap(), Config::default());
        let e = Config::load(path, true).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/meshd.toml"), "{e}");
    }
}
