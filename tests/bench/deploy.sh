#!/usr/bin/env bash
# Deploy benchmark: `fleetctl deploy` to N loopback sshd "hosts" against a
# plain scp + ssh loop (xargs -P) doing the same copy and start, in one run.
#
# Run as root: bash tests/bench/deploy.sh   (N=50 P=16 by default)
#
# Each host is an sshd on 127.7.1.X:2222 in a mount + UTS namespace of its
# own (tmpfs over /usr/local/lib and /var/lib, its own host name), so every
# host gets a root install of its own. A `fleetctl serve` on 127.7.0.1 is
# the control plane both sides' agents register with.
#
#  - scp+ssh: per host, mint a join token (`fleetctl token join`), scp the
#    binary, its config and the CA, then one ssh that writes the token from
#    stdin and starts the agent detached. No checksum, no waiting.
#  - fleetctl deploy: per host, inspect, SFTP upload, sha256 verified on the
#    host, atomic rename, 0600 config/CA/token, start, then wait for the
#    agent's /healthz over the fleet CA and for the control plane to list it
#    as registered.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces, sshd)" >&2; exit 1; }
for tool in sshd ssh scp ssh-keygen unshare nsenter xargs strip; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
N=${N:-50}
P=${P:-16}
SSH_PORT=2222

cargo build --release --locked -q
BIN=$PWD/target/release/fleetctl
work=$(mktemp -d /tmp/fleetctl-bench-deploy.XXXXXX)
export FLEETCTL_CONFIG=$work/config.toml FLEETCTL_DATA_DIR=$work/data
: >"$FLEETCTL_CONFIG"
pids=()

