//! A running admin API for tests: `serve` on a loopback port and `serve_on` the Unix socket
//! `<dir>/api.sock` (as the daemon does), with a temporary controller store and a stand-in for the
//! mesh task, on its own thread and runtime.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use meshd::api::controller::CreateToken;
use meshd::api::node::{
    JoinFailure, JoinFailureKind, JoinResponse, LeaveResponse, NodeRequest, NodeStatus, PathKind,
    PeerStatusView,
};
use meshd::api::{
    ApiClient, ApiCounters, ApiState, ApiToken, ControllerHandle, Limits, Listener, encode_key, serve,
    serve_on,
};
use meshd_controller::Store;
use meshd_crypto::PublicKey;
use meshd_wg::sys::clock;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::sync::{Notify, mpsc, oneshot};

/// How the stand-in mesh task behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum NodeTask {
    Answers,
    Gone,
}

/// A running API server on its own thread and runtime, torn down on drop.
pub struct Server {
    pub addr: SocketAddr,
    /// The Unix socket, served with the default limits.
    pub socket: PathBuf,
    /// What the Unix listener counted.
    pub unix_counters: Arc<ApiCounters>,
    pub token_path: PathBuf,
    pub store: Arc<Mutex<Store>>,
    /// How many times the API notified `changed`.
    pub changes: Arc<AtomicUsize>,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

pub const CONTROLLER_KEY: [u8; 32] = [0xc0; 32];

impl Server {
    pub fn start(name: &str, controller: bool, node: NodeTask) -> Server {
        let dir = std::env::temp_dir().join(format!("meshd-api-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(Mutex::new(Store::open(&dir).unwrap()));
        let token_path = dir.join("api-token");
        let token = ApiToken::load_or_create(&token_path, &mut ChaCha20Rng::seed_from_u64(7)).unwrap();
        let changed = Arc::new(Notify::new());
        let changes = Arc::new(AtomicUsize::new(0));
        let handle = ControllerHandle {
            store: Arc::clone(&store),
            controller_key: PublicKey::from_bytes(CONTROLLER_KEY),
            changed: Arc::clone(&changed),
            rng: Arc::new(Mutex::new(ChaCha20Rng::seed_from_u64(1))),
        };
        let (node_tx, node_rx) = mpsc::channel(4);
        let state = ApiState {
            token: Arc::new(token),
            controller: controller.then_some(handle),
            node: node_tx,
        };
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let counter = Arc::clone(&changes);
        let socket = dir.join("api.sock");
        let unix_counters = Arc::new(ApiCounters::default());
        let (unix_path, unix_count) = (socket.clone(), Arc::clone(&unix_counters));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let unix = Listener::bind_unix(&unix_path).unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                tokio::spawn(serve_on(unix, state.clone(), Limits::default(), unix_count));
                tokio::spawn(async move {
                    loop {
                        changed.notified().await;
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                });
                match node {
                    NodeTask::Answers => {
                        tokio::spawn(fake_node(node_rx));
                    }
                    NodeTask::Gone => drop(node_rx),
                }
                tokio::select! {
                    () = serve(listener, state) => {}
                    _ = stopped => {}
                }
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Server {
            addr,
            socket,
            unix_counters,
            token_path,
            store,
            changes,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A client over TCP, with the token.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(self.addr, &ApiToken::load(&self.token_path).unwrap())
    }

    /// A client over the Unix socket, without a token.
    pub fn unix_client(&self) -> ApiClient {
        ApiClient::unix(&self.socket)
    }

    /// Waits (bounded) until `changed` was notified more than `before` times.
    pub fn wait_for_change(&self, before: usize) {
        let deadline = clock::now() + Duration::from_secs(5);
        while self.changes.load(Ordering::SeqCst) <= before {
            assert!(clock::now() < deadline, "`changed` was not notified");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn join(&self, key: &PublicKey, name: &str) {
        let client = self.client();
        let token = client.create_token("lab", &CreateToken::default()).unwrap().token;
        self.store
            .lock()
            .unwrap()
            .join(&token, key, name, clock::wall())
            .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The mesh task's stand-in. Join outcomes are chosen by the token text; `hang` is never answered
/// (as a join to a controller that does not answer, until the mesh task's timeout).
async fn fake_node(mut rx: mpsc::Receiver<NodeRequest>) {
    let mut unanswered = Vec::new();
    while let Some(request) = rx.recv().await {
        match request {
            NodeRequest::Status(reply) => {
                let _ = reply.send(sample_status());
            }
            NodeRequest::Join(req, reply) => {
                let failure = |kind, message: &str| {
                    Err(JoinFailure {
                        kind,
                        message: message.to_string(),
                    })
                };
                if req.token == "hang" {
                    unanswered.push(reply);
                    continue;
                }
                let answer = match req.token.as_str() {
                    "expired" => failure(JoinFailureKind::Expired, "the token expired; create a new one"),
                    "unreachable" => failure(JoinFailureKind::Unreachable, "no answer from the controller"),
                    "again" => failure(JoinFailureKind::AlreadyJoined, "already a member of lab"),
                    _ => Ok(JoinResponse {
                        network: "lab".into(),
                        name: req.name.unwrap_or_else(|| "host".into()),
                        ipv4: "10.77.0.2".parse().unwrap(),
                        ipv6: None,
                        controller_key: encode_key(&PublicKey::from_bytes(CONTROLLER_KEY)),
                        controller: req.controller,
                    }),
                };
                let _ = reply.send(answer);
            }
            NodeRequest::Leave(reply) => {
                let _ = reply.send(Ok(LeaveResponse {
                    network: "lab".into(),
                }));
            }
        }
    }
}

/// The status the stand-in mesh task gives: its peers in no particular order.
pub fn sample_status() -> NodeStatus {
    let status = expected_status();
    let mut peers = status.peers.clone();
    // router, alpha (0x22..), alpha (0x11..): neither by name nor by key.
    peers.swap(0, 2);
    NodeStatus { peers, ..status }
}

/// The same status as the API answers it: peers by name, then key.
pub fn expected_status() -> NodeStatus {
    let peer = |name: &str, key: [u8; 32], ipv4: &str, rx_bytes| PeerStatusView {
        name: name.into(),
        public_key: encode_key(&PublicKey::from_bytes(key)),
        mesh_ipv4: Some(ipv4.parse().unwrap()),
        mesh_ipv6: None,
        endpoint: Some("192.0.2.1:51820".parse().unwrap()),
        path: PathKind::Direct,
        last_handshake_secs: Some(12),
        rx_bytes,
        tx_bytes: 0,
    };
    NodeStatus {
        public_key: encode_key(&PublicKey::from_bytes([1; 32])),
        interface: "mesh0".into(),
        listen_port: 51820,
        controller_role: false,
        membership: None,
        addresses: vec!["10.77.0.2/24".into()],
        // encode_key([0x11; 32]) starts "ERER", encode_key([0x22; 32]) "IiIi".
        peers: vec![
            peer("alpha", [0x11; 32], "10.77.0.3", 1),
            peer("alpha", [0x22; 32], "10.77.0.4", 2),
            peer("router", CONTROLLER_KEY, "10.77.0.1", 1536),
        ],
        routing: None,
        ingress: None,
        drops: [("control_bad_auth".to_string(), 3), ("no_route".to_string(), 0)].into(),
        removed_from: None,
    }
}
