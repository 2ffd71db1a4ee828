//! A small blocking client for the admin API, as the CLI uses it.
//!
//! It prefers the daemon's Unix socket (`<state_dir>/api.sock`, no token needed) and uses the loopback
//! TCP address with the bearer token only when there is no socket. The server is meshd's own, so this
//! speaks just enough HTTP/1.1: one request per
//! connection (`Connection: close`), the response read to the end, its body framed by
//! `Content-Length`, by chunked transfer coding, or by the end of the stream. No TLS, no redirects, no
//! keep-alive. Timeouts: 2 s to connect, 30 s for each read (a join waits for the controller, up to
//! about 10 s).

use core::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::auth::ApiToken;
use super::controller::{
    CreateNetwork, CreateToken, CreatedToken, DeletedNetwork, MemberView, NetworkView, TokenView,
};
use super::error::ErrorBody;
use super::node::{JoinFailure, JoinRequest, JoinResponse, LeaveResponse, NodeStatus};
use super::server::JoinFailureBody;
use crate::config::Config;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// A response larger than this is not from meshd.
const MAX_RESPONSE: u64 = 64 << 20;

/// Where the API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The daemon's Unix socket.
    Unix(PathBuf),
    /// A loopback TCP address.
    Tcp(SocketAddr),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "{}", path.display()),
            Target::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// Why a call failed.
