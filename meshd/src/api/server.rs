//! The admin API's HTTP server: routes, authentication, and the node routes.
//!
//! Every request, including one for a route that does not exist, first passes `authenticate`: a TCP
//! peer off loopback gets `403`, a TCP request without the bearer token `401`. A request on the Unix
//! socket needs no token: the socket's file permissions and the peer's user (checked when the
//! connection is accepted, see [`super::listener`]) already say who it is. Only then is it routed.
//! How connections are taken (cap, timeouts) is [`super::listener`]'s business.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use rand_chacha::ChaCha20Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

use super::auth::ApiToken;
use super::controller;
use super::error::ApiError;
use super::join_probe;
use super::listener::{ApiCounters, Limits, Listener, Peer, serve_router};
use super::node::{
    JoinFailure, JoinFailureKind, JoinRequest, JoinResponse, LeaveResponse, NodeRequest, NodeStatus,
};
use meshd_controller::Store;

/// How long a node route waits for the mesh task. A join waits for the controller's answer, which the
/// mesh task gives up on after about 10 s; this is the backstop should the task hang.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(25);

/// How long a request body may take to arrive once its head has.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the API serves from.
#[derive(Clone)]
pub struct ApiState {
    /// The bearer token every request must carry.
    pub token: Arc<ApiToken>,
    /// The controller, when this daemon runs it (`[controller] enabled = true`); `None` makes the
    /// controller routes answer `503`.
    pub controller: Option<ControllerHandle>,
    /// The mesh task, which answers the node routes.
    pub node: mpsc::Sender<NodeRequest>,
}

/// The controller's state as the API reaches it.
#[derive(Clone)]
pub struct ControllerHandle {
    pub store: Arc<std::sync::Mutex<Store>>,
    /// Put into every join token, so joining nodes know whom to talk to.
    pub controller_key: meshd_crypto::PublicKey,
    /// Notified after every change to members or their authorization (and after a new network), so
    /// the controller sends the nodes new maps.
    pub changed: Arc<Notify>,
    /// Draws the join tokens' ids and secrets.
    pub rng: Arc<std::sync::Mutex<ChaCha20Rng>>,
}

/// Serves the admin API on a loopback TCP `listener`, within the default [`Limits`], until the future
/// is dropped or its task aborted.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState) {
    serve_on(
        Listener::Tcp(listener),
        state,
        Limits::default(),
        Arc::new(ApiCounters::default()),
    )
    .await;
}

/// Serves the admin API on `listener` (TCP or the Unix socket) within `limits`, counting into
/// `counters`, until the future is dropped or its task aborted.
pub async fn serve_on(listener: Listener, state: ApiState, limits: Limits, counters: Arc<ApiCounters>) {
    serve_router(listener, router(state), limits, counters).await;
}

/// The routes, behind authentication. [`serve`] runs it; it is public so that it can be driven
/// without a socket.
pub fn router(state: ApiState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/join", post(join))
        .route("/v1/leave", post(leave))
        .route(
            "/v1/networks",
            get(controller::list_networks).post(controller::create_network),
        )
        .route(
            "/v1/networks/{name}",
            get(controller::show_network).delete(controller::delete_network),
        )
        .route(
            "/v1/networks/{name}/tokens",
            get(controller::list_tokens).post(controller::create_token),
        )
        .route("/v1/tokens/{id}", delete(controller::revoke_token))
        .route("/v1/networks/{name}/members", get(controller::list_members))
        .route(
            "/v1/networks/{name}/members/{member}",
            get(controller::show_member).delete(controller::remove_member),
        )
        .route(
            "/v1/networks/{name}/members/{member}/authorize",
            post(controller::authorize_member),
        )
        .route(
            "/v1/networks/{name}/members/{member}/deauthorize",
            post(controller::deauthorize_member),
        )
        .route(
            "/v1/networks/{name}/members/{member}/ingress",
            post(controller::make_ingress).delete(controller::unmake_ingress),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), authenticate))
        .with_state(state)
}

/// Refuses TCP peers off loopback and TCP requests without the bearer token; logs each request (never
/// its headers, which hold the token). A request on the Unix socket passes: its peer was checked when
/// the connection was accepted. A request with no [`Peer`] (the router driven without a socket) is
/// treated as TCP.
async fn authenticate(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let peer = req.extensions().get::<Peer>().copied();
    if let Some(Peer::Tcp(peer)) = peer
        && !is_loopback(peer.ip())
    {
        tracing::warn!("admin API: refused {method} {path} from {peer}, which is not on loopback");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "the admin API answers clients on loopback only; run the CLI on the daemon's machine",
        )
        .into_response();
    }
    if let Some(Peer::Unix { .. }) = peer {
        let response = next.run(req).await;
        tracing::debug!(
            "admin API (unix): {method} {path}: {}",
            response.status().as_u16()
        );
        return response;
    }
    let refusal = match req.headers().get(header::AUTHORIZATION) {
        None => Some(format!(
            "this request has no `Authorization: Bearer <token>` header; the token is in {} \
             (readable by the daemon's user only)",
            state.token.path().display()
        )),
        Some(value) if !state.token.accepts_header(value.as_bytes()) => Some(format!(
            "the bearer token is wrong; it must be the contents of {} (a new token is made when \
             that file is deleted and the daemon restarted)",
            state.token.path().display()
        )),
        Some(_) => None,
    };
    if let Some(message) = refusal {
        tracing::info!("admin API: {method} {path}: 401 (no valid token)");
        return ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    }
    let response = next.run(req).await;
    tracing::debug!("admin API: {method} {path}: {}", response.status().as_u16());
    response
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "there is no route {}; docs/api.md lists the routes",
        uri.path()
    ))
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {method}; docs/api.md lists the methods of each route",
            uri.path()
        ),
    )
}

