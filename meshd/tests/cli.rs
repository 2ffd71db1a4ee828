//! The `meshd` binary's command line: help texts, exit statuses, and the commands against an
//! in-process admin API.

mod api_harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use api_harness::{NodeTask, Server};
use meshd::api::controller::MemberView;
use meshd_crypto::PublicKey;

fn meshd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(args)
        .env("LOG_LEVEL", "silent")
        .output()
        .expect("running meshd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `meshd --config CONFIG args...` and returns stdout, asserting success.
fn ok(config: &Path, args: &[&str]) -> String {
    let output = run(config, args);
    assert!(
        output.status.success(),
        "meshd {args:?} failed: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn run(config: &Path, args: &[&str]) -> Output {
    let config = config.to_str().unwrap();
    let mut all = vec!["--config", config];
    all.extend_from_slice(args);
    meshd(&all)
}

/// A configuration file pointing the CLI at `server`.
fn config_for(server: &Server) -> PathBuf {
    let path = server.dir.join("meshd.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = {:?}\napi = \"{}\"\n",
            server.dir.to_str().unwrap(),
            server.addr
        ),
    )
    .unwrap();
    path
}

#[test]
fn every_command_has_help_that_names_its_options() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--help"],
            &[
                "--config",
                "up",
                "network",
                "token",
                "member",
                "join",
                "status",
                "Getting started",
            ],
        ),
        (
            &["up", "--help"],
            &["foreground", "LOG_LEVEL", "--config", "Examples"],
        ),
        (&["network", "--help"], &["create", "list", "show"]),
        (
            &["network", "create", "--help"],
            &["--ipv4", "--ipv6", "--mtu", "--json", "CIDR", "Examples"],
        ),
        (&["network", "list", "--help"], &["--json", "Examples"]),
        (&["network", "show", "--help"], &["NAME", "--json", "Examples"]),
        (&["token", "--help"], &["create", "list", "revoke"]),
        (
            &["token", "create", "--help"],
            &[
                "--network",
                "--uses",
                "--unlimited",
                "--expires",
                "DURATION",
                "--json",
                "T=$(meshd token create",
                "Examples",
            ],
        ),
        (&["token", "list", "--help"], &["--network", "--json", "Examples"]),
        (
            &["token", "revoke", "--help"],
            &["ID", "16 hex digits", "--json", "Examples"],
        ),
        (
            &["member", "--help"],
            &["list", "show", "authorize", "deauthorize", "remove"],
        ),
        (
            &["member", "list", "--help"],
            &["--network", "--json", "Examples"],
        ),
        (
            &["member", "show", "--help"],
            &["MEMBER", "public key", "--network", "--json", "Examples"],
        ),
        (
            &["member", "authorize", "--help"],
            &["MEMBER", "--network", "--json", "Examples"],
        ),
        (
            &["member", "deauthorize", "--help"],
            &["MEMBER", "--network", "--json", "keeps its addresses"],
        ),
        (
            &["member", "remove", "--help"],
            &["MEMBER", "--network", "--json", "Examples"],
        ),
        (
            &["join", "--help"],
            &[
                "TOKEN",
                "--controller",
                "HOST:PORT",
                "--name",
                "--json",
                "Examples",
            ],
        ),
        (&["status", "--help"], &["--json", "peers", "relayed", "Examples"]),
    ];
    for (args, needles) in cases {
        let output = meshd(args);
        assert!(output.status.success(), "meshd {args:?}");
        let help = text(&output.stdout);
        for needle in *needles {
            assert!(
                help.contains(needle),
                "`meshd {}` lacks {needle:?}:\n{help}",
                args.join(" ")
            );
        }
    }
}

