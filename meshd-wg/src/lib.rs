//! meshd's data plane: a WireGuard interface served from userspace. The TUN device, the UDP socket,
//! the TX and RX threads, the control loop with its [`Node`], and the configuration socket `wg(8)`
//! uses; under them [`sys`], the only code of meshd that talks to the operating system. The `meshd-wg` binary is this crate alone; the `meshd` daemon runs the mesh on
//! top of it.
//!
//! It never opens a database and never serves HTTP (no rusqlite, no axum: the layer test checks),
//! and it knows nothing of the mesh daemon: meshd's sealed control messages go up as [`MeshInput`],
//! and the daemon's commands come down as a [`control::Command`].
//!
//! ```text
//!   TUN --read--> [TX thread] seal --GSO--> UDP          (one thread per direction, no lock shared
//!   TUN <-write-- [RX thread] open <--GRO-- UDP           between them per packet)
//!                   |   ^ sessions, routes (atomic swap)
//!   wg(8) <-> [control loop: Node, timers, handshakes] (tokio, this thread)
//! ```

#![deny(unsafe_code)]

pub mod control;
pub mod os_error;
pub mod rx;
pub mod shared;
pub mod sys;
pub mod too_big;
pub mod tx;
pub mod uapi_server;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};

use anyhow::Context;
use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::mpsc;

use crate::sys::{clock, random, tun::Tun, udp::Udp};
use control::{Control, ControlMsg};
use meshd_core::mesh::relay::RelayTable;
use meshd_core::node::{HANDSHAKE_QUEUE, Node};
pub use rx::MeshInput;
use rx::RxUpdate;
use shared::{Routes, Shared};

/// The MTU a new interface starts with, as wireguard-go and wg-quick use (1500 minus 80 bytes for the
/// IPv6 and UDP headers and WireGuard's overhead): right for meshd-wg, whose peers are all direct. A
/// mesh member's interface then takes its network's MTU, which also fits the relay
/// (`meshd_packet::mtu`).
pub const DEFAULT_MTU: u16 = 1420;

/// A running interface: the TUN device, the UDP socket, and the TX and RX threads, with the node and
/// the channels the control loop takes over.
pub struct Device {
    pub name: String,
    pub tun: Arc<Tun>,
    pub shared: Arc<Shared>,
    pub node: Node,
    /// Handshake messages and unsent packets from the data threads.
    pub handshakes: mpsc::Receiver<ControlMsg>,
    /// Sessions for the RX thread.
    pub rx_updates: std_mpsc::Sender<RxUpdate>,
    /// Why a data thread ended (the interface was deleted).
    pub gone: mpsc::Receiver<String>,
}

impl Device {
    /// Creates the TUN device `name` and the UDP socket on `port` (0: any), and starts the data
    /// threads. meshd's own control messages go to `mesh` if given, else they are dropped.
    pub fn start(name: &str, port: u16, mesh: Option<mpsc::Sender<MeshInput>>) -> anyhow::Result<Device> {
        let tun =
            Arc::new(Tun::create(name, DEFAULT_MTU).with_context(|| {
                format!("cannot create TUN device {name:?} (needs root and /dev/net/tun)")
            })?);
        let name = tun.name().to_string();
        if !tun.offload() {
            tracing::warn!("the kernel refused TUN segmentation offload; throughput will be lower");
        }
        let udp = Udp::bind(port).with_context(|| {
            if port == 0 {
                "cannot open a UDP socket".to_string()
            } else {
                format!("cannot listen on UDP port {port} (is another daemon using it?)")
            }
        })?;
        let mut node = Node::new(random::seed(), usize::from(DEFAULT_MTU));
        node.set_bound_port(udp.port());

        let shared = Arc::new(Shared {
            epoch: clock::now(),
            routes: ArcSwap::from_pointee(Routes::default()),
            udp: ArcSwap::from_pointee(udp),
            own_key: ArcSwapOption::empty(),
            relay: ArcSwap::from_pointee(RelayTable::default()),
            relay_token: AtomicU64::new(0),
            drops: Default::default(),
            mtu: AtomicUsize::new(usize::from(DEFAULT_MTU)),
            stopping: AtomicBool::new(false),
        });
        let (msg_tx, msg_rx) = mpsc::channel(HANDSHAKE_QUEUE);
        let (update_tx, update_rx) = std_mpsc::channel();
        // A data thread that ends (the interface was deleted) stops the daemon.
        let (gone_tx, gone_rx) = mpsc::channel::<String>(2);

        spawn_data_thread("meshd-tx", gone_tx.clone(), {
            let (tun, shared, msg_tx) = (Arc::clone(&tun), Arc::clone(&shared), msg_tx.clone());
            move || tx::run(tun, shared, msg_tx)
        })?;
        spawn_data_thread("meshd-rx", gone_tx, {
            let (tun, shared) = (Arc::clone(&tun), Arc::clone(&shared));
            move || rx::run(tun, shared, msg_tx, mesh, update_rx)
        })?;
        Ok(Device {
            name,
            tun,
            shared,
            node,
            handshakes: msg_rx,
            rx_updates: update_tx,
            gone: gone_rx,
        })
    }
}

/// Creates `name`, serves it until SIGTERM, SIGINT or the interface's deletion, then removes the
/// device and the socket. `ready` runs once the configuration socket accepts connections.
pub fn run(name: &str, ready: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let device = Device::start(name, 0, None)?;
    let name = device.name.clone();
    let (call_tx, call_rx) = mpsc::channel(16);
    let path = uapi_server::socket_path(&name);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = {
        let _guard = runtime.enter();
        uapi_server::bind(&path).with_context(|| format!("cannot serve {}", path.display()))?
    };

    tracing::info!("interface {name} is up; configure it with `wg set {name} ...`");
    ready()?;
    let shared = Arc::clone(&device.shared);
    let control = Control::new(device.node, Arc::clone(&device.shared), device.rx_updates);
    let mut gone_rx = device.gone;
    let msg_rx = device.handshakes;
    runtime.block_on(async {
        let server = tokio::spawn(uapi_server::serve(listener, call_tx));
        control.run(msg_rx, call_rx, stop_signal(&mut gone_rx)).await;
        server.abort();
    });
    shared.stopping.store(true, Ordering::Relaxed);
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!("cannot remove {}: {e}", path.display());
    }
    // The TUN device goes with its last descriptor when the process exits; the data threads hold it
    // and are left to die with the process rather than joined (they may sit in a blocking call).
    Ok(())
}

/// Resolves on SIGTERM or SIGINT, or when a data thread reports that the interface is gone.
pub async fn stop_signal(gone: &mut mpsc::Receiver<String>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        Some(why) = gone.recv() => tracing::info!("{why}: shutting down"),
    }
}

/// Sleeps until `deadline`, or forever without one (a `select!` arm for the next timer).
pub async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn spawn_data_thread(
    name: &str,
    gone: mpsc::Sender<String>,
    body: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> anyhow::Result<()> {
    let thread = name.to_string();
    std::thread::Builder::new()
        .name(thread.clone())
        .spawn(move || {
            let why = match body() {
                Ok(()) => format!("{thread} finished"),
                Err(e) => format!("{thread}: {e} (was the interface deleted?)"),
            };
            let _ = gone.blocking_send(why);
        })
        .with_context(|| format!("cannot start thread {name}"))?;
    Ok(())
}
