//! Learning what a host is: one shell script, run over SSH, and its parser.
//!
//! Everything is asked in one script so that fingerprinting costs one exec
//! request, one round trip, however many facts there are. It is POSIX `sh`
//! using only coreutils/busybox and /proc, because the hosts are not known
//! yet and may be minimal (busybox, no systemd, no Python). It answers in
//! `key=value` lines: trivial to produce in `sh`, trivial to parse, and a
//! new fact is one more probe and one more match arm. Unknown keys are
//! ignored, so a newer script never breaks an older parser.

pub mod job;

use crate::model::HostFacts;

/// The fingerprint script; run it with `sh -c` (see `script.sh`).
pub const SCRIPT: &str = include_str!("script.sh");

/// Reads the script's output into facts.
///
/// Lenient by design, because login shells can print their own lines
/// (a `.bashrc` that echoes, a warning on stderr merged into stdout):
/// lines without `=` and unknown keys are skipped; a number or boolean that
/// does not parse, or an empty value, leaves the fact absent. When a key
/// repeats, the first value wins, except `address`, which accumulates.
#[must_use]
pub fn parse(output: &str) -> HostFacts {
    let mut facts = HostFacts::default();
    for line in output.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        // trim() also drops the `\r` of output that went through a pty.
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let text = || Some(value.to_owned());
        let f = &mut facts;
        match key {
            "hostname" => set(&mut f.hostname, text()),
            "fqdn" => set(&mut f.fqdn, text()),
            "os_id" => set(&mut f.os_id, text()),
            "os_name" => set(&mut f.os_name, text()),
            "os_version" => set(&mut f.os_version, text()),
            "os_pretty" => set(&mut f.os_pretty, text()),
            "kernel" => set(&mut f.kernel, text()),
            "arch" => set(&mut f.arch, text()),
            "cpu_model" => set(&mut f.cpu_model, text()),
            "cpu_count" => set(&mut f.cpu_count, value.parse().ok()),
            "mem_total_bytes" => set(&mut f.mem_total_bytes, value.parse().ok()),
            "swap_total_bytes" => set(&mut f.swap_total_bytes, value.parse().ok()),
            "root_fs_size_bytes" => set(&mut f.root_fs_size_bytes, value.parse().ok()),
            "root_fs_used_bytes" => set(&mut f.root_fs_used_bytes, value.parse().ok()),
            "uptime_secs" => set(&mut f.uptime_secs, value.parse().ok()),
            "boot_id" => set(&mut f.boot_id, text()),
            "machine_id" => set(&mut f.machine_id, text()),
            "virtualization" => set(&mut f.virtualization, text()),
            "init_system" => set(&mut f.init_system, text()),
            "user" => set(&mut f.user, text()),
            "is_root" => set(&mut f.is_root, boolean(value)),
            "sudo_nopasswd" => set(&mut f.sudo_nopasswd, boolean(value)),
            // A host with the same address on two interfaces has it once.
            "address" if !f.addresses.iter().any(|a| a == value) => {
                f.addresses.push(value.to_owned());
            }
            _ => {}
        }
    }
    facts
}

/// Fills `slot` unless an earlier line already did.
fn set<T>(slot: &mut Option<T>, value: Option<T>) {
    if slot.is_none() {
        *slot = value;
    }
}

