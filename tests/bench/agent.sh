#!/usr/bin/env bash
# Agent footprint: the agent deploy pushes (the portable agent-only build from
# .ci/build-agent) against prometheus-node-exporter, one run, same machine,
# both under `nice -n 10` as a node would run them:
#   idle     60 s, nobody scraping (the agent samples /proc every 2 s and
#            heartbeats the control plane; node_exporter does nothing);
#   scraped  60 s, one `curl /metrics` per second to each (the agent's over
#            HTTPS with a stats token, a new TLS connection each time).
# Reports resident memory at the end of each phase (and the peak), and CPU
# time used during the phase as % of one core, from /proc/PID/{status,stat}.
# Ends with the three ratios against node_exporter and the targets: binary
# size (<= 5 MB), RSS idle and scraped (<= 6 MiB), CPU under scrapes (<= 1/10).
# Everything listens on 127.5.0.x. Needs root (as the agent runs on nodes).
#   usage: tests/bench/agent.sh [--no-build]
#   AGENT_BIN=PATH measures another build as the agent (e.g. the console's
#   target/release/fleetctl, which runs the agent too).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "agent.sh needs root" >&2; exit 2; }
export PATH="$HOME/.cargo/bin:$PATH"
command -v prometheus-node-exporter >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-node-exporter curl >/dev/null
}
if [ "${1:-}" != --no-build ]; then
    cargo build --release --quiet          # the console: serve and tokens
    [ -n "${AGENT_BIN:-}" ] || .ci/build-agent --no-install >/dev/null
fi
BIN=$PWD/target/release/fleetctl
AGENT_BIN=${AGENT_BIN:-$PWD/target/$(rustc -vV | sed -n 's/^host: //p')/agent/fleetctl}
for b in "$BIN" "$AGENT_BIN"; do [ -x "$b" ] || { echo "no $b: run without --no-build" >&2; exit 1; }; done
PHASE=${PHASE_SECS:-60}

umask 077
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# wait_for FILE REGEX: prints the first match once it appears (10 s at most).
wait_for() {
    for _ in $(seq 100); do
        if m=$(grep -oE "$2" "$1" 2>/dev/null | head -1) && [ -n "$m" ]; then echo "$m"; return; fi
        sleep 0.1
    done
    echo "no /$2/ in $1:" >&2; cat "$1" >&2; exit 1
}

printf '[control]\nlisten = "127.5.0.1:0"\n' >"$WORK/control.toml"
ctl() { "$BIN" --config "$WORK/control.toml" --data-dir "$WORK/control" "$@"; }
# Started directly (not through ctl) so $! is fleetctl itself, which cleanup kills.
"$BIN" --config "$WORK/control.toml" --data-dir "$WORK/control" serve 2>"$WORK/serve.log" &
PIDS+=($!)
URL=$(wait_for "$WORK/serve.log" 'https://127\.5\.0\.1:[0-9]+')
CA=$WORK/control/control/ca.pem
ctl token join 127.5.0.100 --name bench-node >"$WORK/join.token"
cat >"$WORK/agent.toml" <<EOF
controller = "$URL"
ca_file = "$CA"
join_token_file = "$WORK/join.token"
data_dir = "$WORK/agent"
listen = "127.5.0.100:0"
hostname = "bench-node"
EOF
nice -n 10 "$AGENT_BIN" agent --config "$WORK/agent.toml" 2>"$WORK/agent.log" &
AGENT_PID=$!
PIDS+=($AGENT_PID)
AGENT=$(wait_for "$WORK/agent.log" 'listening on 127\.5\.0\.100:[0-9]+' | awk '{print $3}')
printf 'Authorization: Bearer %s\n' "$(ctl token stats)" >"$WORK/auth.header"
for _ in $(seq 100); do
    curl -sf --cacert "$CA" -H @"$WORK/auth.header" "https://$AGENT/v1/stats" >/dev/null && break
    sleep 0.1
done
curl -sf --cacert "$CA" -H @"$WORK/auth.header" "https://$AGENT/v1/stats" >/dev/null ||
    { echo "the agent never served stats:" >&2; cat "$WORK/agent.log" >&2; exit 1; }

NE_ADDR=127.5.0.101:19100
nice -n 10 prometheus-node-exporter --web.listen-address="$NE_ADDR" 2>"$WORK/node_exporter.log" &
NE_PID=$!
PIDS+=($NE_PID)
for _ in $(seq 100); do curl -sf "http://$NE_ADDR/metrics" >/dev/null && break; sleep 0.1; done

# cpu_ticks PID: user + system clock ticks so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)

# pct TICKS: "0.083 % (5 ticks)": CPU over the phase as % of one core.
pct() { printf '%.3f %% (%d ticks)' "$(echo "scale=6; $1 * 100 / $HZ / $PHASE" | bc)" "$1"; }

