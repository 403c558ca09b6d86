//! What a host reports about itself, parsed strictly before any of it
//! reaches a shell script, a path or a unit file. A host is not trusted
//! to say only what the inspect script prints: root on it can answer
//! anything. Whatever does not parse is refused, naming the host.

use std::fmt;

use super::libc::{GlibcVersion, HostLibc};

/// The checksum tool the host has, as deploy runs it to verify an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShaTool {
    Sha256sum,
    Busybox,
}

impl ShaTool {
    /// Parses the inspect script's `sha256=` answer (empty: no tool).
    pub fn parse(host: &str, reported: &str) -> Result<Option<Self>, String> {
        match reported {
            "" => Ok(None),
            "sha256sum" => Ok(Some(ShaTool::Sha256sum)),
            "busybox sha256sum" => Ok(Some(ShaTool::Busybox)),
            other => Err(refused(host, "checksum tool", other)),
        }
    }

    /// The command line that prints the sha256 of its stdin.
    #[must_use]
    pub fn command(self) -> &'static str {
        match self {
            ShaTool::Sha256sum => "sha256sum",
            ShaTool::Busybox => "busybox sha256sum",
        }
    }
}

impl fmt::Display for ShaTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.command())
    }
}

/// A build id as deploy writes it to the host's `current` file: 64
/// lowercase hex digits (a sha256).
pub fn build_id<'a>(host: &str, reported: &'a str) -> Result<&'a str, String> {
    if reported.len() == 64
        && reported
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(reported)
    } else {
        Err(format!(
            "{}; it is not a build deploy installed: undeploy the host (or remove that file) first",
            refused(host, "build in use", reported)
        ))
    }
}

/// A numeric user id.
pub fn uid<'a>(host: &str, reported: &'a str) -> Result<&'a str, String> {
    if !reported.is_empty() && reported.len() <= 10 && reported.bytes().all(|b| b.is_ascii_digit())
    {
        Ok(reported)
    } else {
        Err(refused(host, "user id", reported))
    }
}

/// A home directory fit for paths in scripts and unit files: absolute, no
/// `.` or `..` components, and only letters, digits and `/._-+@~,:` (no
/// whitespace, control characters, quotes, `$`, `%` or `\`).
pub fn home<'a>(host: &str, reported: &'a str) -> Result<&'a str, String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+@~,:".contains(c);
    let bad_part = reported
        .split('/')
        .skip(1)
        .any(|part| part == "." || part == "..");
    if reported.starts_with('/')
        && reported.len() <= 1024
        && reported.chars().all(plain)
        && !bad_part
    {
        Ok(reported)
    } else {
        Err(format!(
            "{}; deploy writes it into scripts and a unit file, so it must be an absolute path \
             of letters, digits and /._-+@~,: only (log in as another user, or use --scope system)",
            refused(host, "home directory", reported)
        ))
    }
}

/// The C library the inspect script found: `glibc X.Y[.Z]` (from
/// `getconf GNU_LIBC_VERSION`, or `ldd --version`), `musl`, or nothing
/// (neither tool said).
pub fn libc(host: &str, reported: &str) -> Result<HostLibc, String> {
    match reported {
        "" => Ok(HostLibc::Unknown),
        "musl" => Ok(HostLibc::Musl),
        other => other
            .strip_prefix("glibc ")
            .and_then(GlibcVersion::parse)
            .map(HostLibc::Glibc)
            .ok_or_else(|| refused(host, "C library", reported)),
    }
}

fn refused(host: &str, what: &str, reported: &str) -> String {
    format!(
        "{} reports its {what} as {:?}, which deploy refuses",
        crate::model::text::escape(host),
        crate::model::text::escape(reported)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_tools_the_script_looks_for() {
        assert_eq!(
            ShaTool::parse("h", "sha256sum"),
            Ok(Some(ShaTool::Sha256sum))
        );
        assert_eq!(
            ShaTool::parse("h", "busybox sha256sum"),
            Ok(Some(ShaTool::Busybox))
        );
        assert_eq!(ShaTool::parse("h", ""), Ok(None));
        let err = ShaTool::parse("web1", "sha256sum; touch /pwned").unwrap_err();
        assert!(err.starts_with("web1 reports its checksum tool"), "{err}");
    }

    #[test]
    fn build_ids_are_sha256_hex() {
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(build_id("h", sha), Ok(sha));
        for bad in [
            "",
            "../../etc/passwd",
            &sha.to_uppercase(),
            &format!("{sha}\n"),
            &sha[..63],
            "ba7816bf8f01cfea$(touch /pwned)dae2223b00361a396177a9cb410ff61f2",
        ] {
            let err = build_id("web1", bad).unwrap_err();
            assert!(err.contains("web1 reports its build in use"), "{err}");
            assert!(!err.contains('\n'), "escaped: {err}");
        }
    }

    #[test]
    fn homes_fit_a_path_a_script_and_a_unit() {
        for good in [
            "/root",
            "/home/ann",
            "/home/a.b-c_d+e@f",
            "/var/lib/svc~1",
            "/",
        ] {
            assert_eq!(home("h", good), Ok(good), "{good}");
        }
        for bad in [
            "",
            "relative/home",
            "/home/a b",
            "/home/a\tb",
            "/home/ann\nExecStartPre=/bin/sh -c id",
            "/home/$(id)",
            "/home/%h",
            "/home/a\\b",
            "/home/'q'",
            "/home/\"q\"",
            "/home/../etc",
            "/home/./x",
            "/home/\x1b[2J",
        ] {
            let err = home("web1", bad).unwrap_err();
            assert!(err.contains("web1 reports its home directory"), "{err}");
            assert!(!err.contains(['\n', '\x1b']), "escaped: {err:?}");
        }
        assert_eq!(uid("h", "1000"), Ok("1000"));
        for bad in ["", "-1", "0 ", "1e3", "99999999999"] {
            assert!(uid("h", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn c_libraries_are_a_glibc_version_or_musl() {
        assert_eq!(
            libc("h", "glibc 2.31"),
            Ok(HostLibc::Glibc(GlibcVersion([2, 31, 0])))
        );
        assert_eq!(
            libc("h", "glibc 2.3.4"),
            Ok(HostLibc::Glibc(GlibcVersion([2, 3, 4])))
        );
        assert_eq!(libc("h", "musl"), Ok(HostLibc::Musl));
        assert_eq!(libc("h", ""), Ok(HostLibc::Unknown));
        for bad in [
            "glibc",
            "glibc ",
            "glibc 2.31 ",
            "GLIBC 2.31",
            "glibc 2.31\nx",
            "glibc 2.31-13+deb11u5",
            "glibc 99999.1",
            "uclibc",
            "musl 1.2.3",
            "glibc 2.\x1b[2J",
        ] {
            let err = libc("web1", bad).unwrap_err();
            assert!(err.starts_with("web1 reports its C library as"), "{err}");
            assert!(!err.contains(['\n', '\x1b']), "escaped: {err:?}");
        }
    }
}
