// Prepares an asciicast v2 recording for svg-term: keeps what comes before
// --to (ms); merges output into at most --fps frames a second (the screen
// at the end of each slice is what a reader sees anyway; 0 keeps every
// event); shortens any pause longer than --max-pause seconds to that (0
// keeps pauses). Each frame svg-term draws is text in the file, so fewer
// frames, smaller file.
//
// Two fixes for svg-term on the way: an escape sequence split across two
// events is joined again, so no frame starts inside one; and spaces on a
// coloured background (the selected row) become no-break spaces, as
// svg-term joins such a run into one text element whose spaces SVG
// renderers and svg-term's optimiser squeeze, shifting the row's columns.
// And ⏎ (the footer's Enter) becomes ↵: svg-term drops a lone ⏎.
//
//   node demo/trim-cast.mjs IN.cast OUT.cast [--to MS] [--fps N] [--max-pause S]
//
// Node.js only, no packages.
import { readFileSync, writeFileSync } from "node:fs";

const [input, output, ...rest] = process.argv.slice(2);
if (!input || !output) {
    console.error("usage: trim-cast.mjs IN.cast OUT.cast [--to MS] [--fps N] [--max-pause S]");
    process.exit(2);
}
const options = { to: Infinity, fps: 2, "max-pause": 2 };
for (let i = 0; i < rest.length; i += 2) {
    const name = rest[i].replace(/^--/, "");
    const value = Number(rest[i + 1]);
    if (!(name in options) || !Number.isFinite(value) || value < 0) {
        console.error(`trim-cast.mjs: bad option ${rest[i]} ${rest[i + 1]}`);
        process.exit(2);
    }
    options[name] = value;
}

const [headerLine, ...lines] = readFileSync(input, "utf8").split("\n").filter(Boolean);
const header = JSON.parse(headerLine);
if (header.version !== 2) {
    console.error(`trim-cast.mjs: ${input} is asciicast version ${header.version}, not 2`);
    process.exit(1);
}

// Whether the text being written has a background colour (or is reversed).
let background = false;
let reversed = false;
function sgr(params) {
    const p = params === "" ? [0] : params.split(";").map(Number);
    for (let i = 0; i < p.length; i++) {
        const n = p[i];
        if (n === 0) [background, reversed] = [false, false];
        else if (n === 7) reversed = true;
        else if (n === 27) reversed = false;
        else if (n === 49) background = false;
        else if ((n >= 40 && n <= 47) || (n >= 100 && n <= 107)) background = true;
        else if (n === 38 || n === 48 || n === 58) {
            // 38;5;N or 38;2;R;G;B: skip the colour's own numbers.
            if (n === 48) background = true;
            i += p[i + 1] === 5 ? 2 : p[i + 1] === 2 ? 4 : 0;
        }
    }
}
const SEQUENCE = /\x1b\[([0-9;?]*)([ -/]*[@-~])|\x1b[^[]/g;
function rewrite(data) {
    const text = (t) => (background || reversed ? t.replaceAll(" ", "\u00a0") : t);
    let out = "";
    let last = 0;
    for (const m of data.matchAll(SEQUENCE)) {
        out += text(data.slice(last, m.index)) + m[0];
        if (m[2] === "m") sgr(m[1]);
        last = m.index + m[0].length;
    }
    return (out + text(data.slice(last))).replaceAll("⏎", "↵");
}

const end = options.to / 1000;
const slice = options.fps > 0 ? 1 / options.fps : 0;
const frames = [];
let carry = "";
for (const line of lines) {
    const [time, kind, raw] = JSON.parse(line);
    if (time > end) break;
    if (kind !== "o") continue;
    let data = carry + raw;
    carry = "";
    const cut = data.match(/\x1b(\[[0-9;?]*[ -/]*)?$/);
    if (cut) {
        carry = cut[0];
        data = data.slice(0, -cut[0].length);
    }
    data = rewrite(data);
    const previous = frames.at(-1);
    if (slice > 0 && previous && Math.floor(previous.time / slice) === Math.floor(time / slice)) {
        previous.data += data;
        previous.time = time;
    } else {
        frames.push({ time, data });
    }
}
let shift = 0;
let previous = 0;
const out = [JSON.stringify({ ...header, idle_time_limit: undefined })];
for (const frame of frames) {
    const gap = frame.time - previous;
    if (options["max-pause"] > 0 && gap > options["max-pause"]) {
        shift += gap - options["max-pause"];
    }
    previous = frame.time;
    out.push(JSON.stringify([Number((frame.time - shift).toFixed(3)), "o", frame.data]));
}
// Hold the last screen a moment before the animation starts over.
out.push(JSON.stringify([Number((previous - shift + 4).toFixed(3)), "o", ""]));
writeFileSync(output, out.join("\n") + "\n");
console.error(
    `trim-cast.mjs: ${lines.length} events -> ${frames.length} frames, ` +
        `${(previous - shift).toFixed(1)} s (${shift.toFixed(1)} s of pauses cut)`,
);
