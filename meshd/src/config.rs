//! `meshd.toml`: what `meshd up` runs and where it keeps its state.
//!
//! ```toml
//! # /etc/meshd/meshd.toml (every key is optional; these are the defaults)
//! state_dir = "/var/lib/meshd"   # node key, membership, last map, controller database, API token
//! interface = "mesh0"            # the TUN device; `wg show mesh0` works on it
//! listen_port = 51820            # UDP port of the tunnel and of meshd's control messages (0: any)
//! api = "127.0.0.1:7450"         # admin API; loopback addresses only
//!
//! [controller]
//! enabled = false                # run the controller (networks, members, tokens) in this daemon
//! ```
//!
//! The CLI reads the same file to find the API address and the token file, so `meshd --config FILE
//! ...` talks to the daemon started with `meshd up --config FILE`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where `meshd` looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/meshd/meshd.toml";
/// Where state lives unless the configuration says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/meshd";
pub const DEFAULT_INTERFACE: &str = "mesh0";
pub const DEFAULT_LISTEN_PORT: u16 = 51820;
pub const DEFAULT_API_PORT: u16 = 7450;

/// The file under the state directory that holds the admin API's bearer token (mode 0600).
pub const API_TOKEN_FILE: &str = "api-token";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub state_dir: PathBuf,
    pub interface: String,
    pub listen_port: u16,
    pub api: SocketAddr,
    pub controller: ControllerConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    pub enabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            interface: DEFAULT_INTERFACE.to_string(),
            listen_port: DEFAULT_LISTEN_PORT,
            api: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_API_PORT)),
            controller: ControllerConfig::default(),
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
        if self.interface.is_empty()
            || self.interface.len() > 15
            || self.interface.contains(['/', ' ', '\0'])
            || self.interface == "."
            || self.interface == ".."
        {
            return Err(format!(
                "interface = {:?} is not a Linux interface name (1 to 15 characters, no '/' or spaces)",
                self.interface
            ));
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err("state_dir is empty; give a directory such as \"/var/lib/meshd\"".to_string());
        }
        Ok(())
    }

    /// The admin API's bearer token file.
    pub fn api_token_path(&self) -> PathBuf {
        self.state_dir.join(API_TOKEN_FILE)
    }
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
    fn missing_default_file_is_fine_but_a_named_one_is_not() {
        let path = Path::new("/nonexistent/meshd.toml");
        assert_eq!(Config::load(path, false).unwrap(), Config::default());
        let e = Config::load(path, true).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/meshd.toml"), "{e}");
    }
}