declare -A RESULT
# measure PHASE_NAME SCRAPE(0|1)
measure() {
    local a0 n0 a1 n1
    a0=$(cpu_ticks "$AGENT_PID"); n0=$(cpu_ticks "$NE_PID")
    local end=$((SECONDS + PHASE))
    while [ "$SECONDS" -lt "$end" ]; do
        if [ "$2" = 1 ]; then
            curl -sf --cacert "$CA" -H @"$WORK/auth.header" "https://$AGENT/metrics" -o /dev/null
            curl -sf "http://$NE_ADDR/metrics" -o /dev/null
        fi
        sleep 1
    done
    a1=$(cpu_ticks "$AGENT_PID"); n1=$(cpu_ticks "$NE_PID")
    RESULT[$1,agent,cpu]=$(pct $((a1 - a0)))
    RESULT[$1,ne,cpu]=$(pct $((n1 - n0)))
    RESULT[$1,agent,rss]=$(kib "$AGENT_PID" VmRSS)
    RESULT[$1,ne,rss]=$(kib "$NE_PID" VmRSS)
}
sleep 3 # both past start-up
measure idle 0
measure scraped 1
AGENT_PAGE=$(curl -sf --cacert "$CA" -H @"$WORK/auth.header" "https://$AGENT/metrics" | wc -c)
NE_PAGE=$(curl -sf "http://$NE_ADDR/metrics" | wc -c)

mib() { printf '%.1f' "$(echo "scale=2; $1 / 1024" | bc)"; }
NE_BIN=$(command -v prometheus-node-exporter)
echo "agent: $AGENT_BIN ($("$AGENT_BIN" --version | cut -d' ' -f2-)); $(prometheus-node-exporter --version 2>&1 | awk 'NR == 1 {print $1, $3}'); $(nproc) cores; ${PHASE}s per phase"
echo
echo "| process | binary | RSS idle | CPU idle | RSS scraped 1/s | CPU scraped 1/s | peak RSS | /metrics size |"
echo "|---|---|---|---|---|---|---|---|"
mb() { printf '%.2f MB' "$(echo "scale=4; $(stat -c %s "$1") / 1000000" | bc)"; }
printf '| fleetctl agent | %s | %s MiB | %s | %s MiB | %s | %s MiB | %s KiB |\n' "$(mb "$AGENT_BIN")" \
    "$(mib "${RESULT[idle,agent,rss]}")" "${RESULT[idle,agent,cpu]}" \
    "$(mib "${RESULT[scraped,agent,rss]}")" "${RESULT[scraped,agent,cpu]}" \
    "$(mib "$(kib "$AGENT_PID" VmHWM)")" "$((AGENT_PAGE / 1024))"
printf '| node_exporter | %s | %s MiB | %s | %s MiB | %s | %s MiB | %s KiB |\n' "$(mb "$NE_BIN")" \
    "$(mib "${RESULT[idle,ne,rss]}")" "${RESULT[idle,ne,cpu]}" \
    "$(mib "${RESULT[scraped,ne,rss]}")" "${RESULT[scraped,ne,cpu]}" \
    "$(mib "$(kib "$NE_PID" VmHWM)")" "$((NE_PAGE / 1024))"
echo
echo "CPU: % of one core over the phase, user + system from /proc/PID/stat; one tick is 1/$HZ s."

# ratio A B: A / B to three places ("n/a" when B is 0).
ratio() { if [ "$2" = 0 ]; then echo n/a; else printf '%.3f' "$(echo "scale=6; $1 / $2" | bc)"; fi; }
# check VALUE LIMIT: "met" when VALUE <= LIMIT.
check() { if [ "$(echo "$1 <= $2" | bc)" = 1 ]; then echo met; else echo MISSED; fi; }
ticks() { echo "$1" | sed -E 's/.*\(([0-9]+) ticks?\)/\1/'; }
size_a=$(stat -c %s "$AGENT_BIN"); size_n=$(stat -c %s "$NE_BIN")
rss_a=${RESULT[scraped,agent,rss]}; rss_n=${RESULT[scraped,ne,rss]}
[ "${RESULT[idle,agent,rss]}" -gt "$rss_a" ] && rss_a=${RESULT[idle,agent,rss]}
cpu_a=$(ticks "${RESULT[scraped,agent,cpu]}"); cpu_n=$(ticks "${RESULT[scraped,ne,cpu]}")
echo
echo "| ratio to node_exporter | agent / node_exporter | target | |"
echo "|---|---|---|---|"
echo "| binary size | $(ratio "$size_a" "$size_n") ($(mb "$AGENT_BIN") vs $(mb "$NE_BIN")) | <= 5 MB | $(check "$size_a" 5000000) |"
echo "| RSS (higher of idle, scraped) | $(ratio "$rss_a" "$rss_n") ($(mib "$rss_a") vs $(mib "$rss_n") MiB) | <= 6 MiB | $(check "$rss_a" 6144) |"
echo "| CPU under 1 scrape/s | $(ratio "$cpu_a" "$cpu_n") ($cpu_a vs $cpu_n ticks) | <= 0.100 | $(check "$cpu_a * 10" "$cpu_n") |"
