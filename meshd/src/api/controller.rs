//! The controller's routes: networks, join tokens and members, as JSON.
//!
//! The `*View` types are what the routes answer with, and the `Create*` types what they take; the
//! client deserializes the same types. Times are Unix seconds, keys base64 as `wg show` prints them.
//! A token's secret appears only in [`CreatedToken::token`], in the one response that makes it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use meshd_crypto::PublicKey;
use meshd_packet::{Ipv4Prefix, Ipv6Prefix};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::server::{ApiState, ControllerHandle, JsonBody};
use super::{decode_key, encode_key};
use meshd_controller::{Member, Network, NetworkSpec, Store, TokenId, TokenInfo, TokenPolicy};
use meshd_core::token::{JoinKind, TokenError, unix_secs};
use meshd_wg::sys::clock;

/// The MTU of a network created without one: what fits every path on a 1500-byte underlay, relayed
/// over IPv6 included (`meshd_packet::mtu`).
pub const DEFAULT_MTU: u16 = meshd_packet::mtu::DEFAULT_MTU;

/// `POST /v1/networks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNetwork {
    pub name: String,
    /// The IPv4 block members get addresses from, e.g. `"10.77.0.0/24"`.
    pub ipv4: String,
    /// An optional IPv6 block, e.g. `"fd77::/64"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// Default [`DEFAULT_MTU`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

/// The query of `DELETE /v1/networks/{name}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteNetwork {
    /// Delete it with its members (they are told they were removed).
    #[serde(default)]
    pub force: bool,
}

/// What `DELETE /v1/networks/{name}` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedNetwork {
    pub name: String,
    /// Members removed with it (not counting the controller's own node).
    pub members_removed: usize,
}

/// A network, with how many members and tokens it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkView {
    pub name: String,
    /// The network's random id (32 hex digits), which members keep with their membership.
    pub id: String,
    pub ipv4: String,
    pub ipv6: Option<String>,
    pub mtu: u16,
    /// The addresses the network keeps for the controller's own node.
    pub controller_ipv4: Option<Ipv4Addr>,
    pub controller_ipv6: Option<Ipv6Addr>,
    pub created: i64,
    pub member_count: usize,
    pub authorized_count: usize,
    /// Every token, including revoked, expired and used-up ones.
    pub token_count: usize,
    /// Tokens that would admit a new machine now.
    pub usable_token_count: usize,
}

/// `POST /v1/networks/{name}/tokens`. An empty body (or `{}`) makes a single-use token that does not
/// expire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// How many machines may join with it; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
    /// Any number of machines may join with it (then `uses` must be absent).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unlimited: bool,
    /// The token stops working this many seconds from now; default never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
}

/// Whether a token would admit a new machine now, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    Usable,
    Revoked,
    Expired,
    UsedUp,
}

/// A join token without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// 16 hex digits; `DELETE /v1/tokens/{id}` revokes it.
    pub id: String,
    pub network: String,
    /// The uses it was created with; `null`: unlimited.
    pub max_uses: Option<u32>,
    /// `null`: unlimited.
    pub uses_left: Option<u32>,
    pub expires: Option<i64>,
    pub revoked: bool,
    pub created: i64,
    pub state: TokenState,
}

/// The answer to `POST /v1/networks/{name}/tokens`: the token text, shown this once.
#[derive(Serialize, Deserialize)]
pub struct CreatedToken {
    /// `meshd1-...`: what `meshd join` takes. It holds the secret; the controller keeps only a hash.
    pub token: String,
    pub info: TokenView,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// A member of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub network: String,
    /// Base64, as `wg show` prints it.
    pub public_key: String,
    /// Unique in the network and DNS-safe; the controller chose it from the name the member asked
    /// for.
    pub name: String,
    /// The name the member asked for, with control, bidi and zero-width characters taken out.
    pub label: String,
    pub authorized: bool,
    /// A border router that announces the network's block; the others send their Internet
    /// traffic through it.
    pub ingress: bool,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub created: i64,
    pub last_seen: Option<i64>,
    pub last_endpoint: Option<SocketAddr>,
}

