#!/usr/bin/env bash
# Where meshd-wg's cycles go under one TCP flow: two namespaces joined by a veth pair, meshd-wg on both
# ends, one iperf3 flow through the tunnel, and `perf record -g` on both daemons for a few seconds in
# the middle of it. Prints the share of samples per thread and the hottest symbols.
#
#   sudo benches/profile.sh            # needs root, perf, iperf3, wireguard-tools, iproute2, util-linux
#   SECONDS_RECORDED=10 sudo benches/profile.sh
#
# meshd-wg comes from $MESHD_WG_BIN or target/release/meshd-wg (cargo build --release -p meshd-wg;
# the release profile keeps debug info, so symbols resolve). Runs in private mount and PID
# namespaces (tmpfs over /run/netns and /var/run/wireguard), so it touches nothing of the host and
# everything it starts dies with it. Addresses: 192.0.2.0/24 and 198.51.100.0/24 only.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${MESHD_WG_BIN:-$REPO_ROOT/target/release/meshd-wg}
RECORD=${SECONDS_RECORDED:-6}
die() { echo "profile.sh: $*" >&2; exit 1; }

if [ "${MESHD_PROFILE_ISOLATED:-}" != 1 ]; then
    [ "$(id -u)" = 0 ] || die "needs root: sudo $0"
    for tool in perf iperf3 wg ip unshare; do command -v $tool >/dev/null || die "$tool is missing"; done
    [ -x "$BIN" ] || die "$BIN is not built: cargo build --release -p meshd-wg"
    MESHD_PROFILE_ISOLATED=1 exec unshare --mount --propagation private --pid --fork --kill-child \
        --mount-proc -- bash "${BASH_SOURCE[0]}"
fi

umask 077
WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshd-profile.XXXXXX")
mkdir -p /run/netns /var/run/wireguard
mount -t tmpfs none /run/netns
mount -t tmpfs none /var/run/wireguard
ip netns add pa
ip netns add pb
ip -n pa link add va type veth peer name vb netns pb
ip -n pa addr add 192.0.2.1/24 dev va
ip -n pb addr add 192.0.2.2/24 dev vb
for ns in pa pb; do ip -n $ns link set lo up; done
ip -n pa link set va up
ip -n pb link set vb up
wg genkey >"$WORK/a.key"
wg genkey >"$WORK/b.key"
PA=$(wg pubkey <"$WORK/a.key")
PB=$(wg pubkey <"$WORK/b.key")
ip netns exec pa "$BIN" -f wg-a >"$WORK/a.log" 2>&1 &
A=$!
ip netns exec pb "$BIN" -f wg-b >"$WORK/b.log" 2>&1 &
B=$!
for _ in $(seq 50); do [ -S /var/run/wireguard/wg-a.sock ] && [ -S /var/run/wireguard/wg-b.sock ] && break; sleep 0.1; done
ip netns exec pa wg set wg-a private-key "$WORK/a.key" listen-port 51820 \
    peer "$PB" allowed-ips 198.51.100.2/32 endpoint 192.0.2.2:51821
ip netns exec pb wg set wg-b private-key "$WORK/b.key" listen-port 51821 \
    peer "$PA" allowed-ips 198.51.100.1/32 endpoint 192.0.2.1:51820
ip -n pa addr add 198.51.100.1/24 dev wg-a
ip -n pb addr add 198.51.100.2/24 dev wg-b
ip -n pa link set wg-a mtu 1420 up
ip -n pb link set wg-b mtu 1420 up
ip netns exec pa ping -c 2 -W 1 198.51.100.2 >/dev/null
ip netns exec pb iperf3 -s -D -1
sleep 0.5
ip netns exec pa iperf3 -c 198.51.100.2 -t $((RECORD + 6)) -f m >"$WORK/iperf3.txt" &
IPERF=$!
sleep 3
perf record -q -g -o "$WORK/perf.data" -p "$A,$B" -- sleep "$RECORD" 2>/dev/null
wait $IPERF
grep -E "receiver$" "$WORK/iperf3.txt"
echo "== samples per thread =="
perf report -i "$WORK/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E "^ +[0-9]"
echo "== hottest symbols (>= 1 %) =="
perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --percent-limit 1 --stdio 2>/dev/null \
    | grep -E "^ +[0-9]" | sed 's/ *- *- *$//'
