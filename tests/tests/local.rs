//! The local surface of a running daemon, end to end: its state directory held by one process, its
//! admin API against idle connections under a low open-files limit, `meshd join` to a closed port, and
//! the controller's own node named by the configuration. Each daemon is `meshd up` in a namespace of
//! its own (see `meshd_tests::mesh`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use meshd_tests::e2e;
use meshd_tests::ingress::Stopwatch;
use meshd_tests::mesh::{self, Mesh, THREE_NODES, ping_mesh};
use meshd_tests::process::wait_until;

/// The admin API's deadline for a request head, which is also its keep-alive idle timeout
/// (`meshd::api::listener::HEAD_TIMEOUT`).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections the API serves at once on one listener (`meshd::api::listener::MAX_CONNECTIONS`).
const MAX_CONNECTIONS: usize = 64;

/// 1. A second `meshd up` on the state directory of a running one exits at once with status 1 and a
///    message naming the first one's pid; the first keeps its interface, its API socket and its
///    network.
#[test]
fn a_second_daemon_on_the_same_state_directory_exits_naming_the_first() {
    e2e(|lab| {
        let mut mesh = Mesh::start(lab, &[]);
        let first = mesh.ctl.pid().expect("the controller runs");
        let started = Stopwatch::start();
        let second = mesh.ctl.cli(&["up"]);
        assert_eq!(second.status.code(), Some(1), "{second}");
        assert!(
            second.stderr.contains(&format!("pid {first}")) && second.stderr.contains("in use"),
            "the refusal must name the running daemon's pid {first}: {second}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{second}");
        assert!(
            mesh.ctl.exited().is_none(),
            "the first daemon stopped:\n{}",
            mesh.ctl.log_tail(30)
        );
        assert!(mesh.ctl.netns().has_link(mesh.ctl.interface()));
        // Its socket is still there and answers, with the network it had.
        let networks = mesh.ctl.cli_ok(&["network", "list"]);
        assert!(networks.contains(mesh::NETWORK), "{networks}");
        assert_eq!(mesh::mesh_addrs(&mesh.ctl.status()).0, Some(mesh::mesh_host(1)));
    });
}

