//! `meshd up`: the mesh daemon. The same interface and data path as `meshd-wg` (so `wg show` works),
//! plus the mesh task that joins a network and keeps the peers in step with the map, the controller
//! when the configuration enables it, and the admin API on loopback.
//!
//! ```text
//!   TUN <-> [TX / RX threads] <-> UDP ------ meshd messages (0x80) ----> [mesh task: Agent | ControllerService]
//!                  ^                                                          |         ^
//!                  | sessions, routes, relay table                  peers     |         | status, join
//!   wg(8) <-> [control loop: Node] <------------------------------------------+    [admin API (axum, loopback)]
//! ```

pub mod mesh;
pub mod mesh_cmd;
pub mod routing;
pub mod state;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::sync::{Notify, mpsc, watch};
use zeroize::Zeroizing;

use crate::api::auth::ApiToken;
use crate::api::listener::{ApiCounters, Limits, Listener};
use crate::api::server::{ApiState, ControllerHandle, serve_on};
use crate::config::Config;
use mesh::{MESH_QUEUE, MeshTask};
use meshd_controller::service::ControllerService;
use meshd_controller::store::Store;
use meshd_core::channel::Channel;
use meshd_core::mesh::agent::Agent;
use meshd_core::node::SetDevice;
use meshd_wg::control::Control;
use meshd_wg::sys::{clock, files, random};
use meshd_wg::{self as wg, Device, uapi_server};
use routing::{RoutingReport, RoutingTask};

/// How `meshd up` was asked to start, beyond the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpOptions {
    /// Make a new node key where the old one is lost (`meshd up --new-key`).
    pub new_key: bool,
}

