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
use crate::api::server::{ApiState, ControllerHandle};
use crate::config::Config;
use crate::controller::service::ControllerService;
use crate::controller::store::Store;
use crate::mesh::agent::Agent;
use crate::mesh::channel::Channel;
use crate::sys::{clock, files, random};
use crate::uapi::SetDevice;
use crate::wg::control::Control;
use crate::wg::{self, Device, uapi_server};
use mesh::{MESH_QUEUE, MeshTask};
use routing::{RoutingReport, RoutingTask};

/// Runs the daemon in the foreground until SIGTERM or SIGINT (or the interface is deleted).
pub fn up(config: Config) -> anyhow::Result<()> {
    files::ensure_private_dir(&config.state_dir)
        .with_context(|| format!("cannot create the state directory {}", config.state_dir.display()))?;
    let secret = state::node_key(&config.state_dir, random::seed())?;
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
        let std_listener = std::net::TcpListener::bind(config.api).with_context(|| {
            format!(
                "cannot listen on {} for the admin API (is another meshd running?)",
                config.api
            )
        })?;
        std_listener.set_nonblocking(true)?;
        (uapi, tokio::net::TcpListener::from_std(std_listener)?)
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
    let controller =
        store.map(|store| ControllerService::new(store, own_key, mesh::host_name(), random::seed()));
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
        addresses: Vec::new(),
        routing: routing_tx,
        routing_report,
    };
    let shared = Arc::clone(&device.shared);
    let control = Control::new(device.node, Arc::clone(&device.shared), device.rx_updates);
    let mut gone = device.gone;
    let handshakes = device.handshakes;
    tracing::info!(
        "meshd is up: interface {name}, UDP port {port}, admin API on {}{}",
        config.api,
        if config.controller.enabled {
            ", controller enabled"
        } else {
            ""
        }
    );

    runtime.block_on(async {
        let uapi = tokio::spawn(uapi_server::serve(uapi_listener, call_tx));
        let api = tokio::spawn(crate::api::server::serve(api_listener, api_state));
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
        api.abort();
    });
    shared.stopping.store(true, Ordering::Relaxed);
    let path = uapi_server::socket_path(&name);
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!("cannot remove {}: {e}", path.display());
    }
    Ok(())
}
