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
                "leave",
                "controller",
                "status",
                "Getting started",
            ],
        ),
        (
            &["up", "--help"],
            &[
                "foreground",
                "LOG_LEVEL",
                "NO_COLOR",
                "--config",
                "--print-config",
                "--new-key",
                "docs/config.md",
                "Examples",
            ],
        ),
        (&["network", "--help"], &["create", "list", "show", "delete"]),
        (
            &["network", "delete", "--help"],
            &["NAME", "--force", "--json", "Examples"],
        ),
        (&["leave", "--help"], &["controller", "--json", "Examples"]),
        (&["controller", "--help"], &["backup"]),
        (
            &["controller", "backup", "--help"],
            &["FILE", "restore", "controller.db-wal", "Examples"],
        ),
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
            &[
                "MEMBER",
                "public key",
                "address",
                "--network",
                "--json",
                "Examples",
            ],
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
        .join(token, &laptop, "laptop", meshd_wg::sys::clock::wall())
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

    // A member by its address; names are unique, and what it asked for shows as a label.
    let phone = PublicKey::from_bytes([0x12; 32]);
    server.join(&phone, "Phone\u{202E}");
    let shown = ok(&config, &["member", "show", "10.77.0.2", "--network", "lab"]);
    assert!(shown.contains("phone") && shown.contains("\"Phone\""), "{shown}");
    assert!(!shown.contains('\u{202E}'), "{shown:?}");

    // A backup of the running controller's database, which a second one never overwrites.
    let backup = server.dir.join("backup.db");
    let done = ok(&config, &["controller", "backup", backup.to_str().unwrap()]);
    assert!(done.contains("2 networks, 1 member,"), "{done}");
    let output = run(&config, &["controller", "backup", backup.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("never overwrites"));

    // Deleting: refused with members, done with --force.
    let output = run(&config, &["network", "delete", "lab"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("--force"),
        "{}",
        text(&output.stderr)
    );
    let done = ok(&config, &["network", "delete", "lab", "--force"]);
    assert!(done.contains("deleted") && done.contains("1 member"), "{done}");
    let done = ok(&config, &["network", "delete", "lab2"]);
    assert!(done.contains("deleted"), "{done}");
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

    let left = ok(&config, &["leave"]);
    assert!(left.contains("Left network \"lab\""), "{left}");

    let output = run(&config, &["network", "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("[controller] enabled = true"));
}

#[test]
fn the_cli_uses_the_unix_socket_without_the_token_file() {
    let server = Server::start("cli-unix", false, NodeTask::Answers);
    let config = config_for(&server);
    // Without the token file, TCP could not be used: the status comes over the socket.
    std::fs::remove_file(&server.token_path).unwrap();
    let status = ok(&config, &["status"]);
    assert!(status.contains("router"), "{status}");
    // With `api_tcp = false` and no socket, the error names the socket.
    let dir = std::env::temp_dir().join(format!("meshd-cli-test-{}-nosocket", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("meshd.toml");
    std::fs::write(
        &config,
        format!("state_dir = {:?}\napi_tcp = false\n", dir.to_str().unwrap()),
    )
    .unwrap();
    let output = run(&config, &["status"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&*dir.join("api.sock").to_string_lossy()) && stderr.contains("meshd up"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn status_lists_peers_by_name_then_key_in_text_and_json() {
    let server = Server::start("cli-sorted", false, NodeTask::Answers);
    let config = config_for(&server);
    let status = ok(&config, &["status"]);
    let rows: Vec<&str> = status
        .lines()
        .skip_while(|l| !l.starts_with("NAME"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 3, "{status}");
    assert!(
        rows[0].starts_with("alpha") && rows[0].contains("10.77.0.3"),
        "{status}"
    );
    assert!(
        rows[1].starts_with("alpha") && rows[1].contains("10.77.0.4"),
        "{status}"
    );
    assert!(rows[2].starts_with("router"), "{status}");
    let json: serde_json::Value = serde_json::from_str(&ok(&config, &["status", "--json"])).unwrap();
    let ips: Vec<&str> = json["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["mesh_ipv4"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["10.77.0.3", "10.77.0.4", "10.77.0.1"]);
}

#[test]
fn join_to_a_closed_port_fails_at_once() {
    let server = Server::start("cli-closed-port", false, NodeTask::Answers);
    let config = config_for(&server);
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let controller = format!("127.0.0.1:{port}");
    // `hang`: the stand-in mesh task never answers, as a join to a silent controller.
    let started = meshd_wg::sys::clock::now();
    let output = run(&config, &["join", "hang", "--controller", &controller]);
    let took = meshd_wg::sys::clock::now() - started;
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("port unreachable") && stderr.contains(&port.to_string()),
        "{stderr}"
    );
    assert!(
        took < std::time::Duration::from_secs(3),
        "took {took:?} to notice a closed port"
    );
}

/// A state directory and a configuration in it for `meshd up` tests that stop before the interface.
fn up_dir(name: &str, extra: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("meshd-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("meshd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\ninterface = \"meshcli9\"\napi = \"127.0.0.1:7459\"\n{extra}",
            dir.join("state").to_str().unwrap()
        ),
    )
    .unwrap();
    (dir, config)
}

#[test]
fn up_prints_its_configuration() {
    let (dir, config) = up_dir("print", "[controller]\nname = \"border\"\n");
    let printed = ok(&config, &["up", "--print-config"]);
    let parsed = meshd::config::Config::parse(&printed).unwrap();
    let expected = meshd::config::Config::load(&config, true).unwrap();
    assert_eq!(parsed, expected, "{printed}");
    for needle in [
        "interface = \"meshcli9\"",
        "listen_port = 51820",
        "api_tcp = true",
        "[controller]",
        "name = \"border\"",
        "[routing]",
        "[ingress]",
        "hold_down_secs = 10",
    ] {
        assert!(printed.contains(needle), "{needle:?} not in\n{printed}");
    }
    assert!(!dir.join("state").exists(), "--print-config started something");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn up_refuses_bad_api_ports_and_interface_names_with_clear_errors() {
    for (extra, words) in [
        ("api = \"127.0.0.1:0\"\n", &["port 0"][..]),
        ("interface = \"mesh\\n0\"\n", &["interface", "15 characters"]),
        ("interface = \"lo\"\n", &["\"lo\"", "exists and is not meshd's"]),
    ] {
        let (dir, config) = up_dir("refusals", "");
        // Later keys of the same name would be a TOML error: replace the line instead.
        let original = std::fs::read_to_string(&config).unwrap();
        let key = extra.split(' ').next().unwrap();
        let kept: String = original
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} ")))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&config, format!("{kept}{extra}")).unwrap();
        let output = run(&config, &["up"]);
        assert_eq!(output.status.code(), Some(1), "{extra}");
        let stderr = text(&output.stderr);
        for word in words {
            assert!(stderr.contains(word), "{extra}: {word:?} not in {stderr}");
        }
        assert!(!stderr.contains("root"), "{extra}: a misleading hint: {stderr}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn up_refuses_a_state_directory_another_process_holds() {
    let (dir, config) = up_dir("locked", "");
    let state = dir.join("state");
    meshd_wg::sys::files::ensure_private_dir(&state).unwrap();
    let held = meshd_wg::sys::files::lock(&state.join("meshd.lock")).unwrap();
    let output = run(&config, &["up"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())) && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(
        !state.join("node.key").exists(),
        "the second daemon went on after the lock"
    );
    drop(held);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    // A token file others can read stops `meshd up` after it has logged the node key, before the
    // interface.
    let (dir, config) = up_dir("colour", "");
    let state = dir.join("state");
    meshd_wg::sys::files::ensure_private_dir(&state).unwrap();
    let token = state.join("api-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(["--config", config.to_str().unwrap(), "up"])
        .env("LOG_LEVEL", "info")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("node key") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "colour codes in a pipe: {stderr:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
