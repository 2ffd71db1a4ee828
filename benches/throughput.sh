#!/usr/bin/env bash
# Tunnel throughput, side by side: two network namespaces joined by a veth pair, one iperf3 TCP flow
# through plain veth and through each userspace WireGuard, interleaved round by round in one run
# (round 1: veth, wireguard-go, boringtun, meshd-wg; round 2: ...) so that drift in the machine
# spreads over every implementation alike. Prints each round, the median per implementation, and
# meshd-wg's ratio to wireguard-go and to boringtun-cli.
#
#   sudo benches/throughput.sh                       5 rounds of 10 s, every implementation found
#   benches/throughput.sh --rounds 3 --time 8
#   benches/throughput.sh --impls veth,wireguard-go --tests tcp,tcp-reverse,rtt-load --csv out.csv
#
# Implementations (--impls, comma-separated; default all):
#   veth          no tunnel: the ceiling of the namespaces themselves
#   wireguard-go  $WIREGUARD_GO_BIN, else `wireguard-go` on PATH   (apt-get install wireguard-go)
#   boringtun     $BORINGTUN_CLI_BIN, else `boringtun-cli` on PATH or in ~/.cargo/bin
#                 (cargo install boringtun-cli --locked); $BORINGTUN_THREADS threads (default 2)
#   meshd-wg      $MESHD_WG_BIN, else target/release/meshd-wg (cargo build --release -p meshd-wg);
#                 skipped with a note when it is not built
#   meshd-wg-base $MESHD_WG_BASE_BIN: another build of meshd-wg (say, of the commit before a change),
#                 measured in the same run so that a change is compared within the noise of one
#                 machine; skipped with a note when the variable is not set
# Tests (--tests, comma-separated; default tcp):
#   tcp           iperf3 -c, one flow A -> B
#   tcp-reverse   iperf3 -R, one flow B -> A
#   tcp-p4        iperf3 -P 4, four flows A -> B
#   udp64         64-byte UDP datagrams, unlimited rate: thousands of packets/s received, and loss
#   rtt           ping RTT (average, ms) A -> B on an idle tunnel, 10 pings a second
#   rtt-load      ping RTT (average, ms) A -> B during a tcp run
# Every figure comes with the retransmits (udp64: loss) iperf3 counted and the CPU seconds both
# daemons used; the summary turns the Mbit/s tests into Mbit per daemon CPU-second. A new test is one
# `test_<name>` function (see "Tests" below).
#
# Needs root, iproute2, util-linux (unshare), iperf3, wireguard-tools (wg), iputils-ping.
# Runs in private mount and PID namespaces with a tmpfs over /run/netns and /var/run/wireguard,
# so it neither sees nor disturbs the host's namespaces, interfaces or WireGuard sockets, and
# everything it started dies with it, also on Ctrl-C. Addresses: 192.0.2.0/24 (veth) and
# 198.51.100.0/24 (tunnel), documentation ranges only.
set -euo pipefail

ROUNDS=5
SECONDS_PER_TEST=10
IMPLS=veth,wireguard-go,boringtun,meshd-wg,meshd-wg-base
TESTS=tcp
CSV=
MAX_ROUNDS=50
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "throughput.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --time) SECONDS_PER_TEST=$2; shift 2 ;;
        --impls) IMPLS=$2; shift 2 ;;
        --tests) TESTS=$2; shift 2 ;;
        --csv) CSV=$(realpath -m "$2"); shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
if ! [[ $ROUNDS =~ ^[0-9]+$ ]] || [ "$ROUNDS" -lt 1 ] || [ "$ROUNDS" -gt $MAX_ROUNDS ]; then
    die "--rounds must be 1..$MAX_ROUNDS"
