//! The admin API end to end over a real loopback socket and the Unix socket: `serve` with a temporary
//! controller store and a stand-in for the mesh task, driven by the CLI's own client; and raw
//! connections that misbehave (idle, over the cap, slow), bounded in count and time.

mod api_harness;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::atomic::Ordering;
use std::time::Duration;

use api_harness::{NodeTask, Server, expected_status, sample_status};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use meshd::api::controller::{CreateNetwork, CreateToken, TokenState};
use meshd::api::listener::{HEAD_TIMEOUT, MAX_CONNECTIONS};
use meshd::api::node::{JoinFailureKind, JoinRequest};
use meshd::api::{ApiClient, ApiToken, ClientError, encode_key};
use meshd_crypto::PublicKey;
use meshd_wg::sys::clock;

fn lab() -> CreateNetwork {
    CreateNetwork {
        name: "lab".into(),
        ipv4: "10.77.0.0/24".into(),
        ipv6: Some("fd77::/64".into()),
        mtu: None,
    }
}

/// The status and message of an API error.
fn api_error<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, message }) => (status, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[test]
fn requests_without_the_right_token_are_refused() {
    let server = Server::start("auth", true, NodeTask::Answers);
    for client in [
        ApiClient::with_bearer(server.addr, None),
        ApiClient::with_bearer(server.addr, Some("0000000000000000000000000000000000000000")),
    ] {
        for path in ["/v1/networks", "/v1/status", "/no/such/route"] {
            let response = client.send("GET", path, None).unwrap();
            assert_eq!(response.status, 401, "{path}");
            assert_eq!(response.header("www-authenticate"), Some("Bearer"));
            let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            let message = body["error"].as_str().unwrap();
            assert!(message.contains("api-token"), "{message}");
        }
        let (status, _) = api_error(client.create_network(&lab()));
        assert_eq!(status, 401);
    }
    assert!(server.store.lock().unwrap().networks().unwrap().is_empty());
    let token = ApiToken::load(&server.token_path).unwrap();
    let right = ApiClient::with_bearer(server.addr, Some(token.expose()));
    assert!(right.networks().unwrap().is_empty());
}

#[test]
fn networks_are_created_listed_and_shown() {
    let server = Server::start("networks", true, NodeTask::Answers);
    let client = server.client();
    let before = server.changes.load(Ordering::SeqCst);
    let created = client.create_network(&lab()).unwrap();
    assert_eq!(created.name, "lab");
    assert_eq!(created.ipv4, "10.77.0.0/24");
    assert_eq!(created.ipv6.as_deref(), Some("fd77::/64"));
    assert_eq!(created.mtu, 1376);
    assert_eq!(created.controller_ipv4, Some("10.77.0.1".parse().unwrap()));
    assert_eq!(created.member_count, 0);
    server.wait_for_change(before);

    let response = client
        .send(
            "POST",
            "/v1/networks",
            Some(br#"{"name":"v4only","ipv4":"10.78.0.0/16","mtu":1300}"#),
        )
        .unwrap();
    assert_eq!(response.status, 201);

    let names: Vec<String> = client.networks().unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["lab", "v4only"]);

    server.join(&PublicKey::from_bytes([2; 32]), "laptop");
    let shown = client.network("lab").unwrap();
    assert_eq!((shown.member_count, shown.authorized_count), (1, 1));
    assert_eq!((shown.token_count, shown.usable_token_count), (1, 0));

    let (status, message) = api_error(client.create_network(&lab()));
    assert_eq!(status, 409);
    assert!(message.contains("exists already"), "{message}");

    let (status, message) = api_error(client.network("nope"));
    assert_eq!(status, 404);
    assert!(message.contains("meshd network list"), "{message}");
}

#[test]
fn bad_network_requests_say_what_to_fix() {
    let server = Server::start("bad-networks", true, NodeTask::Answers);
    let client = server.client();
    let cases: [(CreateNetwork, &str); 5] = [
        (
            CreateNetwork {
                ipv4: "10.77.0.5/24".into(),
                ..lab()
            },
            "did you mean \"10.77.0.0/24\"",
        ),
        (
            CreateNetwork {
                ipv4: "10.77.0.0".into(),
                ..lab()
            },
            "CIDR",
        ),
        (
            CreateNetwork {
                ipv6: Some("10.0.0.0/8".into()),
                ..lab()
            },
            "`ipv6`",
        ),
        (
            CreateNetwork {
                mtu: Some(1000),
                ..lab()
            },
            "MTU",
        ),
        (
            CreateNetwork {
                name: "has space".into(),
                ..lab()
            },
            "network name",
        ),
    ];
    for (request, needle) in cases {
        let (status, message) = api_error(client.create_network(&request));
        assert_eq!(status, 400, "{message}");
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
    for (body, needle) in [
        (&br#"{"name":"lab"}"#[..], "missing field `ipv4`"),
        (
            br#"{"name":"lab","ipv4":"10.0.0.0/24","color":"red"}"#,
            "unknown field `color`",
        ),
        (b"{not json", "not what this route takes"),
    ] {
        let response = client.send("POST", "/v1/networks", Some(body)).unwrap();
        assert_eq!(response.status, 400);
        let error: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
    assert!(client.networks().unwrap().is_empty());
}

#[test]
fn tokens_are_created_listed_and_revoked() {
    let server = Server::start("tokens", true, NodeTask::Answers);
    let client = server.client();
    client.create_network(&lab()).unwrap();

    let single = client.create_token("lab", &CreateToken::default()).unwrap();
    assert!(single.token.starts_with("meshd1-"), "{}", single.token);
    assert_eq!(single.info.max_uses, Some(1));
    assert_eq!(single.info.expires, None);
    assert_eq!(single.info.state, TokenState::Usable);
    assert!(!format!("{single:?}").contains(&single.token));

    let expiring = client
        .create_token(
            "lab",
            &CreateToken {
                uses: Some(5),
                expires_in_secs: Some(3600),
                ..CreateToken::default()
            },
        )
        .unwrap();
    let expires = expiring.info.expires.unwrap();
    assert!(
        (3590..=3610).contains(&(expires - expiring.info.created)),
        "{expires}"
    );
    assert_eq!(expiring.info.uses_left, Some(5));

    // An empty body is a single-use token too.
    let response = client.send("POST", "/v1/networks/lab/tokens", None).unwrap();
    assert_eq!(response.status, 201);
    let unlimited = client
        .create_token(
            "lab",
            &CreateToken {
                unlimited: true,
                ..CreateToken::default()
            },
        )
        .unwrap();
    assert_eq!(unlimited.info.max_uses, None);

    let listed = client.tokens("lab").unwrap();
    assert_eq!(listed.len(), 4);
    // No secret in a listing.
    let raw = client.send("GET", "/v1/networks/lab/tokens", None).unwrap();
    let text = String::from_utf8(raw.body).unwrap();
    for secret in [&single.token, &expiring.token, &unlimited.token] {
        assert!(!text.contains(&secret[7..]), "a listing holds a token's secret");
    }
    assert!(!text.contains("hash"), "{text}");

    let revoked = client.revoke_token(&single.info.id).unwrap();
    assert!(revoked.revoked);
    assert_eq!(revoked.state, TokenState::Revoked);
    let state_of = |id: &str| {
        client
            .tokens("lab")
            .unwrap()
            .into_iter()
            .find(|t| t.id == id)
            .unwrap()
            .state
    };
    assert_eq!(state_of(&single.info.id), TokenState::Revoked);
    let key = PublicKey::from_bytes([3; 32]);
    let refused = server
        .store
        .lock()
        .unwrap()
        .join(&single.token, &key, "x", clock::wall());
    assert!(refused.unwrap_err().to_string().contains("revoked"));

    let bad_requests = [
        CreateToken {
            uses: Some(0),
            ..CreateToken::default()
        },
        CreateToken {
            uses: Some(2),
            unlimited: true,
            ..CreateToken::default()
        },
        CreateToken {
            expires_in_secs: Some(0),
            ..CreateToken::default()
        },
    ];
    for request in bad_requests {
        let (status, message) = api_error(client.create_token("lab", &request));
        assert_eq!(status, 400, "{message}");
    }
    let (status, message) = api_error(client.revoke_token("xyz"));
    assert_eq!(status, 400);
    assert!(message.contains("16 hex digits"), "{message}");
    let (status, _) = api_error(client.revoke_token("0000000000000000"));
    assert_eq!(status, 404);
    let (status, _) = api_error(client.tokens("nope"));
    assert_eq!(status, 404);
    let (status, _) = api_error(client.create_token("nope", &CreateToken::default()));
    assert_eq!(status, 404);
}

#[test]
fn members_are_listed_shown_authorized_and_removed() {
    let server = Server::start("members", true, NodeTask::Answers);
    let client = server.client();
    client.create_network(&lab()).unwrap();
    // 0xfb bytes make a base64 key with both '+' and '/'.
    let laptop = PublicKey::from_bytes([0xfb; 32]);
    let phone = PublicKey::from_bytes([0x11; 32]);
    server.join(&laptop, "laptop");
    server.join(&phone, "phone");
    let laptop_b64 = encode_key(&laptop);
    assert!(
        laptop_b64.contains('+') && laptop_b64.contains('/'),
        "{laptop_b64}"
    );

    let members = client.members("lab").unwrap();
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["laptop", "phone"]);
    assert_eq!(members[0].public_key, laptop_b64);
    assert_eq!(members[0].ipv4.to_string(), "10.77.0.2");
    assert_eq!(members[0].ipv6.map(|a| a.to_string()).as_deref(), Some("fd77::2"));
    assert!(members[0].authorized);
    assert!(members[0].last_seen.is_none());

    // By name, by standard base64 (escaped by the client), by URL-safe base64 as is.
    let by_name = client.member("lab", "laptop").unwrap();
    assert_eq!(client.member("lab", &laptop_b64).unwrap(), by_name);
    let url_safe = URL_SAFE_NO_PAD.encode(laptop.as_bytes());
    let raw = client
        .send("GET", &format!("/v1/networks/lab/members/{url_safe}"), None)
        .unwrap();
    assert_eq!(raw.status, 200);

    let before = server.changes.load(Ordering::SeqCst);
    let cut = client.deauthorize("lab", "laptop").unwrap();
    assert!(!cut.authorized);
    server.wait_for_change(before);
    assert!(
        !server
            .store
            .lock()
            .unwrap()
            .member("lab", &laptop)
            .unwrap()
            .authorized
    );

    let before = server.changes.load(Ordering::SeqCst);
    let back = client.authorize("lab", &laptop_b64).unwrap();
    assert!(back.authorized);
    assert_eq!(
        back.ipv4, by_name.ipv4,
        "authorizing again restores the addresses"
    );
    server.wait_for_change(before);

    // An ingress, and back; the change reaches the maps like authorization does.
    assert!(!back.ingress);
    let before = server.changes.load(Ordering::SeqCst);
    assert!(client.set_ingress("lab", "laptop", true).unwrap().ingress);
    server.wait_for_change(before);
    assert!(client.member("lab", "laptop").unwrap().ingress);
    assert!(!client.set_ingress("lab", "laptop", false).unwrap().ingress);
    let (status, _) = api_error(client.set_ingress("lab", "nobody", true));
    assert_eq!(status, 404);

    let before = server.changes.load(Ordering::SeqCst);
    let removed = client.remove_member("lab", "phone").unwrap();
    assert_eq!(removed.name, "phone");
    server.wait_for_change(before);
    let (status, message) = api_error(client.member("lab", "phone"));
    assert_eq!(status, 404);
    assert!(message.contains("meshd member list"), "{message}");
    let (status, _) = api_error(client.member("lab", &encode_key(&phone)));
    assert_eq!(status, 404);
    assert_eq!(client.members("lab").unwrap().len(), 1);

    // A second machine asking for the same name gets another; each name, key and address names
    // exactly one member.
    let other = PublicKey::from_bytes([0x22; 32]);
    server.join(&other, "Laptop\u{202E}");
    let second = client.member("lab", &encode_key(&other)).unwrap();
    assert_eq!(second.name, "laptop-2");
    assert_eq!(second.label, "Laptop");
    assert_eq!(client.member("lab", "laptop-2").unwrap(), second);
    assert_eq!(client.member("lab", "LAPTOP-2").unwrap(), second);
    assert_eq!(client.member("lab", &second.ipv4.to_string()).unwrap(), second);
    let v6 = second.ipv6.unwrap().to_string();
    assert_eq!(client.member("lab", &v6).unwrap(), second);
    let cut = client.deauthorize("lab", "laptop").unwrap();
    assert_eq!(cut.public_key, laptop_b64);
    let (status, message) = api_error(client.member("lab", "10.77.0.200"));
    assert_eq!(status, 404);
    assert!(message.contains("10.77.0.200"), "{message}");

    let (status, _) = api_error(client.members("nope"));
    assert_eq!(status, 404);
    let (status, _) = api_error(client.authorize("nope", "laptop"));
    assert_eq!(status, 404);
}

#[test]
fn controller_routes_need_the_controller() {
    let server = Server::start("no-controller", false, NodeTask::Answers);
    let client = server.client();
    for result in [
        client.networks().map(drop),
        client.create_network(&lab()).map(drop),
        client.members("lab").map(drop),
        client.revoke_token("0000000000000000").map(drop),
    ] {
        let (status, message) = api_error(result);
        assert_eq!(status, 503);
        assert!(message.contains("[controller] enabled = true"), "{message}");
    }
    // The node routes still work.
    assert_eq!(client.status().unwrap(), expected_status());
}

#[test]
fn node_routes_go_to_the_mesh_task() {
    let server = Server::start("node", false, NodeTask::Answers);
    let client = server.client();
    assert_eq!(client.status().unwrap(), expected_status());

    let request = |token: &str| JoinRequest {
        token: token.into(),
        controller: "192.0.2.1:51820".parse().unwrap(),
        name: Some("laptop".into()),
    };
    let joined = client.join(&request("meshd1-good")).unwrap();
    assert_eq!(joined.name, "laptop");
    assert_eq!(joined.controller, "192.0.2.1:51820".parse().unwrap());

    for (token, status, kind) in [
        ("expired", 403, JoinFailureKind::Expired),
        ("unreachable", 504, JoinFailureKind::Unreachable),
        ("again", 409, JoinFailureKind::AlreadyJoined),
    ] {
        match client.join(&request(token)) {
            Err(ClientError::Join { status: s, failure }) => {
                assert_eq!((s, failure.kind), (status, kind), "{token}");
                assert!(!failure.message.is_empty());
            }
            other => panic!("{token}: {other:?}"),
        }
    }
    let response = client
        .send("POST", "/v1/join", Some(b"{\"token\":\"x\"}"))
        .unwrap();
    assert_eq!(response.status, 400);
}

#[test]
fn node_routes_without_a_mesh_task_are_unavailable() {
    let server = Server::start("node-gone", false, NodeTask::Gone);
    let (status, message) = api_error(server.client().status());
    assert_eq!(status, 503);
    assert!(message.contains("meshd up"), "{message}");
}

#[test]
fn unknown_routes_and_methods_answer_in_json() {
    let server = Server::start("routes", true, NodeTask::Answers);
    let client = server.client();
    let response = client.send("GET", "/v2/everything", None).unwrap();
    assert_eq!(response.status, 404);
    assert!(String::from_utf8_lossy(&response.body).contains("docs/api.md"));
    let response = client.send("PUT", "/v1/networks", Some(b"{}")).unwrap();
    assert_eq!(response.status, 405);
    assert!(String::from_utf8_lossy(&response.body).contains("does not take PUT"));
}

#[test]
fn a_stopped_daemon_is_named_with_a_hint() {
    // Bind and drop to get a port nobody listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let error = ApiClient::with_bearer(addr, Some("x")).networks().unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(&addr.to_string()) && text.contains("meshd up"),
        "{text}"
    );
}

#[test]
fn status_lists_peers_by_name_then_key() {
    let server = Server::start("sorted", false, NodeTask::Answers);
    assert_ne!(
        sample_status().peers,
        expected_status().peers,
        "the stand-in's peers should be out of order"
    );
    for client in [server.client(), server.unix_client()] {
        let names: Vec<(String, String)> = client
            .status()
            .unwrap()
            .peers
            .into_iter()
            .map(|p| (p.name, p.public_key))
            .collect();
        let expected: Vec<(String, String)> = expected_status()
            .peers
            .into_iter()
            .map(|p| (p.name, p.public_key))
            .collect();
        assert_eq!(names, expected);
    }
}

// ---- connections: the Unix socket, the cap, the head timeout ----

#[test]
fn the_unix_socket_is_private_and_needs_no_token() {
    let server = Server::start("unix", true, NodeTask::Answers);
    let meta = std::fs::symlink_metadata(&server.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // No token on the socket, and the controller routes work too.
    let client = server.unix_client();
    assert_eq!(client.status().unwrap(), expected_status());
    client.create_network(&lab()).unwrap();
    assert_eq!(client.networks().unwrap().len(), 1);
    // TCP still needs it.
    let (status, _) = api_error(ApiClient::with_bearer(server.addr, None).networks());
    assert_eq!(status, 401);
    assert_eq!(server.unix_counters.refused.load(Ordering::Relaxed), 0);
}

/// A TCP connection to `server` that sends nothing, non-blocking so that [`closed`] can look at it.
fn idle_connection(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr).unwrap();
    stream.set_nonblocking(true).unwrap();
    stream
}

/// Whether the server closed `stream` (end of stream or a reset), reading whatever it sent first;
/// never waits.
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

/// Polls every 20 ms until `cond` holds, failing with `what` after `limit`.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = clock::now();
    while !cond() {
        assert!(clock::now() - start < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    clock::now() - start
}

#[test]
fn idle_connections_over_the_cap_are_closed_at_once_the_rest_at_the_head_timeout() {
    let server = Server::start("idle", false, NodeTask::Answers);
    let over = 36;
    let start = clock::now();
    let connections: Vec<TcpStream> = (0..MAX_CONNECTIONS + over)
        .map(|_| idle_connection(&server))
        .collect();
    let mut is_closed = vec![false; connections.len()];
    let mut count_closed = || {
        for (c, done) in connections.iter().zip(is_closed.iter_mut()) {
            *done = *done || closed(c);
        }
        is_closed.iter().filter(|d| **d).count()
    };
    // The ones over the cap go at once; the others stay until the head timeout.
    wait_until(
        "the connections over the cap are closed",
        Duration::from_secs(2),
        || count_closed() >= over,
    );
    assert_eq!(
        count_closed(),
        over,
        "more than the connections over the cap were closed"
    );
    assert!(clock::now() - start < HEAD_TIMEOUT);

    // Meanwhile the Unix socket, which has its own cap, answers; a new TCP connection is closed at
    // once rather than left hanging.
    assert_eq!(server.unix_client().status().unwrap(), expected_status());
    let asked = clock::now();
    assert!(server.client().status().is_err());
    assert!(clock::now() - asked < Duration::from_secs(2));

    // Every idle connection is gone by the head timeout, and TCP answers again.
    let total = connections.len();
    wait_until(
        "every idle connection is closed",
        HEAD_TIMEOUT + Duration::from_secs(3),
        || count_closed() == total,
    );
    assert!(
        clock::now() - start >= HEAD_TIMEOUT - Duration::from_millis(200),
        "idle connections under the cap were closed before the head timeout"
    );
    assert_eq!(server.client().status().unwrap(), expected_status());
}

#[test]
fn a_kept_alive_connection_is_closed_when_idle_for_the_head_timeout() {
    let server = Server::start("keepalive", false, NodeTask::Answers);
    let token = ApiToken::load(&server.token_path).unwrap();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
        token.expose()
    )
    .unwrap();
    // Read the response (its head and Content-Length body), which leaves the connection idle.
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let complete = |r: &[u8]| {
        let Some(end) = r.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&r[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        r.len() >= end + 4 + len
    };
    while !complete(&response) {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the response was complete");
        response.extend_from_slice(&buf[..n]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    let answered = clock::now();
    stream.set_nonblocking(true).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(!closed(&stream), "keep-alive was not honoured");
    wait_until(
        "the idle kept-alive connection is closed",
        HEAD_TIMEOUT + Duration::from_secs(2),
        || closed(&stream),
    );
    assert!(clock::now() - answered >= HEAD_TIMEOUT - Duration::from_millis(200));
}

#[test]
fn a_request_head_sent_a_byte_a_second_is_cut_at_the_head_timeout() {
    let server = Server::start("slowloris", false, NodeTask::Answers);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_nonblocking(true).unwrap();
    let head = b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let bytes = head.iter().chain(std::iter::repeat(&b'a'));
    let start = clock::now();
    let limit = HEAD_TIMEOUT + Duration::from_secs(3);
    let mut sent = 0;
    for &byte in bytes {
        if stream.write(&[byte]).is_err() || closed(&stream) {
            break;
        }
        sent += 1;
        assert!(
            clock::now() - start < limit,
            "a head still arriving after {limit:?} ({sent} bytes) was not cut"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let elapsed = clock::now() - start;
    assert!(
        elapsed >= HEAD_TIMEOUT - Duration::from_millis(200) && sent >= 4,
        "cut after {elapsed:?} and {sent} bytes, before the head timeout"
    );
    // The server is fine.
    assert_eq!(server.client().status().unwrap(), expected_status());
}

#[test]
fn a_request_body_that_trickles_is_answered_408_at_the_body_timeout() {
    let server = Server::start("slow-body", true, NodeTask::Answers);
    let token = ApiToken::load(&server.token_path).unwrap();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "POST /v1/networks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 64\r\n\r\n{{",
        token.expose()
    )
    .unwrap();
    stream.set_nonblocking(true).unwrap();
    let start = clock::now();
    let limit = meshd::api::server::BODY_TIMEOUT + Duration::from_secs(3);
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if response.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
                assert!(clock::now() - start < limit, "no answer to a trickling body");
                let _ = stream.write(b" ");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(clock::now() - start >= meshd::api::server::BODY_TIMEOUT - Duration::from_millis(200));
    assert!(server.client().networks().unwrap().is_empty());
}

#[test]
fn a_request_head_over_the_limit_is_refused() {
    let server = Server::start("big-head", false, NodeTask::Answers);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let filler = "a".repeat(meshd::api::listener::MAX_HEAD);
    // The server may close before all of it is written; what it answered is read below.
    let _ = write!(
        stream,
        "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nX-Big: {filler}\r\n\r\n"
    );
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert_eq!(server.client().status().unwrap(), expected_status());
}

#[test]
fn the_unix_socket_refuses_other_users_even_when_its_mode_lets_them_in() {
    use std::os::unix::process::CommandExt;
    let server = Server::start("unix-other-user", false, NodeTask::Answers);
    // An operator's mistake: the directory and the socket opened to everyone.
    std::fs::set_permissions(&server.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&server.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = server.dir.join("other.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\napi_tcp = false\n",
            server.dir.to_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(["--config", config.to_str().unwrap(), "status"])
        .env("LOG_LEVEL", "silent")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("router"), "{stderr}");
    assert_eq!(
        server.unix_counters.refused.load(Ordering::Relaxed),
        1,
        "{stderr}"
    );
    // The daemon's user still gets in.
    assert_eq!(server.unix_client().status().unwrap(), expected_status());
}

#[test]
fn networks_are_deleted_only_without_members_unless_forced() {
    let server = Server::start("delete-network", true, NodeTask::Answers);
    let client = server.client();
    client.create_network(&lab()).unwrap();
    server.join(&PublicKey::from_bytes([0x33; 32]), "a");
    let (status, message) = api_error(client.delete_network("lab", false));
    assert_eq!(status, 409);
    assert!(message.contains("--force"), "{message}");
    assert_eq!(client.networks().unwrap().len(), 1);
    let before = server.changes.load(Ordering::SeqCst);
    let deleted = client.delete_network("lab", true).unwrap();
    assert_eq!((deleted.name.as_str(), deleted.members_removed), ("lab", 1));
    server.wait_for_change(before);
    assert!(client.networks().unwrap().is_empty());
    let (status, _) = api_error(client.delete_network("lab", true));
    assert_eq!(status, 404);
    // A block that overlaps another network's, or a special one, says which.
    client.create_network(&lab()).unwrap();
    let mut overlapping = lab();
    overlapping.name = "second".into();
    overlapping.ipv4 = "10.77.0.0/16".into();
    let (status, message) = api_error(client.create_network(&overlapping));
    assert_eq!(status, 400);
    assert!(
        message.contains("\"lab\"") && message.contains("overlaps"),
        "{message}"
    );
    overlapping.ipv4 = "127.0.0.0/8".into();
    let (status, message) = api_error(client.create_network(&overlapping));
    assert_eq!(status, 400);
    assert!(message.contains("loopback"), "{message}");
    // A network id is shown.
    assert_eq!(client.network("lab").unwrap().id.len(), 32);
}

#[test]
fn leaving_goes_to_the_mesh_task() {
    let server = Server::start("leave", false, NodeTask::Answers);
    let left = server.client().leave().unwrap();
    assert_eq!(left.network, "lab");
}
