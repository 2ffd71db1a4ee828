//! `meshd lab down`: stops every daemon of the lab (meshd first, then BIRD: SIGTERM, a bounded wait,
//! SIGKILL), whatever else still runs in its namespaces, deletes the namespaces and removes the
//! directory. It works on a lab that `up` left half-built, and says so when there is nothing to do.

use std::process::Command;

use anyhow::bail;

use super::command::{self, IP};
use super::process::{self, STOP_GRACE};
use super::{LabDir, bird, mesh, require_root, topology};

/// Tears the lab down; `say` gets one line per thing done. Returns whether there was anything.
pub fn down(dir: &LabDir, say: &mut dyn FnMut(&str)) -> anyhow::Result<bool> {
    require_root()?;
    let namespaces = topology::existing();
    let is_lab = dir.is_lab();
    if namespaces.is_empty() && !is_lab {
        say(&format!(
            "no lab is up (no {} namespaces, no lab in {}); nothing to do",
            topology::NAMESPACES.join("/"),
            dir.root().display()
        ));
        return Ok(false);
    }
    let mut failures = Vec::new();

    // meshd before BIRD: a stopping ingress withdraws its announcement itself.
    let daemons: [Vec<(String, Option<u32>)>; 2] = [
        mesh::HOSTS
            .iter()
            .map(|h| (format!("meshd on {}", h.name), mesh::running(dir, h)))
            .collect(),
        bird::ROUTERS
            .iter()
            .map(|r| (format!("BIRD on {}", r.ns), bird::running(dir, r)))
            .collect(),
    ];
    for group in daemons {
        let running: Vec<(String, u32)> = group
            .into_iter()
            .filter_map(|(name, pid)| Some((name, pid?)))
            .collect();
        let pids: Vec<u32> = running.iter().map(|(_, pid)| *pid).collect();
        for ((name, _), result) in running.iter().zip(process::stop_all(&pids, STOP_GRACE)) {
            match result {
                Ok(stopped) => say(&format!("stopped {name}: {stopped}")),
                Err(e) => failures.push(format!("cannot stop {name}: {e:#}")),
            }
        }
    }

    if !namespaces.is_empty() {
        command::require(&[IP])?;
    }
    for ns in &namespaces {
        let leftovers = pids_in(ns);
        if !leftovers.is_empty() {
            for (pid, result) in leftovers.iter().zip(process::stop_all(&leftovers, STOP_GRACE)) {
                let what = process::cmdline(*pid).unwrap_or_default();
                match result {
                    Ok(stopped) => say(&format!("stopped `{what}` left in {ns}: {stopped}")),
                    Err(e) => failures.push(format!("cannot stop pid {pid} in {ns}: {e:#}")),
                }
            }
        }
    }
    let mut deleted = Vec::new();
    for ns in &namespaces {
        match topology::delete(ns) {
            Ok(()) => deleted.push(*ns),
            Err(e) => failures.push(format!("cannot delete namespace {ns}: {e:#}")),
        }
    }
    if !deleted.is_empty() {
        say(&format!("deleted namespaces {}", deleted.join(", ")));
    }

    if is_lab {
        match std::fs::remove_dir_all(dir.root()) {
            Ok(()) => say(&format!("removed {}", dir.root().display())),
            Err(e) => failures.push(format!("cannot remove {}: {e}", dir.root().display())),
        }
    } else if dir.root().exists() {
        say(&format!(
            "left {} alone: it holds no lab (was the lab built with another --dir?)",
            dir.root().display()
        ));
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(true)
}

/// The processes in the namespace `ns` (`ip netns pids`).
fn pids_in(ns: &str) -> Vec<u32> {
    let mut cmd = Command::new(IP.program);
    cmd.args(["netns", "pids", ns]);
    command::run_ok(&mut cmd, command::TIMEOUT)
        .map(|out| out.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}
