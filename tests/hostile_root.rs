//! A hostile host answers a scan: a TCP server in a network namespace of
//! the test's own greets with an SSH banner that would retitle the
//! operator's terminal (`ESC ] 0 ; PWNED BEL`) and clear it (`ESC [ 2 J`).
//! No output format lets a raw control character through; the inventory
//! keeps the banner as it was received.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::net::TcpListener;
use std::time::Duration;

use common::{Env, Netns, require_root, stderr, stdout};

const BANNER: &[u8] = b"SSH-2.0-x\x1b]0;PWNED\x07\x1b[2J\xc2\x9b31m\r\n";

/// Serves `BANNER` on port 22 of `ns`'s loopback to every connection,
/// from a thread that entered the namespace (the rest of the test stays
/// outside it).
fn hostile_banner_server(ns: &Netns) {
    let handle = std::fs::File::open(format!("/run/netns/{}", ns.name)).unwrap();
    let (ready, bound) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        nix::sched::setns(&handle, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind("127.0.0.1:22").unwrap();
        ready.send(()).unwrap();
        // Bounded: a few scans, a few connections each.
        for stream in listener.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.write_all(BANNER);
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = std::io::Read::read(&mut stream, &mut [0u8; 64]);
        }
    });
    bound.recv_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
#[ignore = "needs root: a network namespace of the test's own and port 22 in it"]
fn a_hostile_banner_reaches_no_output_format_raw() {
    require_root();
    let ns = Netns::new("banner");
    hostile_banner_server(&ns);
    let env = Env::new();
    let mut seen_banner = false;
    for format in ["table", "csv", "json", "jsonl"] {
        let mut cmd = env.cmd();
        cmd.args([
            "scan",
            "-m",
            "tcp",
            "--ports",
            "22",
            "-o",
            format,
            "127.0.0.1",
        ]);
        let out = ns.wrap(&cmd).output().unwrap();
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !bytes.iter().any(|b| [0x1b, 0x07].contains(b)),
                "-o {format} {stream} holds a raw ESC or BEL: {:?}",
                String::from_utf8_lossy(bytes)
            );
            assert!(
                !String::from_utf8_lossy(bytes).contains('\u{9b}'),
                "-o {format} {stream} holds a raw CSI"
            );
        }
        let text = stdout(&out);
        assert!(
            text.contains("PWNED"),
            "-o {format} shows the banner: {text}"
        );
        seen_banner |= text.contains(r"SSH-2.0-x\x1b]0;PWNED\x07");
    }
    assert!(seen_banner, "the table and CSV show the escapes visibly");
    let hosts = env.inventory().hosts().unwrap();
    assert_eq!(
        hosts[0].scan.ssh_banner.as_deref(),
        Some("SSH-2.0-x\x1b]0;PWNED\x07\x1b[2J\u{9b}31m"),
        "stored as received"
    );
}
