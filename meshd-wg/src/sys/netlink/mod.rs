//! The policy-routing rules and routes meshd installs, over rtnetlink.
//!
//! meshd steers traffic with two kinds of kernel objects:
//!
//! - rules (`ip rule`): traffic from a node's public addresses, or from an ingress block arriving on
//!   the mesh interface, is looked up in a table of meshd's own;
//! - routes (`ip route`) in those tables, tagged with meshd's `rtm_protocol` so that its routes can
//!   be told from everyone else's and swept after a crash.
//!
//! Every change here is idempotent, because meshd applies its whole state again on every start and
//! must leave exactly one copy behind however often it restarted. Routes are idempotent in the kernel
//! already (`NLM_F_CREATE | NLM_F_REPLACE` is `ip route replace`), but rules are not: the kernel
//! happily keeps any number of identical rules, so [`Netlink::ensure_rule`] looks for an identical
//! rule in the kernel's dump before adding one, and [`Netlink::remove_rule`] removes every copy.
//!
//! A route goes when its output interface goes: the kernel flushes it with the link, so a route on
//! the mesh interface (such as the ingress announcement) cannot outlive the interface.
//!
//! Everything talks to the kernel of the network namespace the socket was opened in, through one
//! rtnetlink socket whose connection task runs on the tokio runtime that called
//! [`Netlink::connect`].
//!
//! This module holds the socket and its request plumbing; [`rules`] and [`routes`] hold the two
//! kinds of objects, each with its spec, its requests and the parsing of the kernel's dumps.
//! Prefixes are [`IpPrefix`]es, so a spec cannot carry host bits or a length beyond its family.

use std::fmt;
use std::io;

use futures_util::StreamExt;
use meshd_packet::IpPrefix;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

pub mod routes;
pub mod rules;

pub use routes::RouteSpec;
pub use rules::RuleSpec;

/// The kernel's `RT_TABLE_COMPAT`: the header's table field of a rule or route whose table does not
/// fit in a byte (the real id is then in the `FRA_TABLE`/`RTA_TABLE` attribute).
const RT_TABLE_COMPAT: u8 = 252;

/// How often a dump that the kernel marked inconsistent (`NLM_F_DUMP_INTR`: the list changed while
/// it was being read) is read again before giving up.
const DUMP_ATTEMPTS: usize = 4;

/// An rtnetlink socket and the task that drives it. Dropping it stops the task and closes the socket.
#[derive(Debug)]
pub struct Netlink {
    handle: rtnetlink::Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// Opens an rtnetlink socket in the calling thread's network namespace and spawns its
    /// connection task on the current tokio runtime (multi-thread or current-thread; it needs the
    /// IO driver, as every runtime of the daemon has).
    pub fn connect() -> io::Result<Netlink> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("opening the rtnetlink socket: no tokio runtime: {e}")))?;
        let (mut connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| with_context("opening the rtnetlink socket", e))?;
        // Hand acknowledgements and end-of-dump markers to the requests, so that an answer cut short
        // by a closing connection is an error rather than an empty success.
        connection.set_forward_ack(true);
        connection.set_forward_done(true);
        let task = runtime.spawn(connection);
        Ok(Netlink { handle, task })
    }

    /// The index of the interface called `name`, or `None` if there is none.
    pub async fn link_index(&self, name: &str) -> io::Result<Option<u32>> {
        // The kernel's names are shorter than IFNAMSIZ; it refuses to look up a longer one.
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Ok(None);
        }
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let what = || format!("looking up interface `{name}`");
        match self
            .request(RouteNetlinkMessage::GetLink(message), NLM_F_REQUEST | NLM_F_ACK)
            .await
        {
            Ok(answer) => Ok(answer.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(with_context(what(), e)),
        }
    }

    /// A whole dump, read again if the kernel says the list changed while it was being read.
    async fn dump(&self, request: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        for _ in 0..DUMP_ATTEMPTS {
            match self.exchange(request.clone(), NLM_F_REQUEST | NLM_F_DUMP).await? {
                (answer, false) => return Ok(answer),
                (_, true) => continue,
            }
        }
        Err(io::Error::other(format!(
            "the list kept changing while it was read ({DUMP_ATTEMPTS} attempts)"
        )))
    }

    async fn request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(message, flags).await.map(|(answer, _)| answer)
    }

    /// Sends one request and reads its whole answer: the messages, and whether any was marked as
    /// part of an interrupted dump. The answer must end in an acknowledgement, the end of a dump,
    /// or (for a plain get) the one message asked for; an error from the kernel becomes an
    /// `io::Error` with its errno.
    async fn exchange(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<(Vec<RouteNetlinkMessage>, bool)> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = flags;
        let mut answer = self
            .handle
            .clone()
            .request(request)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the netlink connection is closed"))?;
        let mut messages = Vec::new();
        let mut interrupted = false;
        let mut finished = false;
        while let Some(reply) = answer.next().await {
            interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
            match reply.payload {
                NetlinkPayload::InnerMessage(inner) => messages.push(inner),
                NetlinkPayload::Error(e) => match e.code {
                    None => finished = true,
                    Some(code) => return Err(io::Error::from_raw_os_error(code.get().saturating_neg())),
                },
                NetlinkPayload::Done(done) if done.code != 0 => {
                    return Err(io::Error::from_raw_os_error(done.code.saturating_neg()));
                }
                NetlinkPayload::Done(_) => finished = true,
                NetlinkPayload::Overrun(_) => {
                    return Err(io::Error::other(
                        "the netlink socket overran and lost part of the answer",
                    ));
                }
                NetlinkPayload::Noop => {}
                _ => {}
            }
        }
        if !finished {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the netlink connection closed before the kernel's answer was complete",
            ));
        }
        Ok((messages, interrupted))
    }
}

fn with_context(what: impl fmt::Display, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn family_of(prefix: IpPrefix) -> AddressFamily {
    match prefix {
        IpPrefix::V4(_) => AddressFamily::Inet,
        IpPrefix::V6(_) => AddressFamily::Inet6,
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
