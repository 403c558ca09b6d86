#!/usr/bin/env bash
# Fan-out benchmark: `fleetctl run` against OpenSSH's own client in a loop
# (`ssh -o BatchMode=yes HOST CMD`, 16 at once with xargs -P16), in one run,
# on the same 50 real sshd hosts on loopback (127.17.1.1-50, port 22, each
# with its own host key). Both sides use the same client key, ssh_config and
# known_hosts, and verify host keys strictly. fleetctl's time includes
# grouping the output (its default text output, groups and summary); the
# ssh loop only writes each host's output to a file. The command prints a
# line that differs per host and one that does not.
# Needs root (port 22). Prints a markdown table: median wall time of RUNS
# runs each, client CPU (user + sys of every client process), and
# fleetctl's peak RSS.
#   usage: tests/bench/run_fanout.sh [--no-build]      (RUNS=5 by default)
#   BIN=path/to/fleetctl overrides the binary measured.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run_fanout.sh needs root (sshd on port 22)" >&2; exit 2; }
export PATH="$HOME/.cargo/bin:$PATH"
HOSTS=50 RUNS=${RUNS:-5}
COMMAND='uname -sm; echo "$SSH_CONNECTION" | cut -d" " -f3'
for tool in ssh ssh-keygen xargs /usr/bin/time awk; do
    command -v "$tool" >/dev/null || { echo "needs $tool (openssh-client, time)" >&2; exit 2; }
done
[ -x /usr/sbin/sshd ] || { echo "needs /usr/sbin/sshd (openssh-server)" >&2; exit 2; }
[ "${1:-}" = --no-build ] || nice -n 10 cargo build --release --quiet
BIN=${BIN:-$PWD/target/release/fleetctl}

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
Host 127.17.1.*
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
    ip=127.17.1.$i
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
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# fleet_run CONCURRENCY: the grouped text output, checked.
fleet_run() {
    local t0 t1
    t0=$(now)
    /usr/bin/time -f '%M %U %S' -o "$WORK/rss" "$BIN" run --concurrency "$1" \
        --ssh-config "$WORK/ssh_config" --known-hosts "$WORK/known_hosts" \
        "${ADDRS[@]}" -- "$COMMAND" > "$WORK/fleet.out" 2>"$WORK/fleet.err" || true
    t1=$(now)
    grep -q "^# $HOSTS hosts: $HOSTS ok$" "$WORK/fleet.out" ||
        { echo "fleetctl did not run on every host:" >&2; tail -3 "$WORK/fleet.out" "$WORK/fleet.err" >&2; exit 1; }
    awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

ssh_run() {
    local t0 t1
    t0=$(now)
    printf '%s\n' "${ADDRS[@]}" | /usr/bin/time -f '%U %S' -o "$WORK/ssh.cpu" xargs -P16 -I{} \
        sh -c 'ssh -F "$1" -o BatchMode=yes "$2" "$4" > "$3/ssh.$2" 2>&1 || echo "$2 failed" >&2' \
        _ "$WORK/ssh_config" {} "$WORK" "$COMMAND"
    t1=$(now)
    ok=$(grep -l "^127.17.1" "$WORK"/ssh.127.* | wc -l)
    [ "$ok" = "$HOSTS" ] || { echo "ssh: $ok of $HOSTS ok" >&2; exit 1; }
    rm -f "$WORK"/ssh.127.*
    awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

: > "$WORK/ssh.times"; : > "$WORK/ssh.cpu.all"
for _ in $(seq 1 "$RUNS"); do
    # Alternate, so neither side always runs on a warmer machine.
    for c in 32 16; do
        fleet_run "$c" >> "$WORK/fleet$c.times"; cat "$WORK/rss" >> "$WORK/rss$c.all"
    done
    ssh_run >> "$WORK/ssh.times"; cat "$WORK/ssh.cpu" >> "$WORK/ssh.cpu.all"
done
ssh=$(median < "$WORK/ssh.times")
ssh_cpu=$(awk '{print $1 + $2}' "$WORK/ssh.cpu.all" | median)

echo
echo "| $HOSTS sshd hosts on loopback | wall time (median of $RUNS) | client CPU | peak RSS |"
echo "|---|---|---|---|"
for c in 32 16; do
    fleet=$(median < "$WORK/fleet$c.times")
    rss=$(cut -d' ' -f1 "$WORK/rss$c.all" | sort -n | tail -1)
    fleet_cpu=$(awk '{print $2 + $3}' "$WORK/rss$c.all" | median)
    printf '| fleetctl run --concurrency %d (grouped output included) | %.2f s | %.2f s | %d MB |\n' \
        "$c" "$fleet" "$fleet_cpu" "$((rss / 1024))"
    echo "$fleet" >> "$WORK/fleet.best"
done
printf "| ssh -o BatchMode=yes HOST CMD, xargs -P16 (one file per host) | %.2f s | %.2f s | |\n" \
    "$ssh" "$ssh_cpu"
fleet=$(sort -n "$WORK/fleet.best" | head -1)
printf '\nfleetctl is %.1fx faster (best row). (%s; %s)\n' "$(awk -v s="$ssh" -v f="$fleet" 'BEGIN { print s / f }')" \
    "$("$BIN" --version)" "$(ssh -V 2>&1)"