#[derive(Debug)]
pub enum ClientError {
    /// The API token file could not be read; the error names it and says what to do.
    Token(io::Error),
    /// Nothing accepted the connection.
    Connect { addr: Target, error: io::Error },
    /// The connection broke or timed out.
    Io { addr: Target, error: io::Error },
    /// What came back is not an HTTP response from meshd.
    Protocol { addr: Target, what: String },
    /// The API answered with an error; `message` says what to fix.
    Api { status: u16, message: String },
    /// `POST /v1/join` failed: the controller refused, or did not answer.
    Join { status: u16, failure: JoinFailure },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Token(e) => e.fmt(f),
            ClientError::Connect { addr, error } => match error.kind() {
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => write!(
                    f,
                    "cannot connect to the meshd API at {addr}: {}; is the daemon running? Start it \
                     with `meshd up` (and give this command the same --config)",
                    if error.kind() == io::ErrorKind::NotFound {
                        "there is no socket there"
                    } else {
                        "connection refused"
                    }
                ),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => write!(
                    f,
                    "cannot connect to the meshd API at {addr}: no answer within {} s; is the daemon \
                     running (`meshd up`)?",
                    CONNECT_TIMEOUT.as_secs()
                ),
                io::ErrorKind::PermissionDenied => write!(
                    f,
                    "cannot connect to the meshd API at {addr}: permission denied; only the user the \
                     daemon runs as (root, usually) may use it: run this as root, e.g. with sudo"
                ),
                _ => write!(f, "cannot connect to the meshd API at {addr}: {error}"),
            },
            ClientError::Io { addr, error } => match error.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => write!(
                    f,
                    "the meshd API at {addr} did not answer within {} s; see the daemon's log",
                    READ_TIMEOUT.as_secs()
                ),
                _ => write!(f, "talking to the meshd API at {addr}: {error}"),
            },
            ClientError::Protocol { addr, what } => write!(
                f,
                "{addr} did not answer like the meshd API ({what}); is the `api` address in the \
                 configuration the daemon's?"
            ),
            ClientError::Api { message, .. } => f.write_str(message),
            ClientError::Join { failure, .. } => f.write_str(&failure.message),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Join { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A response as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    pub status: u16,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client for the API at one place: the Unix socket, or a TCP address with the bearer token.
pub struct ApiClient {
    addr: Target,
    token: Option<Zeroizing<String>>,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

impl ApiClient {
    /// A client for the TCP address `addr`, sending `token`.
    pub fn new(addr: SocketAddr, token: &ApiToken) -> Self {
        ApiClient {
            addr: Target::Tcp(addr),
            token: Some(Zeroizing::new(token.expose().to_string())),
        }
    }

    /// A client for the daemon's Unix socket at `path` (no token needed).
    pub fn unix(path: &Path) -> Self {
        ApiClient {
            addr: Target::Unix(path.to_path_buf()),
            token: None,
        }
    }

    /// The client for the daemon `config` describes: its Unix socket if there is one (or if the
    /// state directory cannot be looked into, in which case connecting says why), else its `api`
    /// address with the token file.
    pub fn from_config(config: &Config) -> Result<Self, ClientError> {
        let socket = config.api_socket_path();
        let no_socket =
            matches!(std::fs::symlink_metadata(&socket), Err(e) if e.kind() == io::ErrorKind::NotFound);
        if !no_socket || !config.api_tcp {
            return Ok(ApiClient::unix(&socket));
        }
        let token = ApiToken::load(&config.api_token_path()).map_err(ClientError::Token)?;
        Ok(ApiClient::new(config.api, &token))
    }

    /// A client for the TCP address `addr` that sends `token` as given, or no `Authorization` header
    /// at all.
    pub fn with_bearer(addr: SocketAddr, token: Option<&str>) -> Self {
        ApiClient {
            addr: Target::Tcp(addr),
            token: token.map(|t| Zeroizing::new(t.to_string())),
        }
    }

    /// Where this client connects.
    pub fn target(&self) -> &Target {
        &self.addr
    }

    // ---- node ----

    pub fn status(&self) -> Result<NodeStatus, ClientError> {
        self.call("GET", "/v1/status", None::<&()>)
    }

    /// Joins a network. A refusal or an unreachable controller is [`ClientError::Join`].
    pub fn join(&self, request: &JoinRequest) -> Result<JoinResponse, ClientError> {
        let body = serde_json::to_vec(request).map_err(|e| self.protocol(e))?;
        let response = self.send("POST", "/v1/join", Some(&body))?;
        if !(200..300).contains(&response.status)
            && let Ok(failed) = serde_json::from_slice::<JoinFailureBody>(&response.body)
        {
            return Err(ClientError::Join {
                status: response.status,
                failure: failed.failure,
            });
        }
        self.decode(response)
    }

    /// Leaves the network (the controller removes this node).
    pub fn leave(&self) -> Result<LeaveResponse, ClientError> {
        self.call("POST", "/v1/leave", None::<&()>)
    }

    // ---- networks ----

    pub fn networks(&self) -> Result<Vec<NetworkView>, ClientError> {
        self.call("GET", "/v1/networks", None::<&()>)
    }

    pub fn create_network(&self, request: &CreateNetwork) -> Result<NetworkView, ClientError> {
        self.call("POST", "/v1/networks", Some(request))
    }

    pub fn network(&self, name: &str) -> Result<NetworkView, ClientError> {
        self.call("GET", &format!("/v1/networks/{}", segment(name)), None::<&()>)
    }

    /// Deletes a network; with `force` also when it has members.
    pub fn delete_network(&self, name: &str, force: bool) -> Result<DeletedNetwork, ClientError> {
        let query = if force { "?force=true" } else { "" };
        self.call(
            "DELETE",
            &format!("/v1/networks/{}{query}", segment(name)),
            None::<&()>,
        )
    }

    // ---- tokens ----

    pub fn tokens(&self, network: &str) -> Result<Vec<TokenView>, ClientError> {
        self.call(
            "GET",
            &format!("/v1/networks/{}/tokens", segment(network)),
            None::<&()>,
        )
    }

    pub fn create_token(&self, network: &str, request: &CreateToken) -> Result<CreatedToken, ClientError> {
        self.call(
            "POST",
            &format!("/v1/networks/{}/tokens", segment(network)),
            Some(request),
        )
    }

    pub fn revoke_token(&self, id: &str) -> Result<TokenView, ClientError> {
        self.call("DELETE", &format!("/v1/tokens/{}", segment(id)), None::<&()>)
    }

    // ---- members ----

    pub fn members(&self, network: &str) -> Result<Vec<MemberView>, ClientError> {
        self.call(
            "GET",
            &format!("/v1/networks/{}/members", segment(network)),
            None::<&()>,
        )
    }

    /// `member` is a public key (base64) or a member's name.
    pub fn member(&self, network: &str, member: &str) -> Result<MemberView, ClientError> {
        self.call("GET", &member_path(network, member, ""), None::<&()>)
    }

    pub fn authorize(&self, network: &str, member: &str) -> Result<MemberView, ClientError> {
        self.call("POST", &member_path(network, member, "/authorize"), None::<&()>)
    }

    pub fn deauthorize(&self, network: &str, member: &str) -> Result<MemberView, ClientError> {
        self.call("POST", &member_path(network, member, "/deauthorize"), None::<&()>)
    }

    /// Makes a member an ingress of its network (`true`) or not (`false`).
    pub fn set_ingress(&self, network: &str, member: &str, ingress: bool) -> Result<MemberView, ClientError> {
        let method = if ingress { "POST" } else { "DELETE" };
        self.call(method, &member_path(network, member, "/ingress"), None::<&()>)
    }

    pub fn remove_member(&self, network: &str, member: &str) -> Result<MemberView, ClientError> {
        self.call("DELETE", &member_path(network, member, ""), None::<&()>)
    }

    // ---- plumbing ----

    /// Sends a request with an optional JSON body and decodes a JSON answer, or the API's error.
    pub fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| self.protocol(e))?;
        let response = self.send(method, path, body.as_deref())?;
        self.decode(response)
    }

    fn decode<T: DeserializeOwned>(&self, response: RawResponse) -> Result<T, ClientError> {
        if (200..300).contains(&response.status) {
            return serde_json::from_slice(&response.body)
                .map_err(|e| self.protocol(format!("the response body does not parse: {e}")));
        }
        let message = match serde_json::from_slice::<ErrorBody>(&response.body) {
            Ok(body) => body.error,
            Err(_) => format!(
                "the API answered {} with no message{}",
                response.status,
                if response.body.is_empty() {
                    String::new()
                } else {
                    format!(": {}", String::from_utf8_lossy(&response.body).trim())
                }
            ),
        };
        Err(ClientError::Api {
            status: response.status,
            message,
        })
    }

    /// One request, one connection: writes the request, reads the response to the end of the stream.
    pub fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<RawResponse, ClientError> {
        let addr = &self.addr;
        let io = |error| ClientError::Io {
            addr: addr.clone(),
            error,
        };
        let connect = |error| ClientError::Connect {
            addr: addr.clone(),
            error,
        };
        let (mut stream, host) = match addr {
            Target::Tcp(tcp) => {
                let stream = TcpStream::connect_timeout(tcp, CONNECT_TIMEOUT).map_err(connect)?;
                stream.set_nodelay(true).map_err(io)?;
                (Stream::Tcp(stream), tcp.to_string())
            }
            // A local socket connects at once or not at all.
            Target::Unix(path) => (
                Stream::Unix(UnixStream::connect(path).map_err(connect)?),
                "localhost".to_string(),
            ),
        };
        stream.set_timeouts(READ_TIMEOUT, WRITE_TIMEOUT).map_err(io)?;

        let mut head = Zeroizing::new(format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n\
             User-Agent: meshd/{}\r\n",
            env!("CARGO_PKG_VERSION")
        ));
        if let Some(token) = &self.token {
            head.push_str("Authorization: Bearer ");
            head.push_str(token);
            head.push_str("\r\n");
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() || method != "GET" {
            head.push_str("Content-Type: application/json\r\n");
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(body).map_err(io)?;
        stream.flush().map_err(io)?;

        let mut raw = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .map_err(io)?;
        parse_response(&raw).map_err(|what| ClientError::Protocol {
            addr: addr.clone(),
            what,
        })
    }

    fn protocol(&self, e: impl fmt::Display) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.clone(),
            what: e.to_string(),
        }
    }
}

