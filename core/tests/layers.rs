//! The layers of the workspace, as Cargo sees them (`cargo metadata`): the sans-IO crates (packet,
//! crypto, routing, core) never depend, directly or through another crate, on a runtime, a database,
//! an HTTP stack or an OS binding; the data plane (`meshd-wg`) never on the database, HTTP or the
//! controller. A grep of the source cannot see a dependency; the resolved crate graph can, so this
//! test reads it. docs/architecture.md draws the graph.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// The crates that do no IO.
const SANS_IO: &[&str] = &["meshd-packet", "meshd-crypto", "meshd-routing", "meshd-core"];

/// What a sans-IO crate must never reach.
const IO: &[&str] = &[
    "tokio",
    "rusqlite",
    "axum",
    "hyper",
    "libc",
    "socket2",
    "tun-rs",
    "quinn-udp",
    "rtnetlink",
    "nix",
];

/// What the data plane must never reach: `meshd-wg` builds without SQLite or an HTTP stack.
const NOT_DATA_PLANE: &[&str] = &[
    "rusqlite",
    "libsqlite3-sys",
    "axum",
    "hyper",
    "meshd-controller",
    "meshd",
];

/// Crates the walk does not enter. `getrandom` is the OS RNG that ring and the RustCrypto AEADs link
/// (and, through it, libc); the sans-IO crates never call it (clippy.toml bans OS randomness there:
/// the caller passes an RNG), so what lies behind it is not theirs.
const OPAQUE: &[&str] = &["getrandom"];

/// The resolved graph: package id to (name, the ids of its normal and build dependencies).
struct Graph {
    nodes: HashMap<String, (String, Vec<String>)>,
}

impl Graph {
    fn load() -> Graph {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // The host's platform only, so that no other platform's crates must be downloaded.
        let rustc = Command::new("rustc").arg("-vV").output().expect("rustc -vV runs");
        let rustc = String::from_utf8(rustc.stdout).expect("rustc -vV is text");
        let host = rustc
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .expect("rustc -vV names the host");
        let out = Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--locked",
                "--filter-platform",
                host,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo metadata runs");
        assert!(
            out.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON");
        let names: HashMap<&str, &str> = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        let mut nodes = HashMap::new();
        for node in meta["resolve"]["nodes"].as_array().expect("resolve.nodes") {
            let id = node["id"].as_str().unwrap();
            let deps = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    // A dev-dependency is not part of what the crate ships.
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].as_str() != Some("dev"))
                })
                .map(|d| d["pkg"].as_str().unwrap().to_string())
                .collect();
            nodes.insert(id.to_string(), (names[id].to_string(), deps));
        }
        Graph { nodes }
    }

    fn id(&self, name: &str) -> &str {
        self.nodes
            .iter()
            .find(|(_, (n, _))| n == name)
            .map(|(id, _)| id.as_str())
            .unwrap_or_else(|| panic!("{name} is in the workspace"))
    }

    /// Every crate `name` reaches through normal and build dependencies, each with the path to it,
    /// without entering the `opaque` crates.
    fn reach(&self, name: &str, opaque: &[&str]) -> Vec<(String, Vec<String>)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let mut stack = vec![(self.id(name).to_string(), vec![name.to_string()])];
        while let Some((id, path)) = stack.pop() {
            for dep in &self.nodes[&id].1 {
                let dep_name = &self.nodes[dep].0;
                if !seen.insert(dep.clone()) {
                    continue;
                }
                let mut p = path.clone();
                p.push(dep_name.clone());
                out.push((dep_name.clone(), p.clone()));
                if !opaque.contains(&dep_name.as_str()) {
                    stack.push((dep.clone(), p));
                }
            }
        }
        out
    }
}

#[test]
fn the_sans_io_crates_reach_no_io_crate() {
    let graph = Graph::load();
    // The walk sees what it looks for: the daemon does reach tokio and libc.
    let daemon: Vec<String> = graph.reach("meshd", OPAQUE).into_iter().map(|(n, _)| n).collect();
    assert!(daemon.iter().any(|n| n == "tokio") && daemon.iter().any(|n| n == "libc"));
    let mut wrong = Vec::new();
    for krate in SANS_IO {
        for (name, path) in graph.reach(krate, OPAQUE) {
            if IO.contains(&name.as_str()) {
                wrong.push(path.join(" -> "));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "a sans-IO crate depends on IO:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_data_plane_reaches_no_database_and_no_http() {
    let graph = Graph::load();
    // The walk sees what it looks for: the daemon does reach SQLite and axum.
    let daemon: Vec<String> = graph.reach("meshd", &[]).into_iter().map(|(n, _)| n).collect();
    assert!(daemon.iter().any(|n| n == "rusqlite") && daemon.iter().any(|n| n == "axum"));
    let wrong: Vec<String> = graph
        .reach("meshd-wg", &[])
        .into_iter()
        .filter(|(name, _)| NOT_DATA_PLANE.contains(&name.as_str()))
        .map(|(_, path)| path.join(" -> "))
        .collect();
    assert!(wrong.is_empty(), "meshd-wg depends on:\n{}", wrong.join("\n"));
}
