//! The rules and routes of `meshd_wg::sys::netlink` against the real kernel.
//!
//! Each test runs in a thread of its own that first moves into a new, empty network namespace
//! (`unshare(CLONE_NEWNET)` affects only the calling thread and the threads it starts afterwards),
//! so nothing here touches the host's rules, routes or links. The tests need root and skip without.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures_util::TryStreamExt;
use meshd_packet::IpPrefix;
use meshd_wg::sys::netlink::{Netlink, RouteSpec, RuleSpec};
use rtnetlink::packet_route::route::{RouteAttribute, RouteFlags};
use rtnetlink::packet_route::rule::RuleAction;
use rtnetlink::{LinkUnspec, LinkVeth, RouteMessageBuilder};

const TIME_LIMIT: Duration = Duration::from_secs(20);
const PROTO: u8 = 201;
const TABLE: u32 = 201;

/// Runs `test` in a thread that has a network namespace of its own, on a current-thread runtime or
/// a multi-thread one (whose workers, started after the `unshare`, share the namespace).
fn in_netns<F, Fut>(name: &str, multi_thread: bool, test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipping {name}: making a network namespace needs root");
        return;
    }
    let thread = std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_NEWNET) only moves the calling thread into a new network namespace;
        // unlike CLONE_NEWUSER it is allowed in a multithreaded process.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            panic!("unshare(CLONE_NEWNET): {}", io::Error::last_os_error());
        }
        let mut builder = if multi_thread {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        } else {
            tokio::runtime::Builder::new_current_thread()
        };
        let runtime = builder.enable_all().build().expect("tokio runtime");
        runtime.block_on(async {
            tokio::time::timeout(TIME_LIMIT, test())
                .await
                .expect("the test ran out of time");
        });
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// A plain rtnetlink handle of the test's own, for what meshd's API does not do: links, addresses,
/// route lookups, and rules meshd would not make.
fn raw() -> rtnetlink::Handle {
    let (connection, handle, _) = rtnetlink::new_connection().expect("rtnetlink socket");
    tokio::spawn(connection);
    handle
}

/// Makes the veth pair `name`/`name`p, both up, with 10.0.0.1/24 on `name`; returns `name`'s index.
async fn veth(handle: &rtnetlink::Handle, name: &str) -> u32 {
    let peer = format!("{name}p");
    handle
        .link()
        .add(LinkVeth::new(name, &peer).build())
        .execute()
        .await
        .expect("adding a veth pair");
    let mut index = 0;
    for link in [name, peer.as_str()] {
        let message = handle
            .link()
            .get()
            .match_name(link)
            .execute()
            .try_next()
            .await
            .expect("reading the link")
            .expect("the link exists");
        let up = LinkUnspec::new_with_index(message.header.index).up().build();
        handle
            .link()
            .set(up)
            .execute()
            .await
            .expect("bringing the link up");
        if link == name {
            index = message.header.index;
        }
    }
    add_address(handle, index, "10.0.0.1", 24).await;
    index
}