cleanup() {
    # Every process in a host's mount namespace is the bench's own: its
    # sshd, sessions and agents (even one whose pidfile was never written).
    for pid in "${pids[@]}"; do
        ns=$(readlink "/proc/$pid/ns/mnt" 2>/dev/null) || continue
        for p in /proc/[0-9]*; do
            [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && kill "${p#/proc/}" 2>/dev/null
        done
    done
    [ -n "${serve_pid:-}" ] && kill "$serve_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
mkdir -p /run/sshd
cat >"$work/sshd_config" <<CONF
HostKey $work/host_key
PidFile none
UsePAM no
PasswordAuthentication no
AuthorizedKeysFile $work/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
MaxStartups 100:30:200
Subsystem sftp internal-sftp
CONF

ip_of() { echo "127.7.1.$1"; }
: >"$work/ssh_config"
: >"$work/known_hosts"
for i in $(seq 1 "$N"); do
    ip=$(ip_of "$i")
    unshare --mount --uts --propagation private -- sh -c '
        mount -t tmpfs -o mode=755 tmpfs /usr/local/lib &&
        mount -t tmpfs -o mode=755 tmpfs /var/lib &&
        hostname "$1" && shift && exec "$@"' sh "h$i" \
        "$(command -v sshd)" -D -f "$work/sshd_config" -o "ListenAddress=$ip:$SSH_PORT" \
        2>>"$work/sshd.log" &
    pids+=($!)
    printf 'Host h%s\n HostName %s\n Port %s\n' "$i" "$ip" "$SSH_PORT" >>"$work/ssh_config"
    echo "[$ip]:$SSH_PORT $(cat "$work/host_key.pub")" >>"$work/known_hosts"
done
printf 'Host *\n User root\n IdentityFile %s\n IdentitiesOnly yes\n' "$work/client_key" >>"$work/ssh_config"
for i in $(seq 1 "$N"); do
    until ss -ltn "src $(ip_of "$i")" | grep -q ":$SSH_PORT"; do sleep 0.05; done
done

"$BIN" serve --listen 127.7.0.1:0 2>"$work/serve.log" &
serve_pid=$!
until grep -q 'agents use' "$work/serve.log"; do sleep 0.05; done
URL=$(sed -n 's/.*agents use \([^;]*\);.*/\1/p' "$work/serve.log")

# What is pushed: the release binary, as deploy pushes it.
size=$(stat -c %s "$BIN")
hosts=$(seq -f 'h%g' 1 "$N" | tr '\n' ' ')
SSH_OPTS=(-F "$work/ssh_config" -o UserKnownHostsFile="$work/known_hosts" -o BatchMode=yes)
export BIN URL work SSH_PORT
export SSH_OPTS_STR="${SSH_OPTS[*]}"

# --- scp + ssh loop -----------------------------------------------------
baseline_host() {
    local i=$1 ip="127.7.1.$1" start end dir
    start=$(date +%s%N)
    dir=$work/baseline/h$i
    mkdir -p "$dir"
    cp "$work/data/control/ca.pem" "$dir/ca.pem"
    cat >"$dir/agent.toml" <<TOML
controller = "$URL"
ca_file = "/var/lib/fleetctl/ca.pem"
join_token_file = "/var/lib/fleetctl/join.token"
data_dir = "/var/lib/fleetctl/data"
listen = "$ip:9701"
advertise = ["$ip"]
TOML
    "$BIN" token join "$ip" >"$dir/join.token"
    # shellcheck disable=SC2086
    ssh $SSH_OPTS_STR "h$i" 'mkdir -p /usr/local/lib/fleetctl /var/lib/fleetctl' &&
    scp -q $SSH_OPTS_STR "$BIN" "h$i:/usr/local/lib/fleetctl/fleetctl" &&
    scp -q $SSH_OPTS_STR "$dir/agent.toml" "$dir/ca.pem" "h$i:/var/lib/fleetctl/" &&
    ssh $SSH_OPTS_STR "h$i" 'cd /var/lib/fleetctl && umask 077 && cat >join.token || exit 1
        setsid /usr/local/lib/fleetctl/fleetctl agent --config agent.toml </dev/null >agent.log 2>&1 &
        echo $! >/var/lib/fleetctl/agent.pid' <"$dir/join.token"
    end=$(date +%s%N)
    echo $(( (end - start) / 1000000 )) >>"$work/baseline.ms"
}
export -f baseline_host

t0=$(date +%s%N)
seq 1 "$N" | timeout 600 xargs -P "$P" -I{} bash -c 'baseline_host {}'
t1=$(date +%s%N)
base_wall=$(( (t1 - t0) / 1000000 ))
base_median=$(sort -n "$work/baseline.ms" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

# Clean the hosts for fleetctl: stop the baseline agents, remove their files.
for pid in "${pids[@]}"; do
    nsenter -t "$pid" -m -- sh -c 'kill $(cat /var/lib/fleetctl/agent.pid) 2>/dev/null; sleep 0.2; rm -rf /usr/local/lib/fleetctl /var/lib/fleetctl'
done

# --- fleetctl deploy ------------------------------------------------------
t0=$(date +%s%N)
# shellcheck disable=SC2086
"$BIN" deploy $hosts --ssh-config "$work/ssh_config" --known-hosts "$work/known_hosts" \
    --controller "$URL" --agent-listen '{host}:9701' --agent-binary "$BIN" \
    --concurrency "$P" --jsonl >"$work/deploy.jsonl"
t1=$(date +%s%N)
fleet_wall=$(( (t1 - t0) / 1000000 ))
deployed=$(grep -c '"result":"deployed"' "$work/deploy.jsonl" || true)
fleet_median=$(grep '"event":"done"' "$work/deploy.jsonl" | sed 's/.*"elapsed_ms":\([0-9]*\).*/\1/' |
    sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
[ -n "${KEEP_EVENTS:-}" ] && cp "$work/deploy.jsonl" "$KEEP_EVENTS"
registered=$("$BIN" agents --url "$URL" -o json 2>/dev/null | grep -o '"state": *"registered"' | wc -l || true)

# Re-run: every host up to date.
t0=$(date +%s%N)
# shellcheck disable=SC2086
"$BIN" deploy $hosts --ssh-config "$work/ssh_config" --known-hosts "$work/known_hosts" \
    --controller "$URL" --agent-listen '{host}:9701' --agent-binary "$BIN" \
    --concurrency "$P" --jsonl >"$work/redeploy.jsonl"
t1=$(date +%s%N)
again_wall=$(( (t1 - t0) / 1000000 ))
uptodate=$(grep -c '"result":"up-to-date"' "$work/redeploy.jsonl" || true)

ms() { awk -v m="$1" 'BEGIN { printf "%.2f s", m / 1000 }'; }
echo
echo "deploy to $N loopback sshd hosts, $P at once; binary $(awk -v b="$size" 'BEGIN { printf "%.1f MiB", b / 1048576 }')"
echo
echo "| method | wall time | per-host median | hosts done |"
echo "|---|---|---|---|"
echo "| scp + ssh loop (xargs -P$P): copy, start | $(ms "$base_wall") | $(ms "$base_median") | $N started, not checked |"
echo "| fleetctl deploy: copy, verify, start, healthy, registered | $(ms "$fleet_wall") | $(ms "$fleet_median") | $deployed deployed ($registered registered) |"
echo "| fleetctl deploy again (all up to date) | $(ms "$again_wall") | - | $uptodate up to date |"
