//! Membership end to end: a removed node learns it and can come back with a token, a node leaves by
//! itself, and lost or damaged state (a node's key, the controller's key, a truncated controller
//! database) stops `meshd up` with what to do, while the members keep their peers and saved maps
//! (see `meshd_tests::mesh` for the topology and addresses).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshd_tests::json::Value;
use meshd_tests::mesh::{self, Mesh, MeshNode, NETWORK, expect_path, ping_mesh};
use meshd_tests::process::{run_bounded, try_wait_until};
use meshd_tests::{Lab, e2e};

/// Longer than two of the nodes' 5 s polls.
const TWO_POLLS: Duration = Duration::from_secs(12);

fn state_dir(lab: &Lab, node: &str) -> PathBuf {
    lab.dir().join(format!("{node}-state"))
}

/// `meshd up` for a node that is stopped, expected to refuse to start: its exit status and output.
/// A daemon that starts after all is killed when the bound runs out, and the test fails.
#[track_caller]
fn up_refused(node: &MeshNode) -> String {
    let mut cmd = node.netns().command(mesh::meshd_binary());
    cmd.arg("up").arg("--config").arg(node.config_path());
    let out = run_bounded(&mut cmd, Duration::from_secs(8)).unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "meshd up on {} must refuse to start, but it ran ({}):\n{stderr}",
        node.name(),
        out.status
    );
    stderr
}

/// What the node's status says of its membership (`Null` when it has none).
fn membership(node: &MeshNode) -> Value {
    node.status().get("membership").cloned().unwrap_or(Value::Null)
}

#[track_caller]
fn wait_for(what: &str, node: &MeshNode, mut cond: impl FnMut(&Value) -> bool) {
    let mut last = Value::Null;
    let done = try_wait_until(what, Duration::from_secs(10), || {
        last = node.status();
        cond(&last)
    });
    if let Err(e) = done {
        panic!(
            "{e}; {}'s status: {last}\n--- its log ---\n{}",
            node.name(),
            node.log_tail(30)
        );
    }
}

fn has_peer(status: &Value, key: &str) -> bool {
    status
        .array_field("peers")
        .iter()
        .any(|p| p.get("public_key").and_then(Value::as_str) == Some(key))
}

fn interface_addrs(node: &MeshNode) -> String {
    node.netns()
        .run(&["ip", "-o", "address", "show", "dev", node.interface()])
}

/// 1. `meshd member remove n3`: n3 hears it within a second or two, takes its mesh addresses off its
///    interface, forgets its saved membership, says so in its status, and joins again with a new
///    token. `meshd leave` on n2 does the same from the node's side, and a restart does not bring
///    the membership back.
#[test]
fn membership_a_removed_node_comes_back_with_a_token_and_a_node_can_leave() {
    e2e(|lab| {
        let mut mesh = Mesh::three_nodes(lab);
        let n3_v4 = mesh.node("n3").mesh_v4();
        assert!(interface_addrs(mesh.node("n3")).contains(&n3_v4.to_string()));

        mesh.ctl.cli_ok(&["member", "remove", "n3"]);
        let removed_at = mesh::unix_time();
        let n3 = mesh.node("n3");
        wait_for("n3 to hear it was removed", n3, |s| {
            s.get("membership").is_some_and(Value::is_null)
                && s.get("removed_from").and_then(Value::as_str) == Some(NETWORK)
        });
        println!(
            "n3 showed its removal {:.0} ms after `meshd member remove` returned",
            (mesh::unix_time() - removed_at) * 1000.0
        );
        let addrs = interface_addrs(n3);
        assert!(
            !addrs.contains("203.0.113.") && !addrs.contains("2001:db8:1000:"),
            "n3 keeps its mesh addresses after its removal:\n{addrs}"
        );
        assert!(!state_dir(lab, "n3").join("membership.json").exists());
        assert!(!state_dir(lab, "n3").join("map.bin").exists());
        assert!(n3.cli_ok(&["status"]).contains("removed from"));

        let token = mesh.token(&[]);
        let n3 = mesh.node("n3");
        let out = n3.join(&token, Mesh::controller_endpoint());
        assert!(out.success(), "n3 cannot join again after its removal: {out}");
        assert!(out.stdout.contains(&n3_v4.to_string()), "{out}");
        let n1 = mesh.node("n1");
        ping_mesh(n3, n1, IpAddr::V4(n1.mesh_v4()));

        // Leaving from the node's side.
        let n2_key = mesh.node("n2").public_key();
        let left = mesh.nodes[1].cli_ok(&["leave"]);
        assert!(left.contains(NETWORK), "{left}");
        assert!(membership(&mesh.nodes[1]).is_null());
        let members = mesh.members();
        assert!(
            !members.to_string().contains(&n2_key),
            "the controller still lists n2 after it left: {members}"
        );
        wait_for("n1 to drop n2 as a peer", mesh.node("n1"), |s| {
            !has_peer(s, &n2_key)
        });
        mesh.nodes[1].kill9();
        mesh.nodes[1].start();
        assert!(membership(&mesh.nodes[1]).is_null());
        let token = mesh.token(&[]);
        let out = mesh.nodes[1].join(&token, Mesh::controller_endpoint());
        assert!(out.success(), "n2 cannot join again after leaving: {out}");
    });
}

