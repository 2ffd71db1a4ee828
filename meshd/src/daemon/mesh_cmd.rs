//! What the mesh task asks of the interface's control loop, which owns the node: the peers from the
//! network map, the relay's token, and every peer's runtime state for `meshd status`.

use meshd_core::node::{PeerRuntime, PeerSpec};
use meshd_wg::control::{Command, Control};
use tokio::sync::{mpsc, oneshot};

/// What the mesh task asks of the control loop, which owns the node.
#[derive(Debug)]
pub enum MeshCmd {
    /// Make the interface's peers exactly these (from the network map).
    Reconcile(Vec<PeerSpec>),
    /// Report every peer's path, last handshake and byte counts.
    Peers(oneshot::Sender<Vec<PeerRuntime>>),
    /// Put this token in relay frames from now on (the relay issued it).
    RelayToken([u8; 8]),
}

impl MeshCmd {
    /// Asks the control loop for every peer's runtime state; none if the loop has stopped.
    pub async fn peers(control: &mpsc::Sender<MeshCmd>) -> Vec<PeerRuntime> {
        let (tx, rx) = oneshot::channel();
        match control.send(MeshCmd::Peers(tx)).await {
            Ok(()) => rx.await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }
}

impl Command for MeshCmd {
    fn run(self, control: &mut Control) {
        match self {
            MeshCmd::Reconcile(peers) => control.reconcile(&peers),
            MeshCmd::RelayToken(token) => control.set_relay_token(token),
            MeshCmd::Peers(reply) => {
                // The asker may have gone; nothing to do then.
                let _ = reply.send(control.peers());
            }
        }
    }
}
