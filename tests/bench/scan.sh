#!/usr/bin/env bash
# Discovery benchmark: fleetctl against fping -i 0 and nmap -sn, one run,
# same machine, two ranges, each scanned from a network namespace this
# script creates (so nftables can count every packet sent):
#   loopback   127.0.0.0/16, every address alive (the namespace's own lo);
#   routed     a /16 behind a veth pair between two namespaces: the "hosts"
#              namespace answers for the whole /16 (an AnyIP local route) and
#              nftables silently drops probes to 15 of every 16 addresses, so
#              1/16 is alive. Nothing sent here can leave the namespaces: the
#              scanner's only link is the veth.
# fleetctl runs at --rate 0 (as fast as the machine goes, the same budget as
# fping -i 0) and at its defaults (--rate 100000), both with the port-22 SYN
# probe; --no-banner is ICMP only, the same work as fping.
# Needs root. Prints a markdown table (wall time, hosts found, packets sent,
# ratios to fping -i 0 and nmap -sn) and whether the goals of issue 17 hold.
#   usage: tests/bench/scan.sh [--no-build]
#   SKIP_NMAP=1 leaves out nmap's routed run (it takes minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "scan.sh needs root (namespaces, raw sockets)" >&2; exit 2; }
export PATH="$HOME/.cargo/bin:$PATH"

for tool in fping nmap nft ip bc /usr/bin/time; do
    command -v "$tool" >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fping nmap nftables iproute2 bc time >/dev/null
        break
    }
done
[ "${1:-}" = --no-build ] || cargo build --release --quiet
BIN=$PWD/target/release/fleetctl

LO_NS=fcbench-lo SCAN_NS=fcbench-scan HOSTS_NS=fcbench-hosts
NET=10.77.0.0/16
DATA=
cleanup() {
    for ns in "$LO_NS" "$SCAN_NS" "$HOSTS_NS"; do ip netns del "$ns" 2>/dev/null || true; done
    [ -z "$DATA" ] || rm -rf "$DATA"
}
trap cleanup EXIT
cleanup
DATA=$(mktemp -d)
export FLEETCTL_DATA_DIR=$DATA FLEETCTL_CONFIG=$DATA/none.toml
touch "$FLEETCTL_CONFIG"

# Counts the probes the scanner sends (echo requests and SYNs, not the
# kernel's answers, which on loopback go to 127.0.0.1) in its own namespace.
counters() {
    ip netns exec "$1" nft -f - <<NFT
table inet fcbench_count {
  chain output {
    type filter hook output priority 0; policy accept;
    ip daddr $2 icmp type echo-request counter
    ip daddr $2 tcp flags & (syn | ack) == syn counter
  }
}
NFT
}

ip netns add "$LO_NS"
ip -n "$LO_NS" link set lo up
counters "$LO_NS" 127.0.0.0/16

ip netns add "$SCAN_NS"
ip netns add "$HOSTS_NS"
ip -n "$SCAN_NS" link add fcb-scan type veth peer name fcb-hosts netns "$HOSTS_NS"
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
counters "$SCAN_NS" "$NET"

[ -z "${SETUP_ONLY:-}" ] || { trap - EXIT; echo "namespaces $LO_NS, $SCAN_NS and $HOSTS_NS are up"; exit 0; }

sent_packets() {
    ip netns exec "$1" nft list table inet fcbench_count | awk '/counter packets/ { n += $(NF-2) } END { print n }'
}