async fn add_address(handle: &rtnetlink::Handle, index: u32, addr: &str, len: u8) {
    handle
        .address()
        .add(index, ip(addr), len)
        .execute()
        .await
        .expect("adding an address");
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The prefix of `addr`'s first `len` bits (host bits are cleared).
fn prefix(addr: &str, len: u8) -> IpPrefix {
    IpPrefix::new(ip(addr), len).unwrap()
}

fn rule(source: &str, len: u8) -> RuleSpec {
    RuleSpec {
        priority: 1000,
        table: 200,
        source: prefix(source, len),
        input_interface: None,
        unless_fwmark: None,
        fwmark: None,
    }
}

fn route(destination: &str, len: u8, gateway: Option<&str>, interface: u32) -> RouteSpec {
    RouteSpec {
        table: TABLE,
        destination: prefix(destination, len),
        gateway: gateway.map(ip),
        interface,
        protocol: PROTO,
    }
}

fn sorted(routes: Vec<RouteSpec>) -> Vec<String> {
    let mut routes: Vec<String> = routes.iter().map(ToString::to_string).collect();
    routes.sort();
    routes
}

#[test]
fn ensure_rule_leaves_exactly_one_copy() {
    in_netns("ensure_rule_leaves_exactly_one_copy", false, || async {
        let netlink = Netlink::connect().unwrap();
        let specs = [
            rule("203.0.113.10", 32),
            RuleSpec {
                input_interface: Some("mesh0".into()),
                ..rule("203.0.113.0", 24)
            },
            RuleSpec {
                unless_fwmark: Some(0x4d53),
                fwmark: None,
                priority: 1001,
                ..rule("203.0.113.10", 32)
            },
            RuleSpec {
                input_interface: Some("mesh0".into()),
                unless_fwmark: Some(0x4d53),
                fwmark: None,
                priority: 1002,
                ..rule("203.0.113.10", 32)
            },
            RuleSpec {
                unless_fwmark: Some(0x4d53),
                fwmark: None,
                priority: 1003,
                ..rule("0.0.0.0", 0)
            },
            // Tables past 255 travel in FRA_TABLE; the dump's header says RT_TABLE_COMPAT.
            RuleSpec {
                table: 100_000,
                priority: 1004,
                ..rule("203.0.113.10", 32)
            },
            rule("2001:db8::10", 128),
            RuleSpec {
                input_interface: Some("mesh0".into()),
                ..rule("2001:db8::", 48)
            },
            RuleSpec {
                unless_fwmark: Some(1),
                fwmark: None,
                priority: 1001,
                ..rule("2001:db8::10", 128)
            },
            RuleSpec {
                input_interface: Some("mesh0".into()),
                unless_fwmark: Some(0xffff_ffff),
                fwmark: None,
                table: 70_000,
                priority: 1002,
                ..rule("2001:db8::10", 128)
            },
        ];
        for spec in &specs {
            assert!(
                netlink.ensure_rule(spec).await.unwrap(),
                "the first ensure of `{spec}` adds it"
            );
            assert!(
                !netlink.ensure_rule(spec).await.unwrap(),
                "the second ensure of `{spec}` adds nothing"
            );
            assert_eq!(netlink.rules(spec).await.unwrap(), 1, "`{spec}`");
        }
        // None was taken for another: each is still there, once.
        for spec in &specs {
            assert_eq!(netlink.rules(spec).await.unwrap(), 1, "`{spec}`");
        }
        // Host bits in the source do not make a second rule.
        let loose = RuleSpec {
            input_interface: Some("mesh0".into()),
            ..rule("203.0.113.99", 24)
        };
        assert!(!netlink.ensure_rule(&loose).await.unwrap());
        for spec in &specs {
            assert_eq!(netlink.remove_rule(spec).await.unwrap(), 1, "`{spec}`");
            assert_eq!(netlink.rules(spec).await.unwrap(), 0, "`{spec}`");
            assert_eq!(
                netlink.remove_rule(spec).await.unwrap(),
                0,
                "removing `{spec}` again"
            );
        }
    });
}

#[test]
fn list_rules_returns_what_ensure_rule_added_in_both_families() {
    in_netns("list_rules_returns_what_ensure_rule_added", false, || async {
        let netlink = Netlink::connect().unwrap();
        let mark = RuleSpec {
            priority: 999,
            table: 254,
            fwmark: Some(0x4d53),
            ..rule("0.0.0.0", 0)
        };
        let specs = [rule("203.0.113.10", 32), rule("2001:db8::10", 128), mark];
        for spec in &specs {
            assert!(netlink.ensure_rule(spec).await.unwrap());
        }
        let listed = netlink.list_rules().await.unwrap();
        for spec in &specs {
            assert_eq!(
                listed.iter().filter(|r| *r == spec).count(),
                1,
                "{spec} in {listed:?}"
            );
        }
        // The kernel's own rules (local, main, default) are listed too: they are plain lookups.
        assert!(listed.iter().any(|r| r.table == 255 && r.priority == 0));
    });
}

#[test]
fn remove_rule_deletes_every_copy() {
    in_netns("remove_rule_deletes_every_copy", false, || async {
        let netlink = Netlink::connect().unwrap();
        let handle = raw();
        let spec = RuleSpec {
            table: 300,
            ..rule("203.0.113.10", 32)
        };
        // What `ip rule add`, run at every start, leaves behind: without NLM_F_EXCL the kernel adds
        // the same rule again each time.
        for _ in 0..3 {
            handle
                .rule()
                .add()
                .v4()
                .source_prefix("203.0.113.10".parse().unwrap(), 32)
                .table_id(300)
                .priority(1000)
                .action(RuleAction::ToTable)
                .replace()
                .execute()
                .await
                .expect("adding a copy");
        }
        assert_eq!(
            netlink.rules(&spec).await.unwrap(),
            3,
            "the kernel keeps duplicate rules"
        );
        assert!(!netlink.ensure_rule(&spec).await.unwrap());
        assert_eq!(netlink.remove_rule(&spec).await.unwrap(), 3);
        assert_eq!(netlink.rules(&spec).await.unwrap(), 0);
    });
}

/// The kernel calls a rule with the invert flag "the same" as one without when adding with
/// NLM_F_EXCL, and deletes the first rule that matches the attributes it is sent. meshd's rules
/// must neither be refused because of such a twin nor be removed by taking the twin.
#[test]
fn similar_rules_are_neither_confused_nor_taken() {
    in_netns("similar_rules_are_neither_confused_nor_taken", false, || async {
        let netlink = Netlink::connect().unwrap();
        let handle = raw();
        // `from 203.0.113.10 fwmark 0x7 lookup 200 pref 1000`: the twin without the invert flag.
        handle
            .rule()
            .add()
            .v4()
            .source_prefix("203.0.113.10".parse().unwrap(), 32)
            .table_id(200)
            .priority(1000)
            .fw_mark(7)
            .action(RuleAction::ToTable)
            .execute()
            .await
            .expect("adding the twin");
        let inverted = RuleSpec {
            unless_fwmark: Some(7),
            fwmark: None,
            ..rule("203.0.113.10", 32)
        };
        assert_eq!(
            netlink.rules(&inverted).await.unwrap(),
            0,
            "the twin is not identical"
        );
        assert!(netlink.ensure_rule(&inverted).await.unwrap());
        assert_eq!(netlink.rules(&inverted).await.unwrap(), 1);
        let e = netlink.remove_rule(&inverted).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("would delete `from 203.0.113.10/32 fwmark 0x7 lookup 200 pref 1000`"),
            "{e}"
        );
        assert_eq!(netlink.rules(&inverted).await.unwrap(), 1, "nothing was deleted");
        // The twin is a plain fwmark rule, which a spec describes too, and finds once.
        let twin = RuleSpec {
            fwmark: Some(7),
            ..rule("203.0.113.10", 32)
        };
        assert_eq!(netlink.rules(&twin).await.unwrap(), 1);
        assert!(!netlink.ensure_rule(&twin).await.unwrap(), "already there");

        // A rule with an iif first, at the same priority: the kernel would delete it for ours.
        let with_iif = RuleSpec {
            input_interface: Some("eth9".into()),
            priority: 2000,
            ..rule("198.51.100.1", 32)
        };
        let ours = RuleSpec {
            input_interface: None,
            ..with_iif.clone()
        };
        assert!(netlink.ensure_rule(&with_iif).await.unwrap());
        assert!(netlink.ensure_rule(&ours).await.unwrap());
        let e = netlink.remove_rule(&ours).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("the kernel would delete `from 198.51.100.1/32 iif eth9"),
            "{e}"
        );
        assert_eq!(netlink.rules(&ours).await.unwrap(), 1);
        assert_eq!(netlink.rules(&with_iif).await.unwrap(), 1);
        // The other way round the kernel meets ours first, and the rule with the iif stays.
        assert_eq!(netlink.remove_rule(&with_iif).await.unwrap(), 1);
        assert!(netlink.ensure_rule(&with_iif).await.unwrap());
        assert_eq!(netlink.remove_rule(&ours).await.unwrap(), 1);
        assert_eq!(netlink.rules(&with_iif).await.unwrap(), 1);
    });
}

