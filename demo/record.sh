#!/usr/bin/env bash
# Records `fleetctl demo` unattended, with Debian packages only (asciinema,
# tmux): tmux gives a terminal of a fixed size, asciinema records
# `fleetctl demo` inside it, and the keys an operator would press go in
# with `tmux send-keys`, each once the screen shows what it waits for.
# Writes a .cast (asciicast v2). demo/render.sh turns it into the SVGs the
# README shows.
#
#   demo/record.sh [OUT.cast]
#
# The first look: scan, fingerprint, deploy, live stats. With TOUR=1 it
# goes on: a healthy host's detail, the cut-off host's detail until its
# token has expired, then the fleet in each built-in theme.
#
# Environment (all optional):
#   FLEETCTL  the binary (default: target/release/fleetctl, else target/debug/fleetctl)
#   HOSTS     sandbox hosts (default 12)     SEED  which hosts fail (default 7)
#   COLS ROWS terminal size (default 120x36) WATCH seconds of live stats (default 20)
#   BASE      first sandbox address (default 127.42.0.10)
#   THEME     console theme (default: default)
#   TOUR      1 to go on after the first look (default 0)
#   DETAIL_HOST  a healthy host for the tour's detail (default demo-02)
#   CUT_HOST     the host cut off from the control plane (default demo-07,
#                which seed 7 with 12 hosts and the default roles both pick)
#   MARKS     a file to append "NAME MILLISECONDS" to at each screen worth a
#             still, in the cast's time (render.sh reads it)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-demo/first-look.cast}
hosts=${HOSTS:-12}
seed=${SEED:-7}
cols=${COLS:-120}
rows=${ROWS:-36}
watch=${WATCH:-20}
base=${BASE:-127.42.0.10}
theme=${THEME:-default}
tour=${TOUR:-0}
detail_host=${DETAIL_HOST:-demo-02}
cut_host=${CUT_HOST:-demo-07}
marks=${MARKS:-/dev/null}
bin=${FLEETCTL:-}
if [ -z "$bin" ]; then
    for b in target/release/fleetctl target/debug/fleetctl; do
        [ -x "$b" ] && { bin=$b; break; }
    done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "record.sh: no fleetctl binary: cargo build --release first, or set FLEETCTL" >&2; exit 2; }
for tool in asciinema tmux; do
    command -v "$tool" >/dev/null || { echo "record.sh: needs $tool (apt-get install $tool)" >&2; exit 2; }
done
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
"$bin" demo --help >/dev/null 2>&1 || { echo "record.sh: $bin has no demo command: rebuild it (cargo build --release)" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

sock="fleetctl-record-$$"
work=$(mktemp -d)
tmux_() { tmux -L "$sock" -f /dev/null "$@"; }
cleanup() {
    tmux_ kill-server 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A config of its own: the operator's settings and theme files stay out of it.
: >"$work/config.toml"
cat >"$work/run.sh" <<EOF
#!/bin/sh
export FLEETCTL_CONFIG='$work/config.toml' FLEETCTL_DATA_DIR='$work/data'
export TERM=xterm-256color COLORTERM=truecolor LANG=C.UTF-8
unset NO_COLOR RUST_LOG
date +%s%3N >'$work/started'
exec '$bin' demo --hosts $hosts --seed $seed --base $base --theme $theme
EOF
chmod +x "$work/run.sh"

# asciinema takes the pane's size; its header records it. Its clock starts
# just before it runs run.sh, which notes the time: marks count from there.
tmux_ new-session -d -s rec -x "$cols" -y "$rows" \
    "asciinema rec --quiet --overwrite --cols $cols --rows $rows -c '$work/run.sh' '$out'; echo recorded >'$work/done'; sleep 2"

screen() { tmux_ capture-pane -p -t rec 2>/dev/null || true; }
# Waits (bounded) until the screen shows $1 at least $2 times (default 1).
wait_for() {
    local text=$1 times=${2:-1} limit=${3:-120} i=0
    while [ "$(screen | grep -o -- "$text" | wc -l)" -lt "$times" ]; do
        i=$((i + 1))
        if [ "$i" -gt $((limit * 5)) ]; then
            echo "record.sh: the screen never showed '$text' ($times times) in ${limit}s; it shows:" >&2
            screen >&2
            exit 1
        fi
        sleep 0.2
    done
}
keys() { for k in "$@"; do tmux_ send-keys -t rec "$k"; sleep 0.4; done; }
# Types text literally, a key at a time, as a person would.
type_() {
    local text=$1 i
    for ((i = 0; i < ${#text}; i++)); do
        tmux_ send-keys -t rec -l "${text:i:1}"
        sleep 0.08
    done
}
# Notes the time in the cast.
mark() {
    local now
    now=$(date +%s%3N)
    echo "$1 $((now - $(cat "$work/started")))" >>"$marks"
}
# Notes that the screen now is worth a still: the moment is in the middle
# of three quiet seconds, so the frame nearest it is never a key's effect.
still() {
    sleep 1.5
    mark "$1"
    sleep 1.5
}

healthy=$((hosts - 3))
wait_for "s Enter scans"
sleep 2
keys s                      # the scan prompt, the sandbox range already in it
sleep 1
keys Enter
wait_for "scan done"
sleep 2
keys '*' f                  # mark every host, fingerprint them
wait_for "fingerprint done" 1 90
sleep 2
keys / 'ssh:ok' Enter '*' d # only the hosts SSH lets in; deploy asks first
sleep 1
keys y
wait_for "deploy done" 1 240
wait_for "registered" "$healthy" 60
keys Escape                 # every host again
mark live
sleep "$watch"              # live stats, and the cut-off host's token draining
still stats

if [ "$tour" = 1 ]; then
    # A healthy host in full: states, facts, charts, its token timeline.
    keys /
    type_ "$detail_host"
    keys Enter Enter
    wait_for "timeline"
    wait_for "renewals [1-9]" 1 90  # its first renewal, a tick on the timeline
    sleep 4
    still detail
    keys Escape Escape
    # The cut-off host: lost, its renewals failing, then expired.
    keys /
    type_ "$cut_host"
    keys Enter Enter
    wait_for "token expired" 1 150
    wait_for "expired╳" 2 90   # named on the token and registration lanes
    still expired
    keys Escape Escape
    still theme-default
    for t in light high-contrast catppuccin-mocha; do
        keys :
        type_ "theme $t"
        keys Enter
        still "theme-$t"
    done
fi
keys q
i=0
until [ -e "$work/done" ]; do
    i=$((i + 1))
    [ "$i" -gt 150 ] && { echo "record.sh: the demo did not end within 30s of q" >&2; exit 1; }
    sleep 0.2
done
echo "record.sh: wrote $out (${cols}x${rows}, $hosts hosts, seed $seed)"
