# The Debian packages the tests use, and how to install the missing ones. Sourced by scripts/test.sh
# (which installs what is missing) and .ci/run (which installs them all), so the two never disagree.
#
# MESHD_INSTALL_DRY_RUN=1 prints the install commands instead of running them.

# Each entry: a package, then what shows it is installed: a command the tests run, or a file.
TEST_PACKAGES=(
    "iproute2 ip"
    "iptables iptables"
    "iputils-ping ping"
    "procps sysctl"                # not in minimal container images; the namespace harness runs it
    "util-linux prlimit"           # and unshare
    "wireguard-tools wg"
    "wireguard-go wireguard-go"
    "iperf3 iperf3"                # benches/throughput.sh
    "conntrack conntrack"          # reading NAT state when a NAT test fails
    "bird2 bird"
    "ca-certificates /etc/ssl/certs/ca-certificates.crt"  # cargo fetches crates over HTTPS
)

# Every package of the list, one a line.
test_packages() {
    printf '%s\n' "${TEST_PACKAGES[@]%% *}"
}

# Whether a command (looked for on PATH and in the sbin directories, as the tests look for it: a plain
# user's PATH often lacks /usr/sbin) or an absolute path is there.
installed() {
    case "$1" in
        /*) [ -e "$1" ] ;;
        *) PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$1" >/dev/null ;;
    esac
}

# The packages of the list that are not installed, one a line.
missing_test_packages() {
    local entry
    for entry in "${TEST_PACKAGES[@]}"; do
        installed "${entry#* }" || echo "${entry%% *}"
    done
}

# Runs a command, or only prints it with MESHD_INSTALL_DRY_RUN=1.
run_or_print() {
    if [ "${MESHD_INSTALL_DRY_RUN:-0}" = 1 ]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

# Installs the missing packages with apt-get, as root directly or through sudo; without either, or
# without apt-get, fails naming them.
install_missing_test_packages() {
    local missing
    missing=$(missing_test_packages | tr '\n' ' ')
    missing=${missing% }
    if [ -z "$missing" ]; then
        echo "the Debian packages the tests need are installed"
        return 0
    fi
    echo "the tests need these Debian packages, which are not installed: $missing"
    local as_root=()
    if [ "$(id -u)" != 0 ]; then
        if ! command -v sudo >/dev/null; then
            echo "installing them needs root, and there is no sudo: as root, run" \
                "apt-get install $missing" >&2
            return 1
        fi
        as_root=(sudo)
    fi
    if ! command -v apt-get >/dev/null; then
        echo "there is no apt-get here: install $missing under this system's names" >&2
        return 1
    fi
    # noninteractive: iperf3's package would otherwise ask whether to start a server.
    # shellcheck disable=SC2086 # one word per package
    run_or_print "${as_root[@]}" apt-get update &&
        run_or_print "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends $missing
}
