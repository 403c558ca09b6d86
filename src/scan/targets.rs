//! Turning what the operator typed into the list of addresses to probe.
//!
//! Accepted forms, for targets and `--exclude` alike:
//! - `10.0.0.0/24`, `fd00::/120` — a network; for IPv4 shorter than /31 the
//!   network and broadcast addresses are left out, as fping and ipcalc do;
//! - `10.0.0.5-40` (last octet) or `10.0.0.5-10.0.1.9`, `::1-::9` — a range;
//! - `10.0.0.7`, `::1` — one address; `db1.example.com` — a host name;
//! - `@hosts.txt` — one target per line (blank lines and `#` comments skipped).
//!
//! Parsing is pure; only [`resolve_names`] touches the network, and it refuses
//! names under the reserved `.invalid` domain without asking DNS (RFC 6761).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// One thing the operator named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// An inclusive range of addresses of one family (a network, a range or one address).
    Span { first: IpAddr, last: IpAddr },
    /// A host name still to be resolved.
    Name(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("{input:?} is not a valid network: {reason}")]
    BadCidr { input: String, reason: String },
    #[error(
        "{input} has host bits set: did you mean {network} (the whole network) or {addr} (one host)?"
    )]
    HostBitsSet {
        input: String,
        network: String,
        addr: String,
    },
    #[error("{input:?} is not a valid range: {reason}")]
    BadRange { input: String, reason: String },
    #[error("{input:?} is not an address, network, range or host name")]
    Unrecognised { input: String },
    #[error("cannot resolve host name {name:?}: {reason}; check the spelling or use an address")]
    UnknownHost { name: String, reason: String },
    #[error("cannot read target file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("no targets to scan: {why}")]
    Empty { why: String },
    #[error(
        "the targets cover {count} addresses, more than --max-hosts {max}; pass --max-hosts {count} if you mean it"
    )]
    TooMany { count: u128, max: u64 },
    /// More addresses than any scan can hold (past 2^64, or past memory).
    #[error("the targets cover {count} addresses; no scan can hold that many: narrow them down")]
    Unscannable { count: String },
}

/// Parses one target as typed on the command line (`@file` included).
pub fn parse_target(input: &str) -> Result<Vec<TargetSpec>, TargetError> {
    let input = input.trim();
    if let Some(path) = input.strip_prefix('@') {
        return parse_file(path);
    }
    parse_one(input).map(|spec| vec![spec])
}