/// Whether the server closed `stream` (end of stream or a reset); never waits.
fn closed(mut stream: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// 2. With the daemon's open-files limit at 256, 1,100 idle TCP connections to its API: the ones over
///    the cap are closed at once, the rest at the head timeout; meanwhile the daemon keeps running,
///    `meshd status` answers (over the Unix socket) and the mesh passes pings; afterwards the TCP API
///    answers again.
#[test]
fn idle_api_connections_under_a_low_file_limit_leave_the_daemon_running() {
    e2e(|lab| {
        let mut mesh = Mesh::start(lab, &THREE_NODES[..1]);
        let token = mesh.token(&[]);
        mesh.join_ok(0, &token);
        let pid = mesh.ctl.pid().expect("the controller runs").to_string();
        mesh.ctl
            .netns()
            .run(&["prlimit", "--pid", &pid, "--nofile=256:256"]);

        let api: SocketAddr = "127.0.0.1:7450".parse().expect("an address");
        let count = 1100;
        let connections: Vec<TcpStream> = mesh.ctl.netns().enter(|| {
            (0..count)
                .map(|i| {
                    let stream = TcpStream::connect_timeout(&api, Duration::from_secs(2))
                        .unwrap_or_else(|e| panic!("connection {i} to the API: {e}"));
                    stream.set_nonblocking(true).expect("non-blocking");
                    stream
                })
                .collect()
        });
        let opened = Stopwatch::start();
        let mut is_closed = vec![false; count];
        let mut count_closed = || {
            for (c, done) in connections.iter().zip(is_closed.iter_mut()) {
                *done = *done || closed(c);
            }
            is_closed.iter().filter(|d| **d).count()
        };
        wait_until(
            "the connections over the API's cap to be closed",
            Duration::from_secs(3),
            || count_closed() >= count - MAX_CONNECTIONS,
        );
        assert!(opened.elapsed() < HEAD_TIMEOUT);

        // The daemon works on: status over the socket, pings over the mesh.
        let n1 = mesh.node("n1");
        mesh.ctl.cli_ok(&["status"]);
        ping_mesh(n1, &mesh.ctl, mesh.ctl.mesh_v4().into());
        ping_mesh(&mesh.ctl, n1, n1.mesh_v6().into());
        assert!(
            mesh.ctl.exited().is_none(),
            "the daemon stopped:\n{}",
            mesh.ctl.log_tail(40)
        );

        wait_until(
            "every idle connection to be closed",
            HEAD_TIMEOUT + Duration::from_secs(5),
            || count_closed() == count,
        );
        drop(connections);
        assert!(mesh.ctl.netns().has_link(mesh.ctl.interface()));
        assert!(mesh.ctl.exited().is_none(), "{}", mesh.ctl.log_tail(40));
        let log = mesh.ctl.log_tail(400);
        assert!(
            log.contains("over the cap: all 64 slots taken"),
            "the refused connections must be reported in the log:\n{log}"
        );
        // The TCP API answers a real request again, with the token.
        let token_path = mesh
            .ctl
            .config_path()
            .with_file_name("ctl-state")
            .join("api-token");
        let api_token = std::fs::read_to_string(&token_path).expect("the API token");
        let status = mesh.ctl.netns().enter(|| {
            let mut stream =
                TcpStream::connect_timeout(&api, Duration::from_secs(2)).expect("the API answers TCP");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("a timeout");
            write!(
                stream,
                "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                 Authorization: Bearer {}\r\n\r\n",
                api_token.trim()
            )
            .expect("the request goes out");
            let mut response = String::new();
            stream
                .read_to_string(&mut response)
                .expect("the response comes back");
            response
        });
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(status.contains("\"public_key\""), "{status}");
    });
}

/// 3. `meshd join` to a port where nothing listens fails within 3 s (the controller's host answers
///    ICMP port unreachable) with a message naming the port; a join to the right port right after
///    succeeds (the daemon dropped the failed one).
#[test]
fn join_to_a_closed_port_fails_at_once_and_the_right_port_works_right_after() {
    e2e(|lab| {
        let mut mesh = Mesh::start(lab, &THREE_NODES[..1]);
        let token = mesh.token(&[]);
        let mut wrong = Mesh::controller_endpoint();
        wrong.set_port(mesh::PORT + 1);
        let started = Stopwatch::start();
        let out = mesh.nodes[0].join(&token, wrong);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(1), "{out}");
        assert!(
            out.stderr.contains("port unreachable") && out.stderr.contains(&wrong.port().to_string()),
            "{out}"
        );
        assert!(took < Duration::from_secs(3), "took {took:?}: {out}");
        mesh.join_ok(0, &token);
    });
}

/// 4. `[controller] name = "border"`: members see the controller's own node under that name.
#[test]
fn the_configuration_names_the_controllers_own_node() {
    e2e(|lab| {
        let mut mesh = Mesh::start_with(lab, &THREE_NODES[..1], "name = \"border\"\n");
        let token = mesh.token(&[]);
        mesh.join_ok(0, &token);
        let ctl_key = mesh.ctl.public_key();
        let n1 = mesh.node("n1");
        let mut last = String::new();
        wait_until(
            "n1 to see the controller's node as \"border\"",
            Duration::from_secs(10),
            || {
                let peer = n1.peer_status(&ctl_key);
                last = format!("{peer:?}");
                peer.is_some_and(|p| p.get("name").and_then(|n| n.as_str()) == Some("border"))
            },
        );
        let member = mesh.member("border");
        assert_eq!(member.str_field("public_key"), ctl_key, "{member}");
        let text = n1.cli_ok(&["status"]);
        assert!(text.contains("border"), "{text}\n{last}");
    });
}
