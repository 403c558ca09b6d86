#!/usr/bin/env bash
# Regenerates the README's pictures from a fresh demo: record.sh records
# the tour (TOUR=1) at 120x36 with seed 7, then svg-term-cli (from the npm
# registry, pinned, installed into a cache directory on first use, never
# into the repository) renders:
#
#   first-look.svg          the animation: scan, fingerprint, deploy, live stats
#   fleet.svg               still: the fleet table with live stats
#   host-detail.svg         still: a healthy host's detail and its token timeline
#   token-expired.svg       still: the cut-off host once its token has expired
#   theme-NAME.svg          still: the fleet in each built-in theme
#
#   demo/render.sh [OUTDIR]        (default: the demo/ directory it is in)
#
# Needs: a fleetctl build (cargo build --release), asciinema and tmux
# (Debian packages), Node.js and npm. Everything record.sh reads from the
# environment passes through (HOSTS, SEED, BASE, WATCH, ...), and:
#   SVG_TERM   an svg-term to use instead of the pinned one
#   CACHE_DIR  where the pinned svg-term-cli goes (default ~/.cache/fleetctl-demo)
#   KEEP_CAST  1 to keep OUTDIR/tour.cast and OUTDIR/tour.marks
#   REUSE      a directory holding a kept tour.cast and tour.marks: render
#              from them instead of recording anew
set -euo pipefail
# Paths given are the caller's; the script works from the repository root.
absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
out=$(absolute "${1:-$(dirname "$0")}")
reuse=${REUSE:+$(absolute "$REUSE")}
cd "$(dirname "$0")/.."

SVG_TERM_VERSION=2.1.1
export COLS=${COLS:-120} ROWS=${ROWS:-36} SEED=${SEED:-7} HOSTS=${HOSTS:-12}

for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "render.sh: needs $tool (apt-get install nodejs npm)" >&2; exit 2; }
done
svg_term=${SVG_TERM:-}
if [ -z "$svg_term" ]; then
    cache=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetctl-demo}/svg-term-cli-$SVG_TERM_VERSION
    svg_term=$cache/node_modules/.bin/svg-term
    if [ ! -x "$svg_term" ]; then
        echo "render.sh: installing svg-term-cli@$SVG_TERM_VERSION into $cache" >&2
        mkdir -p "$cache"
        npm install --prefix "$cache" --no-audit --no-fund --loglevel=error \
            "svg-term-cli@$SVG_TERM_VERSION" >&2
    fi
fi
[ -x "$svg_term" ] || command -v "$svg_term" >/dev/null || { echo "render.sh: no svg-term at $svg_term" >&2; exit 2; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cast=$work/tour.cast
marks=$work/tour.marks

if [ -n "$reuse" ]; then
    cp "$reuse/tour.cast" "$cast"
    cp "$reuse/tour.marks" "$marks"
else
    TOUR=1 MARKS=$marks demo/record.sh "$cast"
fi

at() {
    awk -v name="$1" '$1 == name { print $2; found = 1 } END { if (!found) exit 1 }' "$marks" ||
        { echo "render.sh: the recording has no '$1' moment" >&2; exit 1; }
}
# Drawn in a terminal of fixed colours (svg-term would otherwise take the
# colours of the terminal it runs in); not optimised, as svg-term's
# optimiser squeezes runs of spaces and shifts the selected row's columns.
svg() {
    local cast=$1 terminal=${TERMINAL:-dark}
    shift
    "$svg_term" --in "$cast" --width "$COLS" --height "$ROWS" --window --no-cursor --no-optimize \
        --term xresources --profile "$PWD/demo/terminal-$terminal.Xresources" "$@"
}
# One still, from the recording up to shortly after its moment.
still() {
    local name=$1 file=$2 ms
    ms=$(at "$name")
    node demo/trim-cast.mjs "$cast" "$work/$name.cast" --to $((ms + 2000)) --fps 0 --max-pause 0
    svg "$work/$name.cast" --at "$ms" --out "$out/$file.svg"
}

# The animation: the first look, on to ten seconds of live stats, its
# frames thinned and long waits shortened, so the file stays small.
node demo/trim-cast.mjs "$cast" "$work/first-look.cast" --to $(($(at live) + 10000))
svg "$work/first-look.cast" --out "$out/first-look.svg"
still stats fleet
still detail host-detail
still expired token-expired
for theme in default light high-contrast catppuccin-mocha; do
    if [ "$theme" = light ]; then
        TERMINAL=light still "theme-$theme" "theme-$theme"
    else
        still "theme-$theme" "theme-$theme"
    fi
done
if [ "${KEEP_CAST:-0}" = 1 ]; then
    cp "$cast" "$out/tour.cast"
    cp "$marks" "$out/tour.marks"
fi
for f in first-look fleet host-detail token-expired theme-default theme-light theme-high-contrast theme-catppuccin-mocha; do
    printf 'render.sh: wrote %s (%s KiB)\n' "$out/$f.svg" "$(($(stat -c %s "$out/$f.svg") / 1024))"
done
