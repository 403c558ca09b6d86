//! Which C library a build needs, read from its ELF file, and whether a
//! host's C library (as the inspect script reports it) runs it.
//!
//! A dynamically linked build names its loader in `PT_INTERP` (glibc's
//! `ld-linux-*.so.*`, musl's `ld-musl-*.so.1`), and a glibc build lists
//! the symbol versions it needs in `.gnu.version_r` (`GLIBC_2.34`, ...):
//! the newest one is the oldest glibc it starts on. A static build needs
//! nothing from the host.

use std::fmt;

use super::elf::{ElfError, ElfFile};

/// A glibc version, `2.17` or `2.3.4`, compared part by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GlibcVersion(pub [u16; 3]);

impl GlibcVersion {
    /// Parses `2.31` or `2.3.4`: two or three numbers of at most four
    /// digits each, nothing else.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = [0u16; 3];
        let mut count = 0;
        for part in s.split('.') {
            if count == 3
                || part.is_empty()
                || part.len() > 4
                || !part.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            parts[count] = part.parse().ok()?;
            count += 1;
        }
        (count >= 2).then_some(Self(parts))
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [major, minor, patch] = self.0;
        if patch == 0 {
            write!(f, "{major}.{minor}")
        } else {
            write!(f, "{major}.{minor}.{patch}")
        }
    }
}

/// What a build needs from the host's C library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibcNeed {
    /// Statically linked: no loader, no shared C library.
    Static,
    /// glibc at least this version (the newest `GLIBC_x.y` it references).
    Glibc(GlibcVersion),
    /// musl's loader.
    Musl,
    /// Some other loader, named.
    Other(String),
}

impl LibcNeed {
    /// Reads what the ELF file `bytes` needs.
    pub fn read(bytes: &[u8]) -> Result<Self, ElfError> {
        let elf = ElfFile::parse(bytes)?;
        let Some(interpreter) = elf.interpreter()? else {
            return Ok(Self::Static);
        };
        if interpreter.contains("ld-musl") {
            return Ok(Self::Musl);
        }
        if !interpreter.contains("ld-linux") && !interpreter.contains("ld64.so") {
            return Ok(Self::Other(interpreter));
        }
        let newest = elf
            .needed_versions()?
            .iter()
            .filter_map(|name| name.strip_prefix("GLIBC_"))
            .filter_map(GlibcVersion::parse)
            .max()
            .unwrap_or(GlibcVersion([2, 0, 0]));
        Ok(Self::Glibc(newest))
    }
}

impl fmt::Display for LibcNeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static => f.write_str("static (no C library needed)"),
            Self::Glibc(v) => write!(f, "glibc {v} or later"),
            Self::Musl => f.write_str("musl"),
            Self::Other(loader) => write!(f, "the loader {loader}"),
        }
    }
}

/// The C library a host runs, as the inspect script found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostLibc {
    Glibc(GlibcVersion),
    Musl,
    /// Neither `getconf GNU_LIBC_VERSION` nor `ldd --version` said.
    Unknown,
}

impl fmt::Display for HostLibc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Glibc(v) => write!(f, "glibc {v}"),
            Self::Musl => f.write_str("musl"),
            Self::Unknown => f.write_str("an unknown C library"),
        }
    }
}

/// What the inspect step concludes about a build on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Runs,
    /// The host did not say which C library it has: deploy tries, and the
    /// healthy step will tell.
    Unknown,
    /// It cannot start there; the reason names both sides and what to use.
    Refused(String),
}

