//! The admin API end to end over a real loopback socket: `serve` with a temporary controller store and
//! a stand-in for the mesh task, driven by the CLI's own client.

mod api_harness;

use std::sync::atomic::Ordering;

use api_harness::{NodeTask, Server, sample_status};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use meshd::api::controller::{CreateNetwork, CreateToken, TokenState};
use meshd::api::node::{JoinFailureKind, JoinRequest};
use meshd::api::{ApiClient, ApiToken, ClientError, encode_key};
use meshd::sys::clock;
use meshd_crypto::PublicKey;

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

    // Two members with one name: the name is ambiguous, the keys are not.
    let other = PublicKey::from_bytes([0x22; 32]);
    server.join(&other, "laptop");
    let (status, message) = api_error(client.deauthorize("lab", "laptop"));
    assert_eq!(status, 400);
    assert!(
        message.contains(&laptop_b64) && message.contains("public key"),
        "{message}"
    );

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
    assert_eq!(client.status().unwrap(), sample_status());
}

#[test]
fn node_routes_go_to_the_mesh_task() {
    let server = Server::start("node", false, NodeTask::Answers);
    let client = server.client();
    assert_eq!(client.status().unwrap(), sample_status());

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