fn boolean(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output captured from a Debian 12 VM, as the script prints it.
    const DEBIAN_VM: &str = "\
hostname=db1
fqdn=db1.example.com
os_id=debian
os_name=Debian GNU/Linux
os_version=12
os_pretty=Debian GNU/Linux 12 (bookworm)
kernel=Linux 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)
arch=x86_64
cpu_model=Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz
cpu_count=4
mem_total_bytes=8331321344
swap_total_bytes=1023406080
root_fs_size_bytes=41555521536
root_fs_used_bytes=6790623232
uptime_secs=1843212
boot_id=3686bdac-be72-4428-a40c-4a97e119391b
machine_id=3d1219c7c4c5404aaa1f6d2a48adfda4
virtualization=kvm
init_system=systemd
user=ops
is_root=false
sudo_nopasswd=true
address=10.0.0.5
address=fd00::5
";

    #[test]
    fn reads_every_fact_of_a_captured_sample() {
        let facts = parse(DEBIAN_VM);
        assert_eq!(
            facts,
            HostFacts {
                hostname: Some("db1".into()),
                fqdn: Some("db1.example.com".into()),
                os_id: Some("debian".into()),
                os_name: Some("Debian GNU/Linux".into()),
                os_version: Some("12".into()),
                os_pretty: Some("Debian GNU/Linux 12 (bookworm)".into()),
                kernel: Some(
                    "Linux 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"
                        .into()
                ),
                arch: Some("x86_64".into()),
                cpu_model: Some("Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz".into()),
                cpu_count: Some(4),
                mem_total_bytes: Some(8_331_321_344),
                swap_total_bytes: Some(1_023_406_080),
                root_fs_size_bytes: Some(41_555_521_536),
                root_fs_used_bytes: Some(6_790_623_232),
                uptime_secs: Some(1_843_212),
                boot_id: Some("3686bdac-be72-4428-a40c-4a97e119391b".into()),
                machine_id: Some("3d1219c7c4c5404aaa1f6d2a48adfda4".into()),
                virtualization: Some("kvm".into()),
                init_system: Some("systemd".into()),
                user: Some("ops".into()),
                is_root: Some(false),
                sudo_nopasswd: Some(true),
                addresses: vec!["10.0.0.5".into(), "fd00::5".into()],
            }
        );
    }

    #[test]
    fn skips_garbage_lines_and_unknown_keys() {
        let output = "\
Welcome to db1!
stty: 'standard input': Inappropriate ioctl for device
=orphan value
hostname=db1
gpu_model=none yet
  arch=x86_64
ARCH=x86_64
os_id=alpine
";
        let facts = parse(output);
        assert_eq!(
            facts,
            HostFacts {
                hostname: Some("db1".into()),
                os_id: Some("alpine".into()),
                ..HostFacts::default()
            }
        );
    }

    #[test]
    fn bad_numbers_and_booleans_are_absent_not_zero() {
        let facts = parse(
            "cpu_count=four\nmem_total_bytes=-1\nuptime_secs=12.5\nswap_total_bytes=99999999999999999999999\n\
             root_fs_size_bytes=1e9\nis_root=yes\nsudo_nopasswd=TRUE\n",
        );
        assert_eq!(facts, HostFacts::default());
    }

    #[test]
    fn empty_values_are_absent() {
        let facts = parse("hostname=\nfqdn=  \ncpu_count=\naddress=\nis_root=\n");
        assert_eq!(facts, HostFacts::default());
    }

    #[test]
    fn values_keep_their_equals_signs_and_lose_carriage_returns() {
        let facts = parse("os_pretty=a=b\r\nhostname=db1\r\ncpu_count=8\r\n");
        assert_eq!(facts.os_pretty.as_deref(), Some("a=b"));
        assert_eq!(facts.hostname.as_deref(), Some("db1"));
        assert_eq!(facts.cpu_count, Some(8));
    }

    #[test]
    fn addresses_accumulate_once_each_and_other_keys_keep_the_first() {
        let facts = parse(
            "address=10.0.0.5\nhostname=first\naddress=fd00::5\naddress=10.0.0.5\nhostname=second\n",
        );
        assert_eq!(facts.addresses, ["10.0.0.5", "fd00::5"]);
        assert_eq!(facts.hostname.as_deref(), Some("first"));
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert_eq!(parse(""), HostFacts::default());
    }

    #[test]
    fn the_script_is_posix_sh_and_always_exits_zero() {
        // Cheap guards against edits that would break minimal hosts; the
        // integration tests run it for real under dash and busybox.
        assert!(SCRIPT.starts_with("#!/bin/sh\n"));
        assert!(SCRIPT.trim_end().ends_with("exit 0"));
        for bashism in ["[[ ", "function ", "$'", "local ", "<<<", "pipefail"] {
            assert!(!SCRIPT.contains(bashism), "script uses {bashism:?}");
        }
    }
}