fn parse_file(path: &str) -> Result<Vec<TargetSpec>, TargetError> {
    let path = PathBuf::from(path);
    let text = std::fs::read_to_string(&path).map_err(|e| TargetError::File {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let mut specs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('@') {
            return Err(TargetError::File {
                path,
                reason: format!("line {}: target files cannot include other files", n + 1),
            });
        }
        // Several targets on one line are accepted, as nmap's -iL does.
        for word in line.split_whitespace() {
            specs.push(parse_one(word)?);
        }
    }
    Ok(specs)
}

fn parse_one(input: &str) -> Result<TargetSpec, TargetError> {
    if input.is_empty() {
        return Err(TargetError::Unrecognised {
            input: input.into(),
        });
    }
    if input.contains('/') {
        return parse_cidr(input);
    }
    if let Ok(addr) = input.parse::<IpAddr>() {
        return Ok(TargetSpec::Span {
            first: addr,
            last: addr,
        });
    }
    if let Some((left, right)) = input.split_once('-')
        && let Ok(first) = left.parse::<IpAddr>()
    {
        return parse_range(input, first, right);
    }
    if is_host_name(input) {
        return Ok(TargetSpec::Name(input.to_ascii_lowercase()));
    }
    Err(TargetError::Unrecognised {
        input: input.into(),
    })
}

fn parse_cidr(input: &str) -> Result<TargetSpec, TargetError> {
    let net: IpNet = input.parse().map_err(|_| {
        let (addr, prefix) = input.split_once('/').unwrap_or((input, ""));
        let reason = match (addr.parse::<IpAddr>(), prefix.parse::<u8>()) {
            (Err(_), _) => format!("{addr:?} is not an IP address"),
            (Ok(IpAddr::V4(_)), _) => format!("prefix {prefix:?} must be a number from 0 to 32"),
            (Ok(IpAddr::V6(_)), _) => format!("prefix {prefix:?} must be a number from 0 to 128"),
        };
        TargetError::BadCidr {
            input: input.into(),
            reason,
        }
    })?;
    if net.addr() != net.network() {
        return Err(TargetError::HostBitsSet {
            input: input.into(),
            network: format!("{}/{}", net.network(), net.prefix_len()),
            addr: net.addr().to_string(),
        });
    }
    let mut hosts = net.hosts();
    let first = hosts.next();
    let last = hosts.next_back().or(first);
    match (first, last) {
        (Some(first), Some(last)) => Ok(TargetSpec::Span { first, last }),
        _ => Err(TargetError::BadCidr {
            input: input.into(),
            reason: "the network holds no host addresses".into(),
        }),
    }
}

fn parse_range(input: &str, first: IpAddr, right: &str) -> Result<TargetSpec, TargetError> {
    let bad = |reason: String| TargetError::BadRange {
        input: input.into(),
        reason,
    };
    let last = match (first, right.parse::<IpAddr>()) {
        (IpAddr::V4(_), Ok(IpAddr::V4(last))) => IpAddr::V4(last),
        (IpAddr::V6(_), Ok(IpAddr::V6(last))) => IpAddr::V6(last),
        (_, Ok(_)) => return Err(bad("both ends must be of the same IP version".into())),
        (IpAddr::V4(first4), Err(_)) => {
            let octet: u8 = right.parse().map_err(|_| {
                bad(format!(
                    "{right:?} is neither an address nor a last octet (0-255)"
                ))
            })?;
            let [a, b, c, _] = first4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, octet))
        }
        (IpAddr::V6(_), Err(_)) => {
            return Err(bad(format!(
                "{right:?} is not an IPv6 address (IPv6 ranges name both ends in full)"
            )));
        }
    };
    if addr_to_u128(last) < addr_to_u128(first) {
        return Err(bad(format!("it ends ({last}) before it starts ({first})")));
    }
    Ok(TargetSpec::Span { first, last })
}

fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && !s.starts_with(['-', '.'])
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        // All-numeric dotted strings are malformed addresses, not names.
        && !s.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Resolves every [`TargetSpec::Name`] to its first address (IPv4 preferred).
pub async fn resolve_names(
    specs: Vec<TargetSpec>,
    timeout: Duration,
) -> Result<Vec<TargetSpec>, TargetError> {
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        match spec {
            TargetSpec::Name(name) => {
                let addr = resolve_name(&name, timeout).await?;
                out.push(TargetSpec::Span {
                    first: addr,
                    last: addr,
                });
            }
            span @ TargetSpec::Span { .. } => out.push(span),
        }
    }
    Ok(out)
}

async fn resolve_name(name: &str, timeout: Duration) -> Result<IpAddr, TargetError> {
    let unknown = |reason: &str| TargetError::UnknownHost {
        name: name.into(),
        reason: reason.into(),
    };
    if name == "invalid" || name.ends_with(".invalid") {
        return Err(unknown("the .invalid domain never resolves (RFC 6761)"));
    }
    let lookup = tokio::net::lookup_host((name, 0));
    let addrs: Vec<IpAddr> = match tokio::time::timeout(timeout, lookup).await {
        Err(_) => return Err(unknown("the lookup timed out")),
        Ok(Err(_)) => return Err(unknown("no such host")),
        Ok(Ok(found)) => found.map(|sa| sa.ip()).collect(),
    };
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| unknown("the name has no addresses"))
}

fn addr_to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// How many addresses `first..=last` holds; `None` for all 2^128 of IPv6
/// (one more than a u128 holds).
fn span_len(first: IpAddr, last: IpAddr) -> Option<u128> {
    addr_to_u128(last)
        .checked_sub(addr_to_u128(first))
        .and_then(|d| d.checked_add(1))
}