#[test]
fn a_named_configuration_file_must_exist() {
    let output = meshd(&["--config", "/nonexistent/x.toml", "status"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("/nonexistent/x.toml"), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["token", "create", "--uses", "2", "--unlimited"][..],
        &["token", "create", "--expires", "5x"],
        &["token", "create", "--uses", "0"],
        &["network", "create", "lab"],
        &["member", "show"],
        &["frobnicate"],
    ] {
        let output = meshd(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "meshd {args:?}: {}",
            text(&output.stderr)
        );
    }
    let output = meshd(&["token", "create", "--expires", "5x"]);
    assert!(text(&output.stderr).contains("30m"), "{}", text(&output.stderr));
}

#[test]
fn a_daemon_that_is_not_running_is_named() {
    let dir = std::env::temp_dir().join(format!("meshd-cli-test-{}-down", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("api-token"), "0123456789abcdef0123456789abcdef\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("meshd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\napi = \"127.0.0.1:{port}\"\n",
            dir.to_str().unwrap()
        ),
    )
    .unwrap();
    let output = run(&config, &["network", "list"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("meshd up"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn controller_commands_against_the_api() {
    let server = Server::start("cli-controller", true, NodeTask::Answers);
    let config = config_for(&server);

    let shown = ok(
        &config,
        &[
            "network",
            "create",
            "lab",
            "--ipv4",
            "10.77.0.0/24",
            "--ipv6",
            "fd77::/64",
        ],
    );
    assert!(shown.contains("10.77.0.0/24 (controller 10.77.0.1)"), "{shown}");
    let listed = ok(&config, &["network", "list"]);
    assert!(listed.starts_with("NAME") && listed.contains("lab"), "{listed}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&config, &["network", "show", "lab", "--json"])).unwrap();
    assert_eq!(json["mtu"], 1376);

    // `T=$(meshd token create)`: the token alone on stdout.
    let output = run(&config, &["token", "create", "--expires", "1h"]);
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    let token = stdout.trim_end();
    assert!(
        token.starts_with("meshd1-") && !token.contains(char::is_whitespace),
        "{stdout:?}"
    );
    assert!(
        text(&output.stderr).contains("meshd join"),
        "{}",
        text(&output.stderr)
    );
    let laptop = PublicKey::from_bytes([0xfb; 32]);
    server
        .store
        .lock()
        .unwrap()
        .join(token, &laptop, "laptop", meshd::sys::clock::wall())
        .unwrap();

    let tokens = ok(&config, &["token", "list"]);
    assert!(tokens.contains("0/1") && tokens.contains("used up"), "{tokens}");
    assert!(!tokens.contains(&token[7..]), "a listing shows a secret");

    let members = ok(&config, &["member", "list"]);
    assert!(
        members.contains("laptop") && members.contains("10.77.0.2"),
        "{members}"
    );
    let done = ok(&config, &["member", "deauthorize", "laptop"]);
    assert!(done.contains("deauthorized"), "{done}");
    let member: MemberView =
        serde_json::from_str(&ok(&config, &["member", "show", "laptop", "--json"])).unwrap();
    assert!(!member.authorized);
    let key = meshd::api::encode_key(&laptop);
    ok(&config, &["member", "authorize", &key]);
    let shown = ok(&config, &["member", "show", &key]);
    assert!(shown.contains("authorized:   yes"), "{shown}");

    // With two networks, a command that needs one says to pick.
    ok(&config, &["network", "create", "lab2", "--ipv4", "10.78.0.0/24"]);
    let output = run(&config, &["member", "show", "laptop"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("--network") && stderr.contains("lab, lab2"),
        "{stderr}"
    );
    ok(&config, &["member", "remove", "laptop", "--network", "lab"]);
    let output = run(&config, &["member", "show", "laptop", "--network", "lab"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("no member named"),
        "{}",
        text(&output.stderr)
    );

    let output = run(&config, &["network", "create", "lab", "--ipv4", "10.79.0.0/24"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("exists already"));
}

#[test]
fn node_commands_against_the_api() {
    let server = Server::start("cli-node", false, NodeTask::Answers);
    let config = config_for(&server);

    let status = ok(&config, &["status"]);
    for needle in [
        "mesh0",
        "51820",
        "NAME",
        "MESH-IP",
        "router",
        "10.77.0.1",
        "direct",
        "12s ago",
        "1.50 KiB",
        "0 B",
    ] {
        assert!(status.contains(needle), "{needle:?} not in\n{status}");
    }
    let joined = ok(
        &config,
        &[
            "join",
            "meshd1-good",
            "--controller",
            "127.0.0.1",
            "--name",
            "laptop",
        ],
    );
    assert!(
        joined.contains("\"lab\"") && joined.contains("10.77.0.2"),
        "{joined}"
    );
    assert!(joined.contains("127.0.0.1:51820"), "{joined}");

    let output = run(&config, &["join", "expired", "--controller", "127.0.0.1:51820"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("the token expired"),
        "{}",
        text(&output.stderr)
    );

    let output = run(&config, &["network", "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("[controller] enabled = true"));
}