impl NetworkView {
    fn new(network: &Network, members: &[Member], tokens: &[TokenInfo], now: SystemTime) -> Self {
        NetworkView {
            name: network.name.clone(),
            id: network.id.to_string(),
            ipv4: network.ipv4().to_string(),
            ipv6: network.ipv6().map(|p| p.to_string()),
            mtu: network.mtu,
            controller_ipv4: network.plan.controller_v4(),
            controller_ipv6: network.plan.controller_v6(),
            created: unix_secs(network.created),
            member_count: members.len(),
            authorized_count: members.iter().filter(|m| m.authorized).count(),
            token_count: tokens.len(),
            usable_token_count: tokens
                .iter()
                .filter(|t| token_state(t, now) == TokenState::Usable)
                .count(),
        }
    }
}

impl TokenView {
    fn new(info: &TokenInfo, now: SystemTime) -> Self {
        TokenView {
            id: info.id.to_string(),
            network: info.network.clone(),
            max_uses: info.max_uses,
            uses_left: info.limits.uses_left,
            expires: info.limits.expires.map(unix_secs),
            revoked: info.limits.revoked,
            created: unix_secs(info.created),
            state: token_state(info, now),
        }
    }
}

impl From<&Member> for MemberView {
    fn from(m: &Member) -> Self {
        MemberView {
            network: m.network.clone(),
            public_key: encode_key(&m.public_key),
            name: m.name.clone(),
            label: m.label.clone(),
            authorized: m.authorized,
            ingress: m.ingress,
            ipv4: m.ipv4,
            ipv6: m.ipv6,
            created: unix_secs(m.created),
            last_seen: m.last_seen.map(unix_secs),
            last_endpoint: m.last_endpoint,
        }
    }
}

fn token_state(info: &TokenInfo, now: SystemTime) -> TokenState {
    match info.limits.admit(now, JoinKind::First) {
        Ok(()) => TokenState::Usable,
        Err(TokenError::Revoked) => TokenState::Revoked,
        Err(TokenError::Expired { .. }) => TokenState::Expired,
        Err(TokenError::UsedUp) => TokenState::UsedUp,
        // `admit` decides on the limits alone and returns none of the others.
        Err(TokenError::Malformed | TokenError::Unknown) => TokenState::Revoked,
    }
}

// ---- handlers ----

type Reply<T> = Result<Json<T>, ApiError>;

/// `GET /v1/networks`. A network whose stored row cannot be read is left out (and logged), so the
/// others stay listed; `GET /v1/networks/{name}` names its fault.
pub async fn list_networks(State(state): State<Arc<ApiState>>) -> Reply<Vec<NetworkView>> {
    let ctl = controller(&state)?;
    with_store(ctl, move |store, now| {
        let mut views = Vec::new();
        for name in store.network_names()? {
            match store
                .network(&name)
                .map_err(ApiError::from)
                .and_then(|n| network_view(store, &n, now))
            {
                Ok(view) => views.push(view),
                Err(e) => tracing::error!("admin API: network {name:?} left out of the list: {}", e.message),
            }
        }
        Ok(views)
    })
    .await
    .map(Json)
}

/// `DELETE /v1/networks/{name}[?force=true]`
pub async fn delete_network(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<DeleteNetwork>,
) -> Reply<DeletedNetwork> {
    let ctl = controller(&state)?;
    let keep = ctl.controller_key;
    let deleted = with_store(ctl, move |store, now| {
        let members_removed = store.delete_network(&name, query.force, &keep, now)?;
        Ok(DeletedNetwork {
            name,
            members_removed,
        })
    })
    .await?;
    ctl.changed.notify_one();
    tracing::info!(
        "admin API: network {:?} deleted ({} members removed)",
        deleted.name,
        deleted.members_removed
    );
    Ok(Json(deleted))
}