/// The number of addresses `spans` cover (overlaps counted twice), or
/// `None` past what a u128 holds.
fn total_len(spans: &[(IpAddr, IpAddr)]) -> Option<u128> {
    spans
        .iter()
        .try_fold(0u128, |sum, &(f, l)| sum.checked_add(span_len(f, l)?))
}

/// Expands resolved specs into addresses, in the order given, without
/// duplicates and without anything in `exclude`.
///
/// Refuses before allocating anything when the targets cover more than
/// `max_hosts` addresses.
pub fn expand(
    targets: &[TargetSpec],
    exclude: &[TargetSpec],
    max_hosts: u64,
) -> Result<Vec<IpAddr>, TargetError> {
    let spans = |specs: &[TargetSpec]| -> Vec<(IpAddr, IpAddr)> {
        specs
            .iter()
            .filter_map(|s| match *s {
                TargetSpec::Span { first, last } => Some((first, last)),
                TargetSpec::Name(_) => None,
            })
            .collect()
    };
    let target_spans = spans(targets);
    if target_spans.is_empty() {
        return Err(TargetError::Empty {
            why: "the target list is empty".into(),
        });
    }
    // Checked: `::/0 ::1` is 2^128 + 1 addresses, which wraps to 1.
    let Some(count) = total_len(&target_spans) else {
        return Err(TargetError::Unscannable {
            count: "more than 2^128".into(),
        });
    };
    if count > u128::from(max_hosts) {
        return Err(TargetError::TooMany {
            count,
            max: max_hosts,
        });
    }
    let excluded = spans(exclude);
    let is_excluded = |addr: IpAddr| {
        let n = addr_to_u128(addr);
        excluded.iter().any(|&(f, l)| {
            f.is_ipv4() == addr.is_ipv4() && addr_to_u128(f) <= n && n <= addr_to_u128(l)
        })
    };
    // Overlap is only possible with more than one span; skip the set otherwise.
    let mut seen = (target_spans.len() > 1).then(HashSet::new);
    // Whatever --max-hosts allows, memory is asked for once and up front:
    // a refusal now, not an allocator abort halfway through.
    let unscannable = || TargetError::Unscannable {
        count: count.to_string(),
    };
    let mut out = Vec::new();
    out.try_reserve_exact(usize::try_from(count).map_err(|_| unscannable())?)
        .map_err(|_| unscannable())?;
    for (first, last) in target_spans {
        let (lo, hi) = (addr_to_u128(first), addr_to_u128(last));
        for n in lo..=hi {
            let addr = if first.is_ipv4() {
                IpAddr::V4(Ipv4Addr::from(n as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(n))
            };
            if is_excluded(addr) {
                continue;
            }
            if let Some(seen) = seen.as_mut()
                && !seen.insert(addr)
            {
                continue;
            }
            out.push(addr);
        }
    }
    if out.is_empty() {
        return Err(TargetError::Empty {
            why: "--exclude removed every target".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(a: &str, b: &str) -> TargetSpec {
        TargetSpec::Span {
            first: a.parse().unwrap(),
            last: b.parse().unwrap(),
        }
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            parse_target("10.0.0.0/24").unwrap(),
            vec![span("10.0.0.1", "10.0.0.254")]
        );
        assert_eq!(
            parse_target("10.0.0.4/31").unwrap(),
            vec![span("10.0.0.4", "10.0.0.5")]
        );
        assert_eq!(
            parse_target("fd00::/126").unwrap(),
            vec![span("fd00::", "fd00::3")]
        );
        assert_eq!(
            parse_target("10.0.0.5-40").unwrap(),
            vec![span("10.0.0.5", "10.0.0.40")]
        );
        assert_eq!(
            parse_target("10.0.0.250-10.0.1.3").unwrap(),
            vec![span("10.0.0.250", "10.0.1.3")]
        );
        assert_eq!(parse_target("::1-::3").unwrap(), vec![span("::1", "::3")]);
        assert_eq!(parse_target("::1").unwrap(), vec![span("::1", "::1")]);
        assert_eq!(
            parse_target("Web-1.Example.com").unwrap(),
            vec![TargetSpec::Name("web-1.example.com".into())]
        );
    }

    #[test]
    fn reads_target_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.txt");
        std::fs::write(&path, "# fleet\n127.0.0.1\n\n127.0.0.2-3 localhost # two\n").unwrap();
        let specs = parse_target(&format!("@{}", path.display())).unwrap();
        assert_eq!(
            specs,
            vec![
                span("127.0.0.1", "127.0.0.1"),
                span("127.0.0.2", "127.0.0.3"),
                TargetSpec::Name("localhost".into())
            ]
        );
        let missing = parse_target("@/nonexistent/targets").unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/targets"),
            "{missing}"
        );
    }

    #[test]
    fn host_bits_set_says_what_was_meant() {
        let err = parse_target("10.0.0.5/24").unwrap_err();
        assert_eq!(
            err.to_string(),
            "10.0.0.5/24 has host bits set: did you mean 10.0.0.0/24 (the whole network) or 10.0.0.5 (one host)?"
        );
    }

    #[test]
    fn malformed_inputs_are_named() {
        for (input, needle) in [
            ("10.0.0.0/33", "from 0 to 32"),
            ("10.0.0.300/24", "not an IP address"),
            ("fd00::/129", "from 0 to 128"),
            ("10.0.0.9-3", "ends (10.0.0.3) before it starts"),
            ("10.0.0.1-300", "last octet"),
            ("10.0.0.1-::5", "same IP version"),
            ("10.0.0.256", "not an address"),
            ("bad name!", "not an address"),
        ] {
            let err = parse_target(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn expands_in_order_without_duplicates_or_excluded() {
        let targets = [
            span("127.0.0.1", "127.0.0.4"),
            span("127.0.0.3", "127.0.0.6"),
        ];
        let exclude = [span("127.0.0.2", "127.0.0.2"), span("::1", "::1")];
        let addrs: Vec<String> = expand(&targets, &exclude, 100)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            addrs,
            [
                "127.0.0.1",
                "127.0.0.3",
                "127.0.0.4",
                "127.0.0.5",
                "127.0.0.6"
            ]
        );
    }

    #[test]
    fn refuses_too_many_and_empty() {
        let slash8 = parse_target("10.0.0.0/8").unwrap();
        assert_eq!(
            expand(&slash8, &[], 65_536).unwrap_err(),
            TargetError::TooMany {
                count: 16_777_214,
                max: 65_536
            }
        );
        let one = [span("127.0.0.1", "127.0.0.1")];
        assert!(matches!(
            expand(&one, &one, 10).unwrap_err(),
            TargetError::Empty { .. }
        ));
        assert!(matches!(
            expand(&[], &[], 10).unwrap_err(),
            TargetError::Empty { .. }
        ));
    }

    #[test]
    fn counts_never_overflow_whatever_the_targets() {
        let everything = parse_target("::/0").unwrap();
        let one = parse_target("::1").unwrap();
        let both = [everything.clone(), one].concat();
        for max in [65_536, u64::MAX] {
            assert_eq!(
                expand(&both, &[], max).unwrap_err(),
                TargetError::Unscannable {
                    count: "more than 2^128".into()
                }
            );
        }
        let err = expand(&everything, &[], u64::MAX).unwrap_err();
        assert!(
            matches!(err, TargetError::Unscannable { .. }),
            "2^128: {err}"
        );
        let err = expand(&parse_target("::/1").unwrap(), &[], u64::MAX).unwrap_err();
        assert!(
            matches!(err, TargetError::TooMany { max: u64::MAX, .. }),
            "{err}"
        );
        // Within --max-hosts but beyond any memory: refused, not a crash.
        let half = parse_target("::/65").unwrap();
        let err = expand(&half, &[], u64::MAX).unwrap_err();
        assert!(matches!(err, TargetError::Unscannable { .. }), "{err}");
        assert!(err.to_string().contains("narrow them down"), "{err}");
    }

    #[tokio::test]
    async fn invalid_domain_is_refused_without_a_lookup() {
        let specs = vec![TargetSpec::Name("nosuchhost.invalid".into())];
        let err = resolve_names(specs, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nosuchhost.invalid"), "{err}");
    }
}