fi
if ! [[ $SECONDS_PER_TEST =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TEST" -lt 2 ] || [ "$SECONDS_PER_TEST" -gt 300 ]; then
    die "--time must be 2..300 seconds"
fi

need() { command -v "$1" >/dev/null || die "$1 is missing: apt-get install $2"; }

# ---------------------------------------------------------------------------------------------------
# Isolation: re-run this script inside fresh mount and PID namespaces (as PID 1 there, so every
# process it starts is killed by the kernel when it exits, however it exits).
if [ "${MESHD_BENCH_ISOLATED:-}" != 1 ]; then
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, TUN devices, mounts): sudo $0 $*"
    [ -c /dev/net/tun ] || die "needs /dev/net/tun (modprobe tun)"
    need ip iproute2; need unshare util-linux; need iperf3 iperf3; need wg wireguard-tools
    need ping iputils-ping; need timeout coreutils
    args=(--rounds "$ROUNDS" --time "$SECONDS_PER_TEST" --impls "$IMPLS" --tests "$TESTS")
    [ -n "$CSV" ] && args+=(--csv "$CSV")
    MESHD_BENCH_ISOLATED=1 MESHD_BENCH_RUN=$$ exec unshare --mount --propagation private \
        --pid --fork --kill-child --mount-proc -- bash "${BASH_SOURCE[0]}" "${args[@]}"
fi

mkdir -p /run/netns /var/run/wireguard
mount -t tmpfs -o mode=0755,size=16m meshd-bench /run/netns
mount -t tmpfs -o mode=0755,size=16m meshd-bench /var/run/wireguard
WORK=
NS_A=mdbench-${MESHD_BENCH_RUN}-a
NS_B=mdbench-${MESHD_BENCH_RUN}-b
UNDER_A=192.0.2.1 UNDER_B=192.0.2.2
TUN_A=198.51.100.1 TUN_B=198.51.100.2
MTU=1420
DAEMONS=()
IPERF_SERVER=
SUCCEEDED=0

cleanup() {
    trap - EXIT INT TERM
    # Best effort from here on: one step failing must not skip the others.
    set +e
    stop_daemons
    [ -n "$IPERF_SERVER" ] && kill "$IPERF_SERVER" 2>/dev/null
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
    if [ -z "$WORK" ]; then
        :
    elif [ "$SUCCEEDED" = 1 ]; then
        rm -rf "$WORK"
    else
        echo "logs kept in $WORK" >&2
    fi
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

in_a() { ip netns exec "$NS_A" "$@"; }
in_b() { ip netns exec "$NS_B" "$@"; }

# Polls "$@" every 0.1 s for at most $1 seconds; fails naming $2.
wait_for() {
    local limit=$1 what=$2 i
    shift 2
    for ((i = 0; i < limit * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "timed out after ${limit}s waiting for $what" >&2
    return 1
}

setup_namespaces() {
    ip netns add "$NS_A"
    ip netns add "$NS_B"
    ip -n "$NS_A" link set lo up
    ip -n "$NS_B" link set lo up
    ip -n "$NS_A" link add eth0 type veth peer name eth0 netns "$NS_B"
    ip -n "$NS_A" addr add "$UNDER_A/24" dev eth0
    ip -n "$NS_B" addr add "$UNDER_B/24" dev eth0
    ip -n "$NS_A" link set eth0 up
    ip -n "$NS_B" link set eth0 up
    # One server for the whole run; it answers one client at a time, which is all we ever run.
    ip netns exec "$NS_B" iperf3 -s >"$WORK/iperf3-server.log" 2>&1 &
    IPERF_SERVER=$!
    wait_for 10 "the veth link" in_a ping -c 1 -W 1 "$UNDER_B"
    wait_for 10 "the iperf3 server" bash -c "ip netns exec $NS_B ss -Hltn 'sport = :5201' | grep -q ."
}

# ---------------------------------------------------------------------------------------------------
# Implementations. impl_command NAME prints the daemon command line (foreground, interface name
# appended) or returns 1 with a reason on stdout when the implementation is unavailable.
impl_command() {
    local bin
    case $1 in
        wireguard-go)
            bin=${WIREGUARD_GO_BIN:-$(command -v wireguard-go || true)}
            [ -x "$bin" ] || { echo "wireguard-go not found (apt-get install wireguard-go)"; return 1; }
            echo "env WG_PROCESS_FOREGROUND=1 $bin -f"
            ;;
        boringtun)
            bin=${BORINGTUN_CLI_BIN:-$(command -v boringtun-cli || echo "$HOME/.cargo/bin/boringtun-cli")}
            [ -x "$bin" ] || { echo "boringtun-cli not found (cargo install boringtun-cli --locked)"; return 1; }
            echo "$bin --foreground --disable-drop-privileges --threads ${BORINGTUN_THREADS:-2}"
            ;;
        meshd-wg)
            bin=${MESHD_WG_BIN:-$REPO_ROOT/target/release/meshd-wg}
            [ -x "$bin" ] || { echo "not built ($bin; cargo build --release -p meshd-wg)"; return 1; }
            echo "$bin -f"
            ;;
        meshd-wg-base)
            bin=${MESHD_WG_BASE_BIN:-}
            [ -n "$bin" ] || { echo "MESHD_WG_BASE_BIN not set"; return 1; }
            [ -x "$bin" ] || { echo "$bin is not an executable"; return 1; }
            echo "$bin -f"
            ;;
        *) echo "unknown implementation"; return 1 ;;
    esac
}