/// Whether a build that needs `need` starts on a host with `host`.
/// `binary` names the build in the refusal.
#[must_use]
pub fn verdict(need: &LibcNeed, host: &HostLibc, binary: &str) -> Verdict {
    let refuse = |has: &str, instead: &str| {
        Verdict::Refused(format!(
            "the agent binary {binary} needs {need}, but the host has {has}; \
             deploy {instead} (the portable agent from .ci/build-agent needs glibc 2.17, \
             or a static build: pass it with --agent-binary)"
        ))
    };
    match (need, host) {
        (LibcNeed::Static, _) | (LibcNeed::Musl, HostLibc::Musl) => Verdict::Runs,
        (LibcNeed::Glibc(wanted), HostLibc::Glibc(has)) if wanted <= has => Verdict::Runs,
        (_, HostLibc::Unknown) => Verdict::Unknown,
        (LibcNeed::Glibc(_), HostLibc::Glibc(has)) => refuse(
            &format!("glibc {has}"),
            &format!("a build for glibc {has} or older"),
        ),
        (LibcNeed::Musl | LibcNeed::Other(_), HostLibc::Glibc(has)) => {
            refuse(&format!("glibc {has}"), "a glibc or static build")
        }
        (LibcNeed::Glibc(_) | LibcNeed::Other(_), HostLibc::Musl) => {
            refuse("musl", "a static or musl build")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> GlibcVersion {
        GlibcVersion::parse(s).unwrap()
    }

    #[test]
    fn versions_parse_strictly_and_compare_by_part() {
        assert_eq!(v("2.31"), GlibcVersion([2, 31, 0]));
        assert_eq!(v("2.3.4"), GlibcVersion([2, 3, 4]));
        assert!(v("2.3.4") < v("2.17"));
        assert!(v("2.17") < v("2.34"));
        assert!(v("2.9") < v("2.10"));
        assert_eq!(v("2.3.4").to_string(), "2.3.4");
        assert_eq!(v("2.17").to_string(), "2.17");
        for bad in [
            "", "2", "2.", ".2", "2.31.1.1", "2.31a", "2 .31", "+2.31", "2.99999", "2,31",
        ] {
            assert_eq!(GlibcVersion::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_build_runs_on_hosts_with_the_glibc_it_needs() {
        let new = LibcNeed::Glibc(v("2.34"));
        assert_eq!(
            verdict(&new, &HostLibc::Glibc(v("2.36")), "b"),
            Verdict::Runs
        );
        assert_eq!(
            verdict(&new, &HostLibc::Glibc(v("2.34")), "b"),
            Verdict::Runs
        );
        let Verdict::Refused(why) = verdict(&new, &HostLibc::Glibc(v("2.31")), "./fleetctl") else {
            panic!("glibc 2.31 runs a 2.34 build?");
        };
        assert!(
            why.starts_with(
                "the agent binary ./fleetctl needs glibc 2.34 or later, but the host has glibc 2.31"
            ),
            "{why}"
        );
        assert!(why.contains("a build for glibc 2.31 or older"), "{why}");
        assert!(
            why.contains(".ci/build-agent") && why.contains("--agent-binary"),
            "{why}"
        );
        let portable = LibcNeed::Glibc(v("2.17"));
        assert_eq!(
            verdict(&portable, &HostLibc::Glibc(v("2.17")), "b"),
            Verdict::Runs
        );
        assert!(matches!(
            verdict(&portable, &HostLibc::Glibc(v("2.12")), "b"),
            Verdict::Refused(_)
        ));
    }

    #[test]
    fn musl_hosts_take_static_and_musl_builds_only() {
        assert_eq!(
            verdict(&LibcNeed::Static, &HostLibc::Musl, "b"),
            Verdict::Runs
        );
        assert_eq!(
            verdict(&LibcNeed::Musl, &HostLibc::Musl, "b"),
            Verdict::Runs
        );
        let Verdict::Refused(why) = verdict(&LibcNeed::Glibc(v("2.17")), &HostLibc::Musl, "b")
        else {
            panic!("a glibc build on musl?");
        };
        assert!(
            why.contains("needs glibc 2.17 or later, but the host has musl"),
            "{why}"
        );
        assert!(matches!(
            verdict(&LibcNeed::Musl, &HostLibc::Glibc(v("2.36")), "b"),
            Verdict::Refused(_)
        ));
        assert_eq!(
            verdict(&LibcNeed::Glibc(v("2.34")), &HostLibc::Unknown, "b"),
            Verdict::Unknown
        );
        assert_eq!(
            verdict(&LibcNeed::Static, &HostLibc::Unknown, "b"),
            Verdict::Runs
        );
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(matches!(LibcNeed::read(&exe), Ok(LibcNeed::Glibc(_))));
        // Cut anywhere: the tables point past the end.
        for cut in [20, 63, 64, 200, 4096, exe.len() / 2, exe.len() - 1] {
            let _ = LibcNeed::read(&exe[..cut]);
        }
        // Every header field set to all ones, one at a time.
        for field in (0x10..0x40).step_by(2) {
            let mut bad = exe.clone();
            bad[field..field + 2].copy_from_slice(&[0xff, 0xff]);
            let _ = LibcNeed::read(&bad);
        }
        let mut no_sections = exe.clone();
        no_sections[0x3c..0x3e].copy_from_slice(&[0, 0]);
        assert!(LibcNeed::read(&no_sections).is_err());
    }

    #[test]
    fn the_running_test_binary_needs_this_machines_glibc_or_less() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let LibcNeed::Glibc(needed) = LibcNeed::read(&exe).unwrap() else {
            panic!("the test binary is linked against glibc");
        };
        let getconf = std::process::Command::new("getconf")
            .arg("GNU_LIBC_VERSION")
            .output()
            .unwrap();
        let has = String::from_utf8_lossy(&getconf.stdout);
        let has = v(has.trim().strip_prefix("glibc ").unwrap());
        assert!(needed <= has, "{needed} > {has}");
        assert!(needed >= v("2.2.5"), "{needed}");
    }
}