/// The kernel's invert flag negates the whole selector: `not from SRC fwmark M` also sends every
/// packet from any other source to the table.
#[test]
fn unless_fwmark_inverts_the_whole_selector() {
    in_netns("unless_fwmark_inverts_the_whole_selector", false, || async {
        let netlink = Netlink::connect().unwrap();
        let handle = raw();
        let index = veth(&handle, "mt0").await;
        add_address(&handle, index, "203.0.113.10", 32).await;
        add_address(&handle, index, "192.0.2.77", 32).await;
        netlink
            .ensure_route(&RouteSpec {
                table: 200,
                ..route("0.0.0.0", 0, None, index)
            })
            .await
            .unwrap();
        let spec = RuleSpec {
            unless_fwmark: Some(0x4d53),
            fwmark: None,
            ..rule("203.0.113.10", 32)
        };
        assert!(netlink.ensure_rule(&spec).await.unwrap());
        // The table a lookup of 198.51.100.1 from `source` with `mark` ends in (there is no route
        // outside table 200).
        let lookup = |source: Ipv4Addr, mark: u32| {
            let handle = handle.clone();
            async move {
                let mut request = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(Ipv4Addr::new(198, 51, 100, 1), 32)
                    .source_prefix(source, 32)
                    .mark(mark)
                    .build();
                request.header.table = 0;
                // Report the table the lookup ended in (without this the kernel says "main").
                request.header.flags = RouteFlags::LookupTable;
                let answer = handle.route().get(request).execute().try_next().await;
                answer.ok().flatten().and_then(|r| {
                    r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Table(t) => Some(*t),
                        _ => None,
                    })
                })
            }
        };
        assert_eq!(lookup(Ipv4Addr::new(203, 0, 113, 10), 0).await, Some(200));
        assert_eq!(lookup(Ipv4Addr::new(203, 0, 113, 10), 0x4d53).await, None);
        assert_eq!(
            lookup(Ipv4Addr::new(192, 0, 2, 77), 0x4d53).await,
            Some(200),
            "another source matches too"
        );
    });
}