/// A JSON request body whose errors come back as JSON `400`s that say what was wrong. An empty body
/// reads as `{}`, so routes whose fields are all optional can be called without one. The
/// `Content-Type` is not checked (`curl -d` sends a form type by default).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} s",
                        BODY_TIMEOUT.as_secs()
                    ),
                )
            })?
            .map_err(|e| {
                ApiError::new(
                    e.status(),
                    format!("cannot read the request body: {}", e.body_text()),
                )
            })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(JsonBody).map_err(|e| {
            ApiError::bad_request(format!(
                "the request body is not what this route takes: {e}; docs/api.md shows the body of \
                 each route"
            ))
        })
    }
}

// ---- node routes ----

/// The body of a failed `POST /v1/join`: the usual `error`, and the failure's `kind` and `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinFailureBody {
    pub error: String,
    #[serde(flatten)]
    pub failure: JoinFailure,
}

/// The status a failed join answers with.
pub fn join_failure_status(kind: JoinFailureKind) -> StatusCode {
    match kind {
        JoinFailureKind::Malformed
        | JoinFailureKind::Unknown
        | JoinFailureKind::Expired
        | JoinFailureKind::Revoked
        | JoinFailureKind::UsedUp
        | JoinFailureKind::Refused => StatusCode::FORBIDDEN,
        JoinFailureKind::Unreachable => StatusCode::GATEWAY_TIMEOUT,
        JoinFailureKind::AlreadyJoined => StatusCode::CONFLICT,
    }
}

/// `GET /v1/status`, its peers sorted by name, then key.
async fn status(State(state): State<Arc<ApiState>>) -> Result<Json<NodeStatus>, ApiError> {
    let mut status = ask_node(&state, NodeRequest::Status).await?;
    sort_peers(&mut status);
    Ok(Json(status))
}

/// Puts a status's peers in the order `meshd status` shows them: by name, then by public key (so
/// peers of the same name, or none, keep one order from call to call).
pub fn sort_peers(status: &mut NodeStatus) {
    status
        .peers
        .sort_by(|a, b| (&a.name, &a.public_key).cmp(&(&b.name, &b.public_key)));
}

/// `POST /v1/join`
async fn join(State(state): State<Arc<ApiState>>, JsonBody(req): JsonBody<JoinRequest>) -> Response {
    // The request holds the token: log where it goes, never the request itself.
    tracing::info!("admin API: joining through the controller at {}", req.controller);
    let controller = req.controller;
    // A closed port answers with ICMP "port unreachable" at once; the join itself would wait for
    // its timeout. Whichever comes first answers; the mesh task forgets a join whose caller left
    // when the next join comes, so that one may follow at once.
    let answer = tokio::select! {
        answer = ask_node(&state, |reply| NodeRequest::Join(req, reply)) => answer,
        error = join_probe::unreachable(controller) => Ok(Err(join_probe::failure(controller, &error))),
    };
    match answer {
        Ok(Ok(joined)) => Json::<JoinResponse>(joined).into_response(),
        Ok(Err(failure)) => {
            tracing::info!("admin API: join failed: {}", failure.message);
            let status = join_failure_status(failure.kind);
            let body = JoinFailureBody {
                error: failure.message.clone(),
                failure,
            };
            (status, Json(body)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/leave`: `409` when the node is not a member, `504` when the controller did not answer.
async fn leave(State(state): State<Arc<ApiState>>) -> Result<Json<LeaveResponse>, ApiError> {
    tracing::info!("admin API: leaving the network");
    match ask_node(&state, NodeRequest::Leave).await? {
        Ok(left) => Ok(Json(left)),
        Err(why) => {
            let status = if why.contains("no answer") {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::CONFLICT
            };
            Err(ApiError::new(status, why))
        }
    }
}

/// Sends a request to the mesh task and waits (bounded) for its answer.
async fn ask_node<T>(
    state: &ApiState,
    request: impl FnOnce(oneshot::Sender<T>) -> NodeRequest,
) -> Result<T, ApiError> {
    let gone = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon's mesh task is not running (it stopped or is still starting); see the \
             daemon's log, and restart it with `meshd up`",
        )
    };
    let (tx, rx) = oneshot::channel();
    state.node.send(request(tx)).await.map_err(|_| gone())?;
    match tokio::time::timeout(NODE_TIMEOUT, rx).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err(gone()),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the daemon's mesh task did not answer within {} s; see the daemon's log",
                NODE_TIMEOUT.as_secs()
            ),
        )),
    }
}