# Starts NAME in both namespaces, configures the tunnel with wg and ip, and waits for a handshake.
start_tunnel() {
    local name=$1 cmd
    cmd=$(impl_command "$name")
    # Not through in_a/in_b: a backgrounded function is a subshell, and $! must be the daemon itself
    # (ip netns exec execs it) so that SIGTERM and the CPU counters reach it.
    # shellcheck disable=SC2086 # the command line is split on purpose
    ip netns exec "$NS_A" $cmd wg-a >>"$WORK/$name-a.log" 2>&1 &
    DAEMONS+=($!)
    # shellcheck disable=SC2086
    ip netns exec "$NS_B" $cmd wg-b >>"$WORK/$name-b.log" 2>&1 &
    DAEMONS+=($!)
    wait_for 10 "$name to create wg-a" test -S /var/run/wireguard/wg-a.sock
    wait_for 10 "$name to create wg-b" test -S /var/run/wireguard/wg-b.sock
    configure_peer "$NS_A" wg-a 51820 "$KEY_A" "$PUB_B" "$TUN_B" "$UNDER_B:51821" "$TUN_A"
    configure_peer "$NS_B" wg-b 51821 "$KEY_B" "$PUB_A" "$TUN_A" "$UNDER_A:51820" "$TUN_B"
    wait_for 15 "a ping through $name" in_a ping -c 1 -W 1 "$TUN_B"
}

configure_peer() {
    local ns=$1 dev=$2 port=$3 key=$4 peer=$5 peer_tun=$6 endpoint=$7 addr=$8
    ip netns exec "$ns" wg set "$dev" private-key "$key" listen-port "$port" \
        peer "$peer" allowed-ips "$peer_tun/32" endpoint "$endpoint"
    ip -n "$ns" addr add "$addr/24" dev "$dev"
    ip -n "$ns" link set "$dev" mtu "$MTU" up
}