#[test]
fn ensure_route_replaces_and_remove_route_reports_absence() {
    in_netns(
        "ensure_route_replaces_and_remove_route_reports_absence",
        false,
        || async {
            let netlink = Netlink::connect().unwrap();
            let handle = raw();
            let index = veth(&handle, "mt0").await;
            let specs = [
                route("198.51.100.0", 24, None, index),
                route("0.0.0.0", 0, Some("10.0.0.2"), index),
                route("2001:db8:1::", 48, None, index),
                route("::", 0, Some("fe80::2"), index),
            ];
            for spec in &specs {
                netlink.ensure_route(spec).await.unwrap();
                netlink.ensure_route(spec).await.unwrap();
            }
            assert_eq!(
                sorted(netlink.routes(TABLE, PROTO).await.unwrap()),
                sorted(specs.to_vec())
            );

            let big = RouteSpec {
                table: 100_000,
                ..route("203.0.113.0", 24, Some("10.0.0.2"), index)
            };
            netlink.ensure_route(&big).await.unwrap();
            netlink.ensure_route(&big).await.unwrap();
            assert_eq!(netlink.routes(100_000, PROTO).await.unwrap(), vec![big.clone()]);

            // Replacing: the same destination through another gateway is still one route.
            let moved = route("0.0.0.0", 0, Some("10.0.0.3"), index);
            netlink.ensure_route(&moved).await.unwrap();
            let expected = vec![
                specs[0].clone(),
                moved.clone(),
                specs[2].clone(),
                specs[3].clone(),
            ];
            assert_eq!(
                sorted(netlink.routes(TABLE, PROTO).await.unwrap()),
                sorted(expected)
            );

            // The old gateway is no longer there to remove.
            assert!(!netlink.remove_route(&specs[1]).await.unwrap());
            for spec in [&specs[0], &moved, &specs[2], &specs[3], &big] {
                assert!(netlink.remove_route(spec).await.unwrap(), "`{spec}`");
                assert!(
                    !netlink.remove_route(spec).await.unwrap(),
                    "removing `{spec}` again"
                );
            }
            assert_eq!(netlink.routes(TABLE, PROTO).await.unwrap(), vec![]);
            assert_eq!(netlink.routes(100_000, PROTO).await.unwrap(), vec![]);
        },
    );
}

