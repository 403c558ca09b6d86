#!/usr/bin/env bash
# Fingerprint benchmark: `fleetctl fingerprint` against OpenSSH's own client
# (`ssh -o BatchMode=yes HOST 'uname -a; cat /etc/os-release'`, 16 at once
# with xargs -P16), in one run, on the same 50 real sshd hosts on loopback
# (127.3.1.1-50, port 22, each with its own host key). Both sides use the same
# client key, ssh_config and known_hosts, and verify host keys strictly.
# fleetctl gathers more facts (its whole script) than the ssh command does.
# Needs root (port 22). Prints a markdown table: median wall time of RUNS
# runs each, and fleetctl's peak RSS.
#   usage: tests/bench/fingerprint.sh [--no-build]      (RUNS=5 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "fingerprint.sh needs root (sshd on port 22)" >&2; exit 2; }
export PATH="$HOME/.cargo/bin:$PATH"
HOSTS=50 RUNS=${RUNS:-5}
for tool in sshd ssh ssh-keygen xargs /usr/bin/time awk; do
    command -v "$tool" >/dev/null || { echo "needs $tool (openssh-server, openssh-client, time)" >&2; exit 2; }
done
[ "${1:-}" = --no-build ] || nice -n 10 cargo build --release --quiet
BIN=$PWD/target/release/fleetctl

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
export FLEETCTL_DATA_DIR=$WORK/data FLEETCTL_CONFIG=$WORK/none.toml
touch "$FLEETCTL_CONFIG"
mkdir -p /run/sshd

ssh-keygen -q -t ed25519 -N '' -C bench -f "$WORK/client"
cp "$WORK/client.pub" "$WORK/authorized_keys"
cat > "$WORK/ssh_config" <<CONF
Host 127.3.1.*
    User root
    IdentityFile $WORK/client
    IdentitiesOnly yes
    UserKnownHostsFile $WORK/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 10
CONF
: > "$WORK/known_hosts"
ADDRS=()
for i in $(seq 1 "$HOSTS"); do
    ip=127.3.1.$i
    ADDRS+=("$ip")
    ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_$i"
    echo "$ip $(cat "$WORK/host_$i.pub")" >> "$WORK/known_hosts"
    cat > "$WORK/sshd_$i" <<CONF
ListenAddress $ip:22
HostKey $WORK/host_$i
PidFile none
UsePAM no
PasswordAuthentication no
AuthorizedKeysFile $WORK/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
MaxStartups 100
CONF
    /usr/sbin/sshd -D -f "$WORK/sshd_$i" 2>>"$WORK/sshd.log" &
    PIDS+=($!)
done
# Wait (bounded) until every sshd accepts connections.
for ip in "${ADDRS[@]}"; do
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/$ip/22") 2>/dev/null && break
        sleep 0.05
    done
done

now() { date +%s.%N; }
# CPU seconds the sshd listeners and every process they reaped (per-connection
# sshd, the remote shell and what it ran) have used so far.
TICK=$(getconf CLK_TCK)
server_cpu() {
    for pid in "${PIDS[@]}"; do cat "/proc/$pid/stat"; done |
        awk -v tick="$TICK" '{ sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15 } END { print t / tick }'
}
# server_cpu_since T0 FILE: appends the server CPU used since T0 to FILE.
server_cpu_since() { awk -v a="$1" -v b="$(server_cpu)" 'BEGIN { print b - a }' >> "$2"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# fleet_run CONCURRENCY
fleet_run() {
    local t0 t1
    t0=$(now)
    /usr/bin/time -f '%M %U %S' -o "$WORK/rss" "$BIN" fingerprint -o jsonl --concurrency "$1" \
        --ssh-config "$WORK/ssh_config" --known-hosts "$WORK/known_hosts" \
        "${ADDRS[@]}" > "$WORK/fleet.out" 2>"$WORK/fleet.err" || true
    t1=$(now)
    ok=$(grep -c '"facts"' "$WORK/fleet.out" || true)
    [ "$ok" = "$HOSTS" ] || { echo "fleetctl: $ok of $HOSTS ok" >&2; cat "$WORK/fleet.err" >&2; exit 1; }
    awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

ssh_run() {
    local t0 t1
    t0=$(now)
    printf '%s\n' "${ADDRS[@]}" | /usr/bin/time -f '%U %S' -o "$WORK/ssh.cpu" xargs -P16 -I{} \
        sh -c 'ssh -F "$1" -o BatchMode=yes "$2" "uname -a; cat /etc/os-release" > "$3/ssh.$2" 2>&1 || echo "$2 failed" >&2' \
        _ "$WORK/ssh_config" {} "$WORK"
    t1=$(now)
    ok=$(grep -l '^ID=' "$WORK"/ssh.127.* | wc -l)
    [ "$ok" = "$HOSTS" ] || { echo "ssh: $ok of $HOSTS ok" >&2; exit 1; }
    rm -f "$WORK"/ssh.127.*
    awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

: > "$WORK/ssh.times"; : > "$WORK/ssh.cpu.all"
for _ in $(seq 1 "$RUNS"); do
    # Alternate, so neither side always runs on a warmer machine.
    for c in 32 16; do
        s0=$(server_cpu)
        fleet_run "$c" >> "$WORK/fleet$c.times"; cat "$WORK/rss" >> "$WORK/rss$c.all"
        server_cpu_since "$s0" "$WORK/fleet$c.server"
    done
    s0=$(server_cpu)
    ssh_run >> "$WORK/ssh.times"; cat "$WORK/ssh.cpu" >> "$WORK/ssh.cpu.all"
    server_cpu_since "$s0" "$WORK/ssh.server"
done
ssh=$(median < "$WORK/ssh.times")
# Client-side CPU (user + sys): fleetctl's own, and every ssh process's.
ssh_cpu=$(awk '{print $1 + $2}' "$WORK/ssh.cpu.all" | median)
ssh_server=$(median < "$WORK/ssh.server")

echo
echo "| $HOSTS sshd hosts on loopback | wall time (median of $RUNS) | client CPU | server CPU | peak RSS |"
echo "|---|---|---|---|---|"
for c in 32 16; do
    fleet=$(median < "$WORK/fleet$c.times")
    rss=$(cut -d' ' -f1 "$WORK/rss$c.all" | sort -n | tail -1)
    fleet_cpu=$(awk '{print $2 + $3}' "$WORK/rss$c.all" | median)
    fleet_server=$(median < "$WORK/fleet$c.server")
    printf '| fleetctl fingerprint --concurrency %d (full script) | %.2f s | %.2f s | %.2f s | %d MB |\n' \
        "$c" "$fleet" "$fleet_cpu" "$fleet_server" "$((rss / 1024))"
    echo "$fleet" >> "$WORK/fleet.best"
done
printf "| ssh -o BatchMode=yes HOST 'uname -a; cat /etc/os-release', xargs -P16 | %.2f s | %.2f s | %.2f s | |\n" \
    "$ssh" "$ssh_cpu" "$ssh_server"
fleet=$(sort -n "$WORK/fleet.best" | head -1)
printf '\nfleetctl is %.1fx faster (best row). (%s; %s)\n' "$(awk -v s="$ssh" -v f="$fleet" 'BEGIN { print s / f }')" \
    "$("$BIN" --version)" "$(ssh -V 2>&1)"