/// Runs the daemon in the foreground until SIGTERM or SIGINT (or the interface is deleted).
pub fn up(config: Config, options: UpOptions) -> anyhow::Result<()> {
    files::ensure_private_dir(&config.state_dir)
        .with_context(|| format!("cannot create the state directory {}", config.state_dir.display()))?;
    // Held until this function returns; the kernel drops it if the process dies.
    let _lock = files::lock(&config.lock_path())?;
    check_interface_free(&config.interface)?;
    let secret = state::node_key(&config.state_dir, random::seed(), options.new_key)?;
    let own_key = *secret.public_key();
    tracing::info!("node key {}", own_key.fingerprint());
    let (membership, map) = if config.controller.enabled {
        (None, None)
    } else {
        state::load(&config.state_dir)?
    };
    let store = if config.controller.enabled {
        let store = Store::open(&config.state_dir).with_context(|| {
            format!(
                "cannot open the controller database in {}",
                config.state_dir.display()
            )
        })?;
        Some(Arc::new(Mutex::new(store)))
    } else {
        None
    };
    let mut rng = ChaCha20Rng::from_seed(random::seed());
    let api_token = ApiToken::load_or_create(&config.api_token_path(), &mut rng).with_context(|| {
        format!(
            "cannot set up the API token {}",
            config.api_token_path().display()
        )
    })?;

    let (mesh_tx, mesh_rx) = mpsc::channel(MESH_QUEUE);
    let mut device =
        Device::start(&config.interface, config.listen_port, Some(mesh_tx)).with_context(|| {
            format!(
                "cannot start interface {} on UDP port {}",
                config.interface, config.listen_port
            )
        })?;
    let name = device.name.clone();
    // The node's key, as `wg set private-key` would set it, and the mark that keeps the tunnel's
    // own packets out of the source rules (`wg set fwmark`).
    let set_key = SetDevice {
        private_key: Some(Some(Zeroizing::new(*secret.to_bytes()))),
        fwmark: Some(config.routing.fwmark),
        ..SetDevice::default()
    };
    device
        .node
        .apply(clock::now(), clock::wall(), &set_key)
        .map_err(|e| anyhow::anyhow!("cannot set the node key: {e}"))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (uapi_listener, api_listener) = {
        let _guard = runtime.enter();
        let path = uapi_server::socket_path(&name);
        let uapi = uapi_server::bind(&path).with_context(|| format!("cannot serve {}", path.display()))?;
        let socket = config.api_socket_path();
        let unix = Listener::bind_unix(&socket)
            .with_context(|| format!("cannot serve the admin API on {}", socket.display()))?;
        let tcp = if config.api_tcp {
            let std_listener = std::net::TcpListener::bind(config.api).with_context(|| {
                format!(
                    "cannot listen on {} for the admin API (is another program on that port? \
                     `api_tcp = false` turns the TCP API off)",
                    config.api
                )
            })?;
            std_listener.set_nonblocking(true)?;
            Some(Listener::Tcp(tokio::net::TcpListener::from_std(std_listener)?))
        } else {
            None
        };
        (uapi, (unix, tcp))
    };

    let (call_tx, call_rx) = mpsc::channel(16);
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (api_tx, api_rx) = mpsc::channel(16);
    let changed = Arc::new(Notify::new());
    let controller_handle = store.as_ref().map(|store| ControllerHandle {
        store: Arc::clone(store),
        controller_key: own_key,
        changed: Arc::clone(&changed),
        rng: Arc::new(Mutex::new(ChaCha20Rng::from_seed(random::seed()))),
    });
    let api_state = ApiState {
        token: Arc::new(api_token),
        controller: controller_handle,
        node: api_tx,
    };

    let port = device.shared.udp.load().port();
    let agent = (!config.controller.enabled).then(|| {
        Agent::new(
            clock::now(),
            own_key,
            MeshTask::local_info(&name, port),
            membership,
            map,
        )
    });
    let own_name = config.controller.name.clone().unwrap_or_else(mesh::host_name);
    let controller = store.map(|store| ControllerService::new(store, own_key, own_name, random::seed()));
    let (routing_tx, routing_rx) = watch::channel(None);
    let routing_report = Arc::new(Mutex::new(RoutingReport::default()));
    let routing_task = RoutingTask {
        interface: name.clone(),
        routing: config.routing.clone(),
        ingress: config.ingress.clone(),
        control: cmd_tx.clone(),
        report: Arc::clone(&routing_report),
    };
    let task = MeshTask {
        channel: Channel::new(secret),
        agent,
        controller,
        shared: Arc::clone(&device.shared),
        control: cmd_tx,
        interface: name.clone(),
        state_dir: config.state_dir.clone(),
        rng: ChaCha20Rng::from_seed(random::seed()),
        pending_join: None,
        pending_leave: None,
        addresses: Vec::new(),
        routing: routing_tx,
        routing_report,
        refused_log: Default::default(),
    };
    let shared = Arc::clone(&device.shared);
    let control = Control::new(device.node, Arc::clone(&device.shared), device.rx_updates);
    let mut gone = device.gone;
    let handshakes = device.handshakes;
    tracing::info!(
        "meshd is up: interface {name}, UDP port {port}, admin API on {}{}{}",
        config.api_socket_path().display(),
        if config.api_tcp {
            format!(" and {}", config.api)
        } else {
            String::new()
        },
        if config.controller.enabled {
            ", controller enabled"
        } else {
            ""
        }
    );

    runtime.block_on(async {
        let uapi = tokio::spawn(uapi_server::serve(uapi_listener, call_tx));
        let (unix_listener, tcp_listener) = api_listener;
        let unix_api = tokio::spawn(serve_on(
            unix_listener,
            api_state.clone(),
            Limits::default(),
            Arc::new(ApiCounters::default()),
        ));
        let tcp_api = tcp_listener.map(|listener| {
            tokio::spawn(serve_on(
                listener,
                api_state,
                Limits::default(),
                Arc::new(ApiCounters::default()),
            ))
        });
        let stopping = Arc::new(Notify::new());
        let mesh_stop = {
            let stopping = Arc::clone(&stopping);
            async move { stopping.notified().await }
        };
        let routing_stop = Arc::new(Notify::new());
        let routing = {
            let stop = Arc::clone(&routing_stop);
            tokio::spawn(routing_task.run(routing_rx, async move { stop.notified().await }))
        };
        let mesh_shared = Arc::clone(&shared);
        let mesh = tokio::spawn(task.run(
            mesh_rx,
            api_rx,
            changed,
            move || mesh_shared.udp.load().port(),
            mesh_stop,
        ));
        control
            .run_mesh(handshakes, call_rx, cmd_rx, wg::stop_signal(&mut gone))
            .await;
        // Withdraw the announcement and remove the rules while the interface still exists, and let
        // the mesh task write what it holds (the controller's sightings) before leaving.
        routing_stop.notify_one();
        stopping.notify_one();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), routing).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), mesh).await;
        uapi.abort();
        unix_api.abort();
        if let Some(api) = tcp_api {
            api.abort();
        }
    });
    shared.stopping.store(true, Ordering::Relaxed);
    for path in [uapi_server::socket_path(&name), config.api_socket_path()] {
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
    Ok(())
}

/// Refuses an interface name that an interface other than a TUN device has (`lo`, `eth0`, a bridge):
/// meshd cannot make its device under that name, and the kernel's error would not say why.
fn check_interface_free(name: &str) -> anyhow::Result<()> {
    let dir = std::path::Path::new("/sys/class/net").join(name);
    if dir.exists() && !dir.join("tun_flags").exists() {
        anyhow::bail!(
            "interface = {name:?}: an interface of that name exists and is not meshd's (it is not a \
             TUN device; see `ip link show {name}`); pick a name no other interface has, such as \
             \"mesh0\""
        );
    }
    Ok(())
}