/// 2. Lost and damaged state. A node or a controller whose `node.key` is gone, and a controller
///    whose database was truncated, refuse to start and say how to recover, and make nothing in
///    place of what is lost. A controller started on an empty database all the same (its file
///    removed) tells the nodes it does not know them: they keep their peers, their saved maps and
///    their traffic. The backup taken at the start, put back, brings everything back.
#[test]
fn membership_lost_state_refuses_to_start_and_members_keep_their_peers() {
    e2e(|lab| {
        let mut mesh = Mesh::three_nodes(lab);
        let backup = lab.dir().join("controller-backup.db");
        let done = mesh
            .ctl
            .cli_ok(&["controller", "backup", backup.to_str().expect("a UTF-8 path")]);
        assert!(
            done.contains("1 network,") && done.contains("4 members"),
            "{done}"
        );
        let (n1_v4, n2_v4) = (mesh.node("n1").mesh_v4(), mesh.node("n2").mesh_v4());
        ping_mesh(mesh.node("n1"), mesh.node("n2"), IpAddr::V4(n2_v4));

        // A node without its key.
        let n1_state = state_dir(lab, "n1");
        mesh.nodes[0].kill9();
        let key = n1_state.join("node.key");
        move_file(&key, &n1_state.join("node.key.saved"));
        let refused = up_refused(&mesh.nodes[0]);
        assert!(
            refused.contains("node.key is missing") && refused.contains("--new-key"),
            "{refused}"
        );
        assert!(!key.exists(), "a node key was made in place of the lost one");
        move_file(&n1_state.join("node.key.saved"), &key);
        mesh.nodes[0].start();
        assert_eq!(mesh.nodes[0].mesh_v4(), n1_v4);
        // New sessions with the restarted n1 (it starts them), and a direct path both ways, which is
        // what n1 and the NATed n2 have when the controller's relay no longer serves them below.
        let (n1, n2) = (mesh.node("n1"), mesh.node("n2"));
        ping_mesh(n1, n2, IpAddr::V4(n2_v4));
        ping_mesh(n2, n1, IpAddr::V4(n1_v4));
        expect_path(n1, n2, "direct", Duration::from_secs(10));
        expect_path(n2, n1, "direct", Duration::from_secs(10));

        // The controller without its key, then with its database truncated (and no log beside it).
        let ctl_state = state_dir(lab, "ctl");
        mesh.ctl.kill9();
        let ctl_key = ctl_state.join("node.key");
        move_file(&ctl_key, &ctl_state.join("node.key.saved"));
        let refused = up_refused(&mesh.ctl);
        assert!(refused.contains("node.key is missing"), "{refused}");
        move_file(&ctl_state.join("node.key.saved"), &ctl_key);
        let db = ctl_state.join("controller.db");
        std::fs::write(&db, b"").expect("truncate the database");
        for side in ["controller.db-wal", "controller.db-shm"] {
            let _ = std::fs::remove_file(ctl_state.join(side));
        }
        let refused = up_refused(&mesh.ctl);
        assert!(
            refused.contains("is empty") && refused.contains("backup"),
            "{refused}"
        );
        assert_eq!(std::fs::metadata(&db).map(|m| m.len()).ok(), Some(0));

        // Started anyway on a new, empty database: it knows nobody, and the nodes do not believe it.
        std::fs::remove_file(&db).expect("remove the damaged database");
        mesh.ctl.start();
        std::thread::sleep(TWO_POLLS);
        let (n1, n2) = (mesh.node("n1"), mesh.node("n2"));
        let (n1_key, n2_key) = (n1.public_key(), n2.public_key());
        for (node, other) in [(n1, &n2_key), (n2, &n1_key)] {
            let status = node.status();
            let m = status.field("membership");
            assert_eq!(
                m.get("standing").and_then(Value::as_str),
                Some("disowned"),
                "{} must see that the controller disowns it: {status}",
                node.name()
            );
            assert!(
                has_peer(&status, other),
                "{} lost its peers: {status}",
                node.name()
            );
            assert!(
                state_dir(lab, node.name()).join("map.bin").exists(),
                "{} deleted its saved map",
                node.name()
            );
        }
        ping_mesh(n1, n2, IpAddr::V4(n2_v4));
        ping_mesh(n2, n1, IpAddr::V4(n1_v4));

        // The backup put back: the controller knows everyone again.
        mesh.ctl.kill9();
        for side in ["controller.db-wal", "controller.db-shm"] {
            let _ = std::fs::remove_file(ctl_state.join(side));
        }
        std::fs::copy(&backup, &db).expect("restore the backup");
        mesh.ctl.start();
        wait_for("n1 to be in good standing again", mesh.node("n1"), |s| {
            s.get("membership")
                .and_then(|m| m.get("standing"))
                .and_then(Value::as_str)
                == Some("authorized")
        });
        let n1 = mesh.node("n1");
        ping_mesh(&mesh.ctl, n1, IpAddr::V4(n1_v4));
        let members = mesh.members();
        assert_eq!(members.as_array().map(<[Value]>::len), Some(4), "{members}");
    });
}

#[track_caller]
fn move_file(from: &Path, to: &Path) {
    std::fs::rename(from, to)
        .unwrap_or_else(|e| panic!("cannot move {} to {}: {e}", from.display(), to.display()));
}
