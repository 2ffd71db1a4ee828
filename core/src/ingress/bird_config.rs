//! The BIRD configuration an operator includes so that BIRD announces what meshd puts in the
//! announcement table (`meshd bird-config` prints it).
//!
//! meshd never edits `bird.conf`. It owns one kernel route per block in a table of its own (201 by
//! default), bound to its TUN device, and BIRD learns it from there. So the announcement lives exactly
//! as long as meshd is healthy: a crashed meshd takes its TUN, and with it the route, away; a
//! `birdc configure` or a BIRD restart re-learns it from the kernel.
//!
//! Three details matter, each measured with BIRD 2.0.12:
//! - `learn`: without it a kernel protocol ignores routes it did not install itself.
//! - `preference 250`: kernel-learned routes default to 10 and lose to a `direct` (240) or `static`
//!   (200) route for the same prefix, which would then be exported in their place or not at all.
//! - A BIRD table of meshd's own and a pipe into `master4`: BIRD allows one kernel protocol per BIRD
//!   table and kernel table, and the operator's kernel protocol already has `master4`.

use std::fmt::Write;

use meshd_packet::{Ipv4Prefix, Ipv6Prefix};

/// The BIRD names the snippet defines. The export filter is what the operator references.
pub const EXPORT_FILTER_V4: &str = "meshd_export";
pub const EXPORT_FILTER_V6: &str = "meshd_export6";
const KERNEL_V4: &str = "meshd_in";
const KERNEL_V6: &str = "meshd_in6";

/// Renders the snippet for the blocks meshd announces, learned from kernel table `kernel_table`.
pub fn render(ipv4: &[Ipv4Prefix], ipv6: &[Ipv6Prefix], kernel_table: u32) -> String {
    let mut out = String::new();
    let blocks: Vec<String> = ipv4
        .iter()
        .map(ToString::to_string)
        .chain(ipv6.iter().map(ToString::to_string))
        .collect();
    let _ = writeln!(out, "# meshd ingress: announces {}.", blocks.join(", "));
    let _ = writeln!(
        out,
        "# Printed by `meshd bird-config`; include it from bird.conf (include \"/etc/bird/meshd.conf\";)"
    );
    let _ = writeln!(
        out,
        "# and export only through its filter to your upstream, in its channels:"
    );
    if !ipv4.is_empty() {
        let _ = writeln!(out, "#   ipv4 {{ export filter {EXPORT_FILTER_V4}; ... }};");
    }
    if !ipv6.is_empty() {
        let _ = writeln!(out, "#   ipv6 {{ export filter {EXPORT_FILTER_V6}; ... }};");
    }
    let _ = writeln!(
        out,
        "# meshd adds each block as a route on its interface in kernel table {kernel_table} while it \
         is healthy,\n# and deletes it when not; BIRD learns it from that kernel table."
    );
    if !ipv4.is_empty() {
        family(
            &mut out,
            "ipv4",
            "meshd4",
            "master4",
            KERNEL_V4,
            "meshd_pipe",
            EXPORT_FILTER_V4,
            &set(ipv4),
            kernel_table,
        );
    }
    if !ipv6.is_empty() {
        family(
            &mut out,
            "ipv6",
            "meshd6",
            "master6",
            KERNEL_V6,
            "meshd_pipe6",
            EXPORT_FILTER_V6,
            &set(ipv6),
            kernel_table,
        );
    }
    out
}

fn set<P: ToString>(prefixes: &[P]) -> String {
    let items: Vec<String> = prefixes.iter().map(ToString::to_string).collect();
    format!("[ {} ]", items.join(", "))
}

#[allow(clippy::too_many_arguments)]
fn family(
    out: &mut String,
    channel: &str,
    table: &str,
    master: &str,
    kernel: &str,
    pipe: &str,
    filter: &str,
    set: &str,
    kernel_table: u32,
) {
    let _ = write!(
        out,
        "
{channel} table {table};

protocol kernel {kernel} {{
	kernel table {kernel_table};
	learn;
	{channel} {{
		table {table};
		preference 250;
		import where net ~ {set};
		export none;
	}};
}}

protocol pipe {pipe} {{
	table {master};
	peer table {table};
	import all;
	export none;
}}

filter {filter} {{
	if proto = \"{kernel}\" && net ~ {set} then accept;
	reject;
}}
"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_only_snippet_learns_table_201_and_exports_only_the_block() {
        let text = render(&["203.0.113.0/24".parse().unwrap()], &[], 201);
        assert!(text.contains("kernel table 201;"), "{text}");
        assert!(text.contains("learn;"), "{text}");
        assert!(text.contains("preference 250;"), "{text}");
        assert!(text.contains("peer table meshd4;"), "{text}");
        assert!(
            text.contains("if proto = \"meshd_in\" && net ~ [ 203.0.113.0/24 ] then accept;"),
            "{text}"
        );
        assert!(!text.contains("ipv6"), "{text}");
    }

    #[test]
    fn ipv6_block_gets_its_own_table_pipe_and_filter() {
        let text = render(
            &["203.0.113.0/24".parse().unwrap()],
            &["2001:db8:1::/48".parse().unwrap()],
            210,
        );
        assert!(text.contains("ipv6 table meshd6;"), "{text}");
        assert!(text.contains("protocol kernel meshd_in6"), "{text}");
        assert!(text.contains("filter meshd_export6"), "{text}");
        assert!(text.contains("net ~ [ 2001:db8:1::/48 ]"), "{text}");
        assert_eq!(text.matches("kernel table 210;").count(), 2);
    }
}