# run KEY NAME RANGE NS COMMAND...: times COMMAND (which prints one line per
# live host) in NS; records wall time, hosts found and packets sent under KEY.
declare -A WALLS CPUS FOUND SENT NAME RANGE LAST_SENT FINISHED
ORDER=()
run() {
    local key=$1 name=$2 range=$3 ns=$4; shift 4
    local before start end found
    before=$(sent_packets "$ns")
    start=$(date +%s.%N)
    found=$(ip netns exec "$ns" env RUST_LOG=fleetctl::scan::icmp::send=debug \
        timeout 900 /usr/bin/time -o "$DATA/cpu" -f '%U %S' "$@" 2>"$DATA/stderr" | wc -l) || true
    # fleetctl's own account (at debug level): when its last probe went and
    # when sending was over.
    local done_line
    done_line=$(grep -a 'sending done' "$DATA/stderr" | sed 's/\x1b\[[0-9;]*m//g' | tail -1) || true
    [ -z "$done_line" ] || LAST_SENT[$key]=$(sed -E 's/.*last_sent=([0-9.]+)(m?s).*/\1 \2/' <<<"$done_line" | awk '{ print ($2 == "ms") ? $1 / 1000 : $1 }')
    [ -z "$done_line" ] || FINISHED[$key]=$(sed -E 's/.*finished=([0-9.]+)(m?s).*/\1 \2/' <<<"$done_line" | awk '{ print ($2 == "ms") ? $1 / 1000 : $1 }')
    end=$(date +%s.%N)
    WALLS[$key]+=" $(echo "$end - $start" | bc)"
    CPUS[$key]+=" $(tail -1 "$DATA/cpu" | awk '{ print $1 + $2 }')"
    # The fewest found and most sent over the rounds: a lost host shows.
    [ -n "${FOUND[$key]:-}" ] && [ "${FOUND[$key]}" -le "$found" ] || FOUND[$key]=$found
    local sent=$(( $(sent_packets "$ns") - before ))
    [ -n "${SENT[$key]:-}" ] && [ "${SENT[$key]}" -ge "$sent" ] || SENT[$key]=$sent
    if [ -z "${NAME[$key]:-}" ]; then NAME[$key]=$name RANGE[$key]=$range ORDER+=("$key"); fi
}
median() { # median of the wall times recorded under KEY (of CPU times with a second argument)
    local values=${WALLS[$1]}
    [ -z "${2:-}" ] || values=${CPUS[$1]}
    tr ' ' '\n' <<<"$values" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
ratio() { # ratio A B: A's median wall time over B's (as 1/N when tiny), or "-"
    [ -n "${WALLS[$2]:-}" ] || { echo -; return; }
    local r
    r=$(echo "$(median "$1") / $(median "$2")" | bc -l)
    if [ "$(echo "$r < 0.1" | bc -l)" = 1 ]; then
        printf '1/%.0f' "$(echo "1 / $r" | bc -l)"
    else
        printf '%.2fx' "$r"
    fi
}

# Each round runs every tool once, so a change in the machine's load hits
# all of them alike; the table shows each one's median over the rounds.
ROUNDS=${ROUNDS:-3}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
FC=("$BIN" scan -o jsonl --alive-only)
for _ in $(seq "$ROUNDS"); do
    run lo_fast "fleetctl --rate 0" "loopback" "$LO_NS" "${FC[@]}" --rate 0 127.0.0.0/16
    run lo_fast_icmp "fleetctl --rate 0 --no-banner" "loopback" "$LO_NS" "${FC[@]}" --rate 0 --no-banner 127.0.0.0/16
    run lo_default "fleetctl (defaults)" "loopback" "$LO_NS" "${FC[@]}" 127.0.0.0/16
    run lo_fping "fping -i 0" "loopback" "$LO_NS" fping -q -a -i 0 -g 127.0.0.0/16
    run lo_nmap "nmap -sn" "loopback" "$LO_NS" sh -c 'nmap -sn -n 127.0.0.0/16 -oG - | grep "Status: Up"'
    run net_fast "fleetctl --rate 0" "routed" "$SCAN_NS" "${FC[@]}" --rate 0 "$NET"
    run net_fast_icmp "fleetctl --rate 0 --no-banner" "routed" "$SCAN_NS" "${FC[@]}" --rate 0 --no-banner "$NET"
    run net_default "fleetctl (defaults)" "routed" "$SCAN_NS" "${FC[@]}" "$NET"
    run net_fping "fping -i 0" "routed" "$SCAN_NS" fping -q -a -i 0 -g "$NET"
    run net_fping_r0 "fping -i 0 -r 0" "routed" "$SCAN_NS" fping -q -a -i 0 -r 0 -g "$NET"
done
# nmap takes minutes on the routed range: once, and SKIP_NMAP=1 leaves it out.
[ -n "${SKIP_NMAP:-}" ] || run net_nmap "nmap -sn" "routed" "$SCAN_NS" sh -c "nmap -sn -n $NET -oG - | grep 'Status: Up'"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

echo "fleetctl $("$BIN" --version | cut -d' ' -f2) (release), $(fping -v 2>&1 | head -1), $(nmap --version | head -1);"
echo "$(nproc) cores, kernel $(uname -r); load average before: $LOAD_BEFORE, after: $LOAD_AFTER;"
echo "median of $ROUNDS rounds (nmap's routed run: one)"
echo
echo "| range | tool | wall time | CPU (user+sys) | live found | probes sent | vs fping -i 0 | vs nmap -sn |"
echo "|---|---|---|---|---|---|---|---|"
for key in "${ORDER[@]}"; do
    base=${key%%_*}
    printf '| %s | %s | %.2f s | %.2f s | %d | %d | %s | %s |\n' "${RANGE[$key]}" "${NAME[$key]}" "$(median "$key")" \
        "$(median "$key" cpu)" "${FOUND[$key]}" "${SENT[$key]}" "$(ratio "$key" "${base}_fping")" "$(ratio "$key" "${base}_nmap")"
done
echo
echo "Live hosts: loopback 65534; routed 4095 (nmap also counts the network address 10.77.0.0)."
echo "Found: the fewest over the rounds. Probes: echo requests and SYNs, the most over the rounds."

verdict() { [ "$(echo "$1" | bc -l)" = 1 ] && echo met || echo "NOT met"; }
lo_ratio=$(echo "$(median lo_fast) / $(median lo_fping)" | bc -l)
net_ratio=$(echo "$(median net_fast) / $(median net_fping)" | bc -l)
echo
printf 'goal: loopback /16, ICMP + port 22 at --rate 0 <= 0.5x fping -i 0: %.2fx, %d/65534 found: %s\n' \
    "$lo_ratio" "${FOUND[lo_fast]}" "$(verdict "$lo_ratio <= 0.5 && ${FOUND[lo_fast]} == 65534")"
printf 'goal: routed /16, ICMP + port 22 at --rate 0 <= 1.0x fping -i 0: %.2fx, %d/4095 found: %s\n' \
    "$net_ratio" "${FOUND[net_fast]}" "$(verdict "$net_ratio <= 1 && ${FOUND[net_fast]} == 4095")"
# What bounds --rate 0 here is CPU: the kernel does both ends of every
# packet's journey on these two cores (loopback, veth), so the work of a
# scan, divided by the cores, is the least wall time it can take.
cores=$(nproc)
for key in lo_fast lo_fping net_fast net_fping; do
    cpu=$(median "$key" cpu)
    printf 'CPU floor, %s %s: %.2f s of CPU for %d probes (%.1f us each) / %d cores = %.2f s; wall %.2f s\n' \
        "${RANGE[$key]}" "${NAME[$key]}" "$cpu" "${SENT[$key]}" "$(echo "$cpu * 1000000 / ${SENT[$key]}" | bc -l)" \
        "$cores" "$(echo "$cpu / $cores" | bc -l)" "$(median "$key")"
done
for key in lo_default net_default; do
    bound=$(echo "${SENT[$key]} / 100000" | bc -l)
    printf 'defaults, %s: %d probes / 100000 per s = %.2f s; wall %.2f s: %.2f s beyond the rate bound\n' \
        "${RANGE[$key]}" "${SENT[$key]}" "$bound" "$(median "$key")" "$(echo "$(median "$key") - $bound" | bc -l)"
    [ -z "${FINISHED[$key]:-}" ] || printf '  (last round: last probe sent at %.2f s, sending over at %.2f s, so %.3f s of final timeout; the rest is start-up, output and the inventory, %s live hosts)\n' \
        "${LAST_SENT[$key]}" "${FINISHED[$key]}" "$(echo "${FINISHED[$key]} - ${LAST_SENT[$key]}" | bc -l)" "${FOUND[$key]}"
done