#[test]
fn routes_lists_only_that_table_and_protocol() {
    in_netns("routes_lists_only_that_table_and_protocol", false, || async {
        let netlink = Netlink::connect().unwrap();
        let handle = raw();
        let index = veth(&handle, "mt0").await;
        let ours = route("198.51.100.0", 24, None, index);
        let other_protocol = RouteSpec {
            protocol: PROTO + 1,
            ..route("198.51.100.128", 25, None, index)
        };
        let other_table = RouteSpec {
            table: TABLE + 1,
            ..route("198.51.100.0", 24, None, index)
        };
        let other_v6 = RouteSpec {
            protocol: 4,
            ..route("2001:db8::", 32, None, index)
        };
        for spec in [&ours, &other_protocol, &other_table, &other_v6] {
            netlink.ensure_route(spec).await.unwrap();
        }
        assert_eq!(netlink.routes(TABLE, PROTO).await.unwrap(), vec![ours.clone()]);
        assert_eq!(
            netlink.routes(TABLE, PROTO + 1).await.unwrap(),
            vec![other_protocol.clone()]
        );
        assert_eq!(
            netlink.routes(TABLE + 1, PROTO).await.unwrap(),
            vec![other_table.clone()]
        );
        assert_eq!(netlink.routes(TABLE, 4).await.unwrap(), vec![other_v6.clone()]);
        // Removing asks for the protocol too: a route of another protocol is not ours to delete.
        let impostor = RouteSpec {
            protocol: PROTO,
            ..other_protocol.clone()
        };
        assert!(!netlink.remove_route(&impostor).await.unwrap());
        assert_eq!(
            netlink.routes(TABLE, PROTO + 1).await.unwrap(),
            vec![other_protocol]
        );
    });
}

/// When the interface goes away the kernel flushes its routes: a route meshd installed on the mesh
/// interface cannot outlive it.
#[test]
fn routes_disappear_with_their_link() {
    in_netns("routes_disappear_with_their_link", true, || async {
        let netlink = Netlink::connect().unwrap();
        let handle = raw();
        let index = veth(&handle, "mt0").await;
        let keep = veth(&handle, "mt1").await;
        let doomed = [
            route("198.51.100.0", 24, None, index),
            route("2001:db8:1::", 48, None, index),
        ];
        let kept = route("203.0.113.0", 24, None, keep);
        for spec in doomed.iter().chain([&kept]) {
            netlink.ensure_route(spec).await.unwrap();
        }
        assert_eq!(netlink.routes(TABLE, PROTO).await.unwrap().len(), 3);
        handle
            .link()
            .del(index)
            .execute()
            .await
            .expect("deleting the link");
        let mut left = netlink.routes(TABLE, PROTO).await.unwrap();
        for _ in 0..100 {
            if left.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            left = netlink.routes(TABLE, PROTO).await.unwrap();
        }
        assert_eq!(left, vec![kept]);
        assert!(!netlink.remove_route(&doomed[0]).await.unwrap());
    });
}

#[test]
fn link_index_and_errors() {
    in_netns("link_index_and_errors", true, || async {
        let netlink = Netlink::connect().unwrap();
        let handle = raw();
        let index = veth(&handle, "mt0").await;
        assert_eq!(netlink.link_index("mt0").await.unwrap(), Some(index));
        assert_eq!(netlink.link_index("nosuch0").await.unwrap(), None);
        assert_eq!(
            netlink.link_index("a-name-longer-than-ifnamsiz").await.unwrap(),
            None
        );

        let e = netlink
            .ensure_route(&route("198.51.100.0", 24, None, 9999))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "adding route `198.51.100.0/24 dev if9999 table 201 proto 201`: No such device (os error 19)"
        );
        let e = netlink
            .ensure_route(&route("198.51.100.0", 24, None, 0))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let e = netlink
            .ensure_route(&route("2001:db8::", 32, Some("10.0.0.2"), index))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        // A source longer than its family cannot be written down at all.
        assert!(IpPrefix::new(ip("203.0.113.10"), 33).is_err());
        let both_marks = RuleSpec {
            fwmark: Some(1),
            unless_fwmark: Some(1),
            ..rule("203.0.113.10", 32)
        };
        let e = netlink.ensure_rule(&both_marks).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(
            e.to_string()
                .starts_with("adding rule `not from 203.0.113.10/32 fwmark 0x1 lookup 200 pref 1000`: "),
            "{e}"
        );
    });
}

#[test]
fn connect_needs_a_runtime() {
    let e = Netlink::connect().unwrap_err();
    assert!(e.to_string().contains("no tokio runtime"), "{e}");
}