/// A connection to the API, over either transport.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn set_timeouts(&self, read: Duration, write: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(write))
            }
            Stream::Unix(s) => {
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(write))
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

fn member_path(network: &str, member: &str, suffix: &str) -> String {
    format!(
        "/v1/networks/{}/members/{}{suffix}",
        segment(network),
        segment(member)
    )
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters, so that a
/// base64 key's `/`, `+` and `=` and a name's spaces arrive as they were.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses a whole HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> Result<RawResponse, String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| {
        if raw.is_empty() {
            "the connection closed without a response".to_string()
        } else {
            "the response has no end of headers".to_string()
        }
    })?;
    let head =
        std::str::from_utf8(&raw[..end]).map_err(|_| "the response headers are not text".to_string())?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 status line: {status_line:?}"));
    }
    let status: u16 = code
        .parse()
        .ok()
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| format!("bad status in {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    response.body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().map_err(|_| format!("bad Content-Length {len:?}"))?;
        rest.get(..len)
            .ok_or_else(|| format!("the body was cut short ({} of {len} bytes)", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(response)
}

/// Decodes a chunked body (RFC 9112 section 7.1); trailers are ignored.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line is cut short")?;
        let line = std::str::from_utf8(&rest[..line_end]).map_err(|_| "a chunk size is not text")?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("a chunk is cut short")?;
        body.extend_from_slice(chunk);
        rest = rest
            .get(size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or("a chunk does not end in CRLF")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_bodies() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.body, b"{}");
        let e = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n{}").unwrap_err();
        assert!(e.contains("cut short"), "{e}");
    }

    #[test]
    fn chunked_bodies() {
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.body, b"{\"a\":1}");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }

    #[test]
    fn bodies_to_the_end_and_garbage() {
        let r = parse_response(b"HTTP/1.0 204 No Content\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
        assert!(parse_response(b"").unwrap_err().contains("closed"));
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
    }

    #[test]
    fn segments_escape_what_paths_would_split() {
        assert_eq!(segment("lab-1.east_2~"), "lab-1.east_2~");
        assert_eq!(segment("ab/c+d="), "ab%2Fc%2Bd%3D");
        assert_eq!(segment("Küche pc"), "K%C3%BCche%20pc");
    }

    #[test]
    fn a_refused_connection_suggests_meshd_up() {
        let e = ClientError::Connect {
            addr: Target::Tcp("127.0.0.1:7450".parse().unwrap()),
            error: io::ErrorKind::ConnectionRefused.into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("127.0.0.1:7450") && text.contains("meshd up"),
            "{text}"
        );
    }
}
