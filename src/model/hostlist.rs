//! Host lists folded as ClusterShell (`clush -b`) and `dshbak -c` fold
//! them: names that differ only in one number share a prefix and suffix
//! and list their numbers as ranges, `web[01-05,09]`, `10.0.0.[1-9,12]`.
//!
//! The number folded is a name's last run of digits, so addresses fold on
//! their last octet. Zero-padded numbers keep their width: `web09` and
//! `web10` fold to `web[09-10]`, while `web9` and `web09` are different
//! hosts and stay apart. A lone name is printed as itself, without brackets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A name cut around its last run of digits.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cut<'a> {
    prefix: &'a str,
    digits: &'a str,
    suffix: &'a str,
}

fn cut(name: &str) -> Option<Cut<'_>> {
    let bytes = name.as_bytes();
    let end = bytes.iter().rposition(u8::is_ascii_digit)? + 1;
    let start = bytes[..end]
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |i| i + 1);
    // Past u64 a name is not a number worth folding.
    if end - start > 18 {
        return None;
    }
    Some(Cut {
        prefix: &name[..start],
        digits: &name[start..end],
        suffix: &name[end..],
    })
}

/// The width a number keeps: its length when written with a leading zero,
/// else none (0).
fn pad(digits: &str) -> usize {
    if digits.len() > 1 && digits.starts_with('0') {
        digits.len()
    } else {
        0
    }
}

/// `names` folded into one list, comma-separated; each name once, in
/// order of prefix, then number.
#[must_use]
pub fn fold<S: AsRef<str>>(names: &[S]) -> String {
    // (prefix, suffix) → width → numbers; names without digits alone.
    let mut groups: BTreeMap<(&str, &str), BTreeMap<usize, Vec<u64>>> = BTreeMap::new();
    let mut plain: Vec<&str> = Vec::new();
    for name in names {
        let name = name.as_ref();
        match cut(name) {
            Some(c) => {
                let n = c.digits.parse().unwrap_or(0);
                groups
                    .entry((c.prefix, c.suffix))
                    .or_default()
                    .entry(pad(c.digits))
                    .or_default()
                    .push(n);
            }
            None => plain.push(name),
        }
    }
    let mut parts: Vec<(String, u64, String)> = Vec::new();
    for ((prefix, suffix), mut widths) in groups {
        // An unpadded number as wide as a padded set belongs to it: 10 joins 09.
        if let Some(unpadded) = widths.remove(&0) {
            for n in unpadded {
                let width = n.to_string().len();
                match widths.get_mut(&width) {
                    Some(set) if width > 1 => set.push(n),
                    _ => widths.entry(0).or_default().push(n),
                }
            }
        }
        for (width, mut numbers) in widths {
            numbers.sort_unstable();
            numbers.dedup();
            let first = numbers[0];
            let text = if numbers.len() == 1 {
                format!("{prefix}{first:0width$}{suffix}")
            } else {
                format!("{prefix}[{}]{suffix}", ranges(&numbers, width))
            };
            parts.push((prefix.to_string(), first, text));
        }
    }
    plain.sort_unstable();
    plain.dedup();
    parts.extend(plain.into_iter().map(|p| (p.to_string(), 0, p.to_string())));
    parts.sort();
    parts
        .into_iter()
        .map(|(_, _, text)| text)
        .collect::<Vec<_>>()
        .join(",")
}

/// Sorted, distinct numbers as `a-b` runs and singles: `1-3,5`.
fn ranges(numbers: &[u64], width: usize) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        let _ = if start == end {
            write!(out, "{start:0width$}")
        } else {
            write!(out, "{start:0width$}-{end:0width$}")
        };
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names a folded list stands for (what clush's NodeSet expands).
    fn expand(folded: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = folded;
        while !rest.is_empty() {
            // A comma inside brackets is not a separator.
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '[' => depth += 1,
                        ']' => depth -= 1,
                        _ => {}
                    }
                    c == ',' && depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let item = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or("");
            let Some((prefix, tail)) = item.split_once('[') else {
                out.push(item.to_string());
                continue;
            };
            let (body, suffix) = tail.split_once(']').unwrap();
            for range in body.split(',') {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                let width = if a.starts_with('0') { a.len() } else { 0 };
                for n in a.parse::<u64>().unwrap()..=b.parse::<u64>().unwrap() {
                    out.push(format!("{prefix}{n:0width$}{suffix}"));
                }
            }
        }
        out
    }

    #[test]
    fn folds_as_clush_does() {
        let web = ["web01", "web02", "web03", "web04", "web05", "web09"];
        assert_eq!(fold(&web), "web[01-05,09]");
        let ips: Vec<String> = (1..=9).chain([12]).map(|n| format!("10.0.0.{n}")).collect();
        assert_eq!(fold(&ips), "10.0.0.[1-9,12]");
        assert_eq!(fold(&["web03"]), "web03");
        assert_eq!(fold(&["db", "web1", "web2"]), "db,web[1-2]");
        assert_eq!(fold::<&str>(&[]), "");
    }

    #[test]
    fn order_and_duplicates_do_not_matter() {
        assert_eq!(fold(&["n3", "n1", "n2", "n1"]), "n[1-3]");
        assert_eq!(
            fold(&["10.0.1.5", "10.0.0.2", "10.0.0.1"]),
            "10.0.0.[1-2],10.0.1.5"
        );
    }

    #[test]
    fn padding_is_kept_and_unpadded_names_of_its_width_join_it() {
        assert_eq!(fold(&["web09", "web10", "web11"]), "web[09-11]");
        assert_eq!(fold(&["web9", "web10"]), "web[9-10]");
        // web9 and web09 are two hosts: both stay, apart.
        let both = fold(&["web9", "web09"]);
        assert_eq!(expand(&both).len(), 2, "{both}");
        assert!(both.contains("web09") && both.contains("web9"), "{both}");
    }

    #[test]
    fn the_last_number_folds_and_suffixes_stay() {
        assert_eq!(
            fold(&["rack1-node1.dc", "rack1-node2.dc", "rack2-node1.dc"]),
            "rack1-node[1-2].dc,rack2-node1.dc"
        );
        assert_eq!(fold(&["a1b", "a2b", "a1c"]), "a1c,a[1-2]b");
    }

    #[test]
    fn folding_loses_no_host_and_adds_none() {
        let names: Vec<String> = [1, 2, 3, 7, 8, 20, 100]
            .iter()
            .map(|n| format!("h{n:03}"))
            .chain(["gw".to_string(), "10.1.2.3".to_string(), "x5y".to_string()])
            .collect();
        let folded = fold(&names);
        let mut back = expand(&folded);
        let mut want = names.clone();
        back.sort();
        want.sort();
        assert_eq!(back, want, "{folded}");
        assert_eq!(folded, "10.1.2.3,gw,h[001-003,007-008,020,100],x5y");
    }
}
