//! The admin API: HTTP and JSON on a Unix socket for the `meshd` CLI, and on a loopback TCP port for
//! scripts.
//!
//! The daemon serves it with [`serve_on`]; the CLI talks to it with the blocking [`ApiClient`]. Every
//! route, with examples, is in `docs/api.md`. The contract:
//!
//! - **Local only.** The Unix socket [`crate::config::Config::api_socket_path`] (mode `0600` in the
//!   `0700` state directory) serves only the daemon's user and root. The configuration refuses a
//!   non-loopback `api` address, and the server refuses a TCP peer that is not on loopback, should it
//!   ever see one.
//! - **A bearer token on every TCP request.** `Authorization: Bearer <token>`, where the token is the
//!   contents of the file [`crate::config::Config::api_token_path`] (mode `0600`, made by the daemon on
//!   its first start; see [`auth`]). Missing or wrong: `401`. So whoever may read that file may
//!   administer the mesh, and nobody else. The Unix socket needs no token: whoever may open it may
//!   read the token file too.
//! - **Bounded before authentication.** A cap on connections per listener, a deadline for each
//!   request head (also the keep-alive idle timeout) and body, and a connection lifetime: see
//!   [`listener`].
//! - **JSON in, JSON out.** An error is a status and `{"error": "<message>"}`, where the message says
//!   what to fix: `400` a bad request, `401` no or a wrong token, `404` no such network, member, token
//!   or route, `409` it exists already, `503` this daemon does not run the controller (or its node has
//!   stopped).
//! - **No secrets in the output or the logs**, except the join token text in the response that
//!   creates it, once. The database never had it (it stores a hash).
//!
//! Controller routes (`/v1/networks...`, `/v1/tokens/...`) act on the controller's
//! [`Store`](meshd_controller::Store) in a blocking task and wake the controller through
//! [`ControllerHandle::changed`] after a change to the members, so that nodes get new maps. Node routes
//! (`/v1/status`, `/v1/join`) are passed to the mesh task as a [`node::NodeRequest`].
//!
//! ```no_run
//! # async fn demo(state: meshd::api::ApiState) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7450").await?;
//! meshd::api::serve(listener, state).await; // runs until the task is dropped or aborted
//! # Ok(()) }
//! ```

pub mod auth;
pub mod client;
pub mod controller;
pub mod error;
pub mod join_probe;
pub mod listener;
pub mod node;
pub mod server;

pub use auth::ApiToken;
pub use client::{ApiClient, ClientError};
pub use error::{ApiError, ErrorBody};
pub use listener::{ApiCounters, Limits, Listener};
pub use server::{ApiState, ControllerHandle, router, serve, serve_on};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use meshd_crypto::PublicKey;

/// A public key as WireGuard shows it (`wg show`, `wg pubkey`): standard base64 with padding.
pub fn encode_key(key: &PublicKey) -> String {
    STANDARD.encode(key.as_bytes())
}

/// Reads a public key in base64, standard or URL-safe, with or without padding (a key in a URL path is
/// often written URL-safe so that it needs no escaping). `None` if it is not 32 bytes of base64.
pub fn decode_key(text: &str) -> Option<PublicKey> {
    let text = text.trim();
    // A 32-byte key is 43 characters without padding, 44 with.
    if !(43..=44).contains(&text.len()) {
        return None;
    }
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .into_iter()
        .find_map(|engine| engine.decode(text).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .map(PublicKey::from_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_in_every_base64_flavour() {
        let key = PublicKey::from_bytes(core::array::from_fn(|i| (i * 37 + 250) as u8));
        let standard = encode_key(&key);
        assert_eq!(standard.len(), 44);
        let url = URL_SAFE.encode(key.as_bytes());
        assert_ne!(standard, url, "the test key should use + or /");
        for text in [
            standard.clone(),
            standard.trim_end_matches('=').to_string(),
            url.clone(),
            url.trim_end_matches('=').to_string(),
        ] {
            assert_eq!(decode_key(&text), Some(key), "{text}");
        }
        assert_eq!(decode_key("laptop"), None);
        assert_eq!(decode_key(&STANDARD.encode([1u8; 31])), None);
        assert_eq!(decode_key(&STANDARD.encode([1u8; 33])), None);
    }
}