/// `POST /v1/networks`
pub async fn create_network(
    State(state): State<Arc<ApiState>>,
    JsonBody(req): JsonBody<CreateNetwork>,
) -> Result<(StatusCode, Json<NetworkView>), ApiError> {
    let ctl = controller(&state)?;
    let spec = NetworkSpec {
        ipv4: parse_block::<Ipv4Prefix>("ipv4", &req.ipv4, "10.77.0.0/24")?,
        ipv6: req
            .ipv6
            .as_deref()
            .map(|text| parse_block::<Ipv6Prefix>("ipv6", text, "fd77::/64"))
            .transpose()?,
        mtu: req.mtu.unwrap_or(DEFAULT_MTU),
        reserve_controller: true,
        name: req.name,
    };
    let view = with_store(ctl, move |store, now| {
        let network = store.create_network(&spec, now)?;
        network_view(store, &network, now)
    })
    .await?;
    ctl.changed.notify_one();
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/networks/{name}`
pub async fn show_network(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Reply<NetworkView> {
    let ctl = controller(&state)?;
    with_store(ctl, move |store, now| {
        let network = store.network(&name)?;
        network_view(store, &network, now)
    })
    .await
    .map(Json)
}

/// `GET /v1/networks/{name}/tokens`
pub async fn list_tokens(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Reply<Vec<TokenView>> {
    let ctl = controller(&state)?;
    with_store(ctl, move |store, now| {
        Ok(store
            .tokens(&name)?
            .iter()
            .map(|t| TokenView::new(t, now))
            .collect())
    })
    .await
    .map(Json)
}

/// `POST /v1/networks/{name}/tokens`
pub async fn create_token(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let ctl = controller(&state)?;
    let uses = match (req.uses, req.unlimited) {
        (Some(_), true) => {
            return Err(ApiError::bad_request(
                "give either `uses` or `unlimited: true`, not both",
            ));
        }
        (None, true) => None,
        (None, false) => Some(NonZeroU32::MIN),
        (Some(n), false) => Some(NonZeroU32::new(n).ok_or_else(|| {
            ApiError::bad_request(
                "`uses` is 0, so nobody could join with the token; give 1 or more, or \
                 `unlimited: true`",
            )
        })?),
    };
    let expires_in = match req.expires_in_secs {
        Some(0) => {
            return Err(ApiError::bad_request(
                "`expires_in_secs` is 0, so the token would be expired already; give a number of \
                 seconds from now, or leave it out for a token that does not expire",
            ));
        }
        // Beyond a century, SystemTime arithmetic might overflow; nobody means that.
        Some(secs) if secs > 100 * 365 * 86_400 => {
            return Err(ApiError::bad_request(
                "`expires_in_secs` is more than a century; leave it out for a token that does not \
                 expire",
            ));
        }
        other => other.map(Duration::from_secs),
    };
    let ctl2 = ctl.clone();
    let created = with_store(ctl, move |store, now| {
        let mut policy = TokenPolicy { uses, expires: None };
        if let Some(d) = expires_in {
            policy = policy.expiring(now + d);
        }
        let mut rng = ctl2.rng.lock().map_err(|_| poisoned())?;
        let (info, text) = store.create_token(&name, &ctl2.controller_key, policy, now, &mut *rng)?;
        Ok(CreatedToken {
            token: text.expose().to_string(),
            info: TokenView::new(&info, now),
        })
    })
    .await?;
    tracing::info!(
        "admin API: created join token {} for network {:?}",
        created.info.id,
        created.info.network
    );
    Ok((StatusCode::CREATED, Json(created)))
}

/// `DELETE /v1/tokens/{id}`
pub async fn revoke_token(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Reply<TokenView> {
    let ctl = controller(&state)?;
    let id: TokenId = id.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{id:?} is not a token id; an id is the 16 hex digits `meshd token list` shows"
        ))
    })?;
    let view = with_store(ctl, move |store, now| {
        Ok(TokenView::new(&store.revoke_token(id)?, now))
    })
    .await?;
    tracing::info!("admin API: revoked join token {}", view.id);
    Ok(Json(view))
}

/// `GET /v1/networks/{name}/members`
pub async fn list_members(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Reply<Vec<MemberView>> {
    let ctl = controller(&state)?;
    with_store(ctl, move |store, _| {
        Ok(store.members(&name)?.iter().map(MemberView::from).collect())
    })
    .await
    .map(Json)
}

/// `GET /v1/networks/{name}/members/{member}`
pub async fn show_member(
    State(state): State<Arc<ApiState>>,
    Path((network, member)): Path<(String, String)>,
) -> Reply<MemberView> {
    let ctl = controller(&state)?;
    with_store(ctl, move |store, _| {
        let key = resolve_member(store, &network, &member)?;
        Ok(MemberView::from(&store.member(&network, &key)?))
    })
    .await
    .map(Json)
}

/// `POST /v1/networks/{name}/members/{member}/authorize`
pub async fn authorize_member(
    state: State<Arc<ApiState>>,
    path: Path<(String, String)>,
) -> Reply<MemberView> {
    change_member(state, path, MemberChange::Authorized(true)).await
}

/// `POST /v1/networks/{name}/members/{member}/deauthorize`
pub async fn deauthorize_member(
    state: State<Arc<ApiState>>,
    path: Path<(String, String)>,
) -> Reply<MemberView> {
    change_member(state, path, MemberChange::Authorized(false)).await
}

/// `POST /v1/networks/{name}/members/{member}/ingress`
pub async fn make_ingress(state: State<Arc<ApiState>>, path: Path<(String, String)>) -> Reply<MemberView> {
    change_member(state, path, MemberChange::Ingress(true)).await
}

/// `DELETE /v1/networks/{name}/members/{member}/ingress`
pub async fn unmake_ingress(state: State<Arc<ApiState>>, path: Path<(String, String)>) -> Reply<MemberView> {
    change_member(state, path, MemberChange::Ingress(false)).await
}

/// A change to one member that every node's map must reflect.
#[derive(Debug, Clone, Copy)]
enum MemberChange {
    Authorized(bool),
    Ingress(bool),
}

async fn change_member(
    State(state): State<Arc<ApiState>>,
    Path((network, member)): Path<(String, String)>,
    change: MemberChange,
) -> Reply<MemberView> {
    let ctl = controller(&state)?;
    let view = with_store(ctl, move |store, _| {
        let key = resolve_member(store, &network, &member)?;
        let member = match change {
            MemberChange::Authorized(on) => store.set_authorized(&network, &key, on)?,
            MemberChange::Ingress(on) => store.set_ingress(&network, &key, on)?,
        };
        Ok(MemberView::from(&member))
    })
    .await?;
    ctl.changed.notify_one();
    let what = match change {
        MemberChange::Authorized(true) => "authorized",
        MemberChange::Authorized(false) => "deauthorized",
        MemberChange::Ingress(true) => "made an ingress",
        MemberChange::Ingress(false) => "no longer an ingress",
    };
    tracing::info!(
        "admin API: member {:?} of network {:?} {what}",
        view.name,
        view.network
    );
    Ok(Json(view))
}

/// `DELETE /v1/networks/{name}/members/{member}`
pub async fn remove_member(
    State(state): State<Arc<ApiState>>,
    Path((network, member)): Path<(String, String)>,
) -> Reply<MemberView> {
    let ctl = controller(&state)?;
    let view = with_store(ctl, move |store, now| {
        let key = resolve_member(store, &network, &member)?;
        Ok(MemberView::from(&store.remove_member(&network, &key, now)?))
    })
    .await?;
    ctl.changed.notify_one();
    tracing::info!(
        "admin API: member {:?} removed from network {:?}",
        view.name,
        view.network
    );
    Ok(Json(view))
}

// ---- helpers ----

fn controller(state: &ApiState) -> Result<&ControllerHandle, ApiError> {
    state
        .controller
        .as_ref()
        .ok_or_else(ApiError::controller_disabled)
}

fn poisoned() -> ApiError {
    ApiError::internal(
        "the controller state is unusable after an internal error; restart the daemon (its \
         database is intact: every change is committed or not made)",
    )
}

/// Runs `f` on the store in a blocking task (SQLite with an fsync per commit would stall the runtime),
/// with the wall-clock time.
async fn with_store<T, F>(ctl: &ControllerHandle, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut Store, SystemTime) -> Result<T, ApiError> + Send + 'static,
{
    let store = Arc::clone(&ctl.store);
    tokio::task::spawn_blocking(move || {
        let mut store = store.lock().map_err(|_| poisoned())?;
        f(&mut store, clock::wall())
    })
    .await
    .map_err(|e| {
        tracing::warn!("admin API: a controller task failed: {e}");
        ApiError::internal("a controller task failed; the daemon's log has the details")
    })?
}

fn network_view(store: &Store, network: &Network, now: SystemTime) -> Result<NetworkView, ApiError> {
    let members = store.members(&network.name)?;
    let tokens = store.tokens(&network.name)?;
    Ok(NetworkView::new(network, &members, &tokens, now))
}

/// Reads a block in CIDR form, refusing host bits (`10.0.0.5/24`) rather than silently clearing them:
/// the operator probably meant something else.
fn parse_block<P>(field: &str, text: &str, example: &str) -> Result<P, ApiError>
where
    P: std::str::FromStr + std::fmt::Display,
    P::Err: std::fmt::Display,
{
    let text = text.trim();
    if !text.contains('/') {
        return Err(ApiError::bad_request(format!(
            "`{field}` is {text:?}, but it must be a block in CIDR form such as \"{example}\""
        )));
    }
    let block: P = text.parse().map_err(|e| {
        ApiError::bad_request(format!(
            "`{field}` is {text:?}, which is not a block in CIDR form such as \"{example}\" ({e})"
        ))
    })?;
    let canonical = block.to_string();
    if canonical != text {
        return Err(ApiError::bad_request(format!(
            "`{field}` {text:?} has host bits set; did you mean \"{canonical}\"?"
        )));
    }
    Ok(block)
}

/// The key of the member `which` names: its public key in base64 (standard or URL-safe), one of its
/// addresses, or its name (unique in a network; any case).
fn resolve_member(store: &Store, network: &str, which: &str) -> Result<PublicKey, ApiError> {
    let members = store.members(network)?;
    let which = which.trim();
    let key = decode_key(which);
    if let Some(key) = key
        && members.iter().any(|m| m.public_key == key)
    {
        return Ok(key);
    }
    if let Ok(ip) = which.parse::<std::net::IpAddr>() {
        let ip = ip.to_canonical();
        return members
            .iter()
            .find(|m| ip == std::net::IpAddr::V4(m.ipv4) || m.ipv6.is_some_and(|a| ip == a))
            .map(|m| m.public_key)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no member of network {network:?} has the address {ip}; `meshd member list \
                     --network {network}` shows the members"
                ))
            });
    }
    let lower = which.to_ascii_lowercase();
    if let Some(m) = members.iter().find(|m| m.name == lower) {
        return Ok(m.public_key);
    }
    // A key that is not a member: the store's error says so.
    key.ok_or_else(|| {
        ApiError::not_found(format!(
            "network {network:?} has no member named {which:?} (nor is it a public key or an \
             address); `meshd member list --network {network}` shows the members"
        ))
    })
}
