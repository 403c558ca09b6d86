#!/usr/bin/env bash
# Discovery benchmark: fleetctl (default settings) against fping -i 0 and
# nmap -sn, one run, same machine, two ranges:
#   loopback   127.0.0.0/16, every address alive;
#   netns      a /16 behind a veth pair between two network namespaces this
#              script creates: the "hosts" namespace answers for the whole
#              /16 (an AnyIP local route) and nftables silently drops probes
#              to 15 of every 16 addresses, so 1/16 is alive. Nothing sent
#              here can leave the namespaces: the scanner's only link is the veth.
# Needs root. Prints a markdown table (wall time, hosts found).
#   usage: tests/bench/scan.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "scan.sh needs root (namespaces, raw sockets)" >&2; exit 2; }
export PATH="$HOME/.cargo/bin:$PATH"

for tool in fping nmap nft ip; do
    command -v "$tool" >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fping nmap nftables iproute2 >/dev/null
        break
    }
done
[ "${1:-}" = --no-build ] || cargo build --release --quiet
BIN=$PWD/target/release/fleetctl
DATA=$(mktemp -d)
export FLEETCTL_DATA_DIR=$DATA FLEETCTL_CONFIG=$DATA/none.toml
touch "$FLEETCTL_CONFIG"

SCAN_NS=fcbench-scan HOSTS_NS=fcbench-hosts
NET=10.77.0.0/16
cleanup() {
    ip netns del "$SCAN_NS" 2>/dev/null || true
    ip netns del "$HOSTS_NS" 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT
cleanup
DATA=$(mktemp -d); export FLEETCTL_DATA_DIR=$DATA FLEETCTL_CONFIG=$DATA/none.toml; touch "$FLEETCTL_CONFIG"

ip netns add "$SCAN_NS"
ip netns add "$HOSTS_NS"
ip link add fcb-scan type veth peer name fcb-hosts
ip link set fcb-scan netns "$SCAN_NS"
ip link set fcb-hosts netns "$HOSTS_NS"
ip -n "$SCAN_NS" link set lo up
ip -n "$SCAN_NS" addr add 10.99.0.1/30 dev fcb-scan
ip -n "$SCAN_NS" link set fcb-scan up
ip -n "$SCAN_NS" route add "$NET" via 10.99.0.2
ip -n "$HOSTS_NS" link set lo up
ip -n "$HOSTS_NS" addr add 10.99.0.2/30 dev fcb-hosts
ip -n "$HOSTS_NS" link set fcb-hosts up
ip -n "$HOSTS_NS" route add local "$NET" dev lo
ip netns exec "$HOSTS_NS" nft -f - <<NFT
table inet fcbench {
  chain input {
    type filter hook input priority 0; policy accept;
    ip daddr $NET ip daddr & 0.0.0.15 != 0.0.0.0 drop
  }
}
NFT

[ -z "${SETUP_ONLY:-}" ] || { trap - EXIT; echo "namespaces $SCAN_NS and $HOSTS_NS are up"; exit 0; }

# run NAME RANGE NS COMMAND...: prints a table row; COMMAND prints one line per live host.
run() {
    local name=$1 range=$2 ns=$3; shift 3
    local prefix=()
    [ "$ns" = - ] || prefix=(ip netns exec "$ns")
    local start end found
    start=$(date +%s.%N)
    found=$("${prefix[@]}" timeout 900 "$@" 2>/dev/null | wc -l) || true
    end=$(date +%s.%N)
    printf '| %-10s | %-32s | %8.2f s | %6d |\n' "$range" "$name" "$(echo "$end - $start" | bc)" "$found"
}


echo "fleetctl $("$BIN" --version | cut -d' ' -f2), $(fping -v 2>&1 | head -1), $(nmap --version | head -1); $(nproc) cores"
echo
echo "| range      | tool                             | wall time  | found  |"
echo "|------------|----------------------------------|------------|--------|"
run "fleetctl scan (defaults)" "loopback" - "$BIN" scan -o jsonl --alive-only 127.0.0.0/16
run "fleetctl scan --no-banner" "loopback" - "$BIN" scan -o jsonl --alive-only --no-banner 127.0.0.0/16
run "fping -i 0" "loopback" - fping -q -a -i 0 -g 127.0.0.0/16
run "nmap -sn" "loopback" - sh -c 'nmap -sn -n 127.0.0.0/16 -oG - | grep "Status: Up"'
run "fleetctl scan (defaults)" "netns 1/16" "$SCAN_NS" "$BIN" scan -o jsonl --alive-only "$NET"
run "fleetctl scan --no-banner" "netns 1/16" "$SCAN_NS" "$BIN" scan -o jsonl --alive-only --no-banner "$NET"
run "fping -i 0" "netns 1/16" "$SCAN_NS" fping -q -a -i 0 -g "$NET"
# nmap takes minutes on the namespace range; SKIP_NMAP=1 leaves it out while iterating.
[ -n "${SKIP_NMAP:-}" ] || run "nmap -sn" "netns 1/16" "$SCAN_NS" sh -c "nmap -sn -n $NET -oG - | grep 'Status: Up'"
echo
echo "Expected: loopback 65534 live host addresses; netns 4095 (4096 counting the"
echo "network address 10.77.0.0, which nmap includes and fleetctl and fping leave out)."
echo "fleetctl defaults also probe port 22 of every host (a SYN as root) to read SSH"
echo "banners; --no-banner is the same work as fping (ICMP echo only)."