stop_daemons() {
    local pid i
    [ ${#DAEMONS[@]} -eq 0 ] && return 0
    kill -TERM "${DAEMONS[@]}" 2>/dev/null || true
    for pid in "${DAEMONS[@]}"; do
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    DAEMONS=()
    # The next implementation reuses the names; don't let a slow cleanup collide with it.
    wait_for 5 "wg-a and wg-b to disappear" \
        bash -c "! ip -n $NS_A link show wg-a && ! ip -n $NS_B link show wg-b && ! ls /var/run/wireguard/*.sock"
}

# CPU seconds (user + system) the running daemons have used so far.
daemon_cpu_ticks() {
    local pid total=0 stat
    for pid in "${DAEMONS[@]}"; do
        # Fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends the command name.
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        stat=${stat##*) }
        total=$((total + $(echo "$stat" | awk '{ print $12 + $13 }')))
    done
    echo "$total"
}

# ---------------------------------------------------------------------------------------------------
# Tests. test_NAME TARGET prints "VALUE UNIT RETRANSMITS CPU_SECONDS" (use - for what does not apply).

# One iperf3 run from A to TARGET with extra arguments; prints Mbit/s received and sender retransmits.
iperf_run() {
    local target=$1 out
    shift
    # --foreground keeps iperf3 in our process group, so Ctrl-C reaches it at once.
    out=$(in_a timeout --foreground $((SECONDS_PER_TEST + 30)) iperf3 -c "$target" -t "$SECONDS_PER_TEST" -O 1 -f m "$@") \
        || { echo "iperf3 failed: $out" >&2; return 1; }
    echo "$out" >>"$WORK/iperf3-client.log"
    echo "$out" | awk '
        / sender$/   { for (i = 1; i < NF; i++) if ($i == "Mbits/sec") retr = $(i + 1) }
        / receiver$/ { for (i = 1; i < NF; i++) if ($i == "Mbits/sec") rate = $(i - 1) }
        END { if (rate == "") exit 1; print rate, (retr == "" ? "-" : retr) }'
}

with_cpu() {
    local before after tck result
    tck=$(getconf CLK_TCK)
    before=$(daemon_cpu_ticks)
    result=$("$@") || return 1
    after=$(daemon_cpu_ticks)
    if [ ${#DAEMONS[@]} -eq 0 ]; then
        echo "$result -"
    else
        echo "$result $(awk -v t=$((after - before)) -v hz="$tck" 'BEGIN { printf "%.1f", t / hz }')"
    fi
}

test_tcp() { with_cpu iperf_run "$1" | awk '{ print $1, "Mbit/s", $2, $3 }'; }
test_tcp-reverse() { with_cpu iperf_run "$1" -R | awk '{ print $1, "Mbit/s", $2, $3 }'; }
# With -P the [SUM] lines come last, so iperf_run's parse picks the totals.
test_tcp-p4() { with_cpu iperf_run "$1" -P 4 | awk '{ print $1, "Mbit/s", $2, $3 }'; }

# Packet rate: 64-byte UDP payloads as fast as iperf3 can send them (it has no UDP GSO, so this is
# the per-packet path). Reports thousands of packets per second received; the retransmits column
# holds the loss percentage instead.
test_udp64() {
    local target=$1 out
    out=$(with_cpu in_a timeout --foreground $((SECONDS_PER_TEST + 30)) iperf3 -c "$target" -u -b 0 -l 64 \
        -t "$SECONDS_PER_TEST" -O 1 -f m) || { echo "iperf3 -u failed: $out" >&2; return 1; }
    echo "$out" >>"$WORK/iperf3-client.log"
    # "... 12.3 Mbits/sec  0.004 ms  10/24000 (0.042%)  receiver" and, last, the CPU seconds.
    echo "$out" | awk '
        / receiver$/ { for (i = 1; i < NF; i++) if ($i == "Mbits/sec") { rate = $(i - 1); loss = $(i + 4) } }
        END { if (rate == "") exit 1; gsub(/[()%]/, "", loss)
              printf "%.1f kpps %s%% %s\n", rate * 1e6 / (64 * 8) / 1000, loss, $NF }'
}

test_rtt() {
    local target=$1 count=$((SECONDS_PER_TEST * 10)) ping_out
    ping_out=$(in_a ping -q -n -i 0.1 -c "$count" -W 2 "$1" 2>&1) || { echo "ping failed: $ping_out" >&2; return 1; }
    echo "$ping_out" | awk -F'[/ ]+' '/^rtt/ { print $8, "ms", "-", "-"; found = 1 } END { exit !found }' \
        || { echo "no RTT from ping: $ping_out" >&2; return 1; }
}

test_rtt-load() {
    local target=$1 count=$((SECONDS_PER_TEST * 10 - 20)) ping_out
    [ $count -ge 10 ] || count=10
    in_a ping -q -n -i 0.1 -c "$count" -W 2 "$target" >"$WORK/ping.out" 2>&1 &
    local ping_pid=$!
    iperf_run "$target" >/dev/null
    wait "$ping_pid" || true
    ping_out=$(cat "$WORK/ping.out")
    # "rtt min/avg/max/mdev = 0.05/0.09/0.30/0.02 ms"
    echo "$ping_out" | awk -F'[/ ]+' '/^rtt/ { print $8, "ms", "-", "-"; found = 1 } END { exit !found }' \
        || { echo "no RTT from ping: $ping_out" >&2; return 1; }
}

# ---------------------------------------------------------------------------------------------------
IFS=, read -r -a IMPL_LIST <<<"$IMPLS"
IFS=, read -r -a TEST_LIST <<<"$TESTS"
for t in "${TEST_LIST[@]}"; do
    declare -F "test_$t" >/dev/null || die "unknown test $t (see --help)"
done

RUNNABLE=()
declare -A SKIPPED
for impl in "${IMPL_LIST[@]}"; do
    if [ "$impl" = veth ]; then RUNNABLE+=(veth); continue; fi
    if reason=$(impl_command "$impl"); then RUNNABLE+=("$impl"); else SKIPPED[$impl]=$reason; fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshd-throughput.XXXXXX")
KEY_A=$WORK/a.key KEY_B=$WORK/b.key
(umask 077; wg genkey >"$KEY_A"; wg genkey >"$KEY_B")
PUB_A=$(wg pubkey <"$KEY_A") PUB_B=$(wg pubkey <"$KEY_B")

setup_namespaces
RESULTS=$WORK/results.csv
echo "round,impl,test,value,unit,retransmits,daemon_cpu_s" >"$RESULTS"

echo "throughput: $ROUNDS rounds, ${SECONDS_PER_TEST} s per test, tests: $TESTS, kernel $(uname -r), $(nproc) cores"
for impl in "${!SKIPPED[@]}"; do echo "skipping $impl: ${SKIPPED[$impl]}"; done
for ((round = 1; round <= ROUNDS; round++)); do
    for impl in "${RUNNABLE[@]}"; do
        if [ "$impl" = veth ]; then
            target=$UNDER_B
        else
            start_tunnel "$impl"
            target=$TUN_B
        fi
        for t in "${TEST_LIST[@]}"; do
            read -r value unit retr cpu < <("test_$t" "$target") || die "$t over $impl failed in round $round"
            printf 'round %-2d %-13s %-12s %10s %-6s retr/loss %-6s daemon CPU %s s\n' \
                "$round" "$impl" "$t" "$value" "$unit" "$retr" "$cpu"
            echo "$round,$impl,$t,$value,$unit,$retr,$cpu" >>"$RESULTS"
        done
        stop_daemons
    done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
column_of() { awk -F, -v i="$1" -v t="$2" 'NR > 1 && $2 == i && $3 == t { print $4 }' "$RESULTS"; }

for t in "${TEST_LIST[@]}"; do
    unit=$(awk -F, -v t="$t" 'NR > 1 && $3 == t { print $5; exit }' "$RESULTS")
    echo
    echo "== $t: median over $ROUNDS rounds ($unit; min .. max) =="
    declare -A MED=()
    for impl in "${RUNNABLE[@]}"; do
        MED[$impl]=$(column_of "$impl" "$t" | median)
        printf '%-13s %10s   (%s .. %s)\n' "$impl" "${MED[$impl]}" \
            "$(column_of "$impl" "$t" | sort -g | head -1)" "$(column_of "$impl" "$t" | sort -g | tail -1)"
    done
    for impl in "${!SKIPPED[@]}"; do printf '%-13s %10s   (%s)\n' "$impl" skipped "${SKIPPED[$impl]}"; done
    if [ "$unit" = Mbit/s ]; then
        # Bits moved per CPU-second the two daemons used (a tunnel that is fast only by burning
        # more cores is not efficient).
        for impl in "${RUNNABLE[@]}"; do
            [ "$impl" = veth ] && continue
            eff=$(awk -F, -v i="$impl" -v t="$t" -v s="$SECONDS_PER_TEST" \
                'NR > 1 && $2 == i && $3 == t && $7 > 0 { print $4 * s / $7 }' "$RESULTS" | median)
            printf '%-13s %10.0f Mbit per daemon CPU-second (median)\n' "$impl" "$eff"
        done
    fi
    if [ -n "${MED[meshd-wg]:-}" ]; then
        for base in wireguard-go boringtun meshd-wg-base; do
            [ -n "${MED[$base]:-}" ] || continue
            awk -v m="${MED[meshd-wg]}" -v b="${MED[$base]}" -v n="$base" \
                'BEGIN { printf "ratio meshd-wg/%s = %.2f\n", n, m / b }'
        done
    fi
    unset MED
done

[ -n "$CSV" ] && cp "$RESULTS" "$CSV" && echo "results: $CSV"
SUCCEEDED=1
