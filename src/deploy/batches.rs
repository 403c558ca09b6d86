//! `--batch N|N%|LIST` and `--max-failures N|N%`: how many hosts go at a
//! time, as Ansible's `serial` says it (`1,2,50%`: one host, then two, then
//! half the hosts per batch until none is left), and how many may fail.

use std::fmt;

/// A number of hosts, or a share of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(usize),
    /// 1..=100.
    Percent(u8),
}

impl Amount {
    /// Parses `5` or `25%`; `what` names the flag in errors.
    pub fn parse(text: &str, what: &str, zero_ok: bool) -> Result<Self, String> {
        let text = text.trim();
        if let Some(pct) = text.strip_suffix('%') {
            return match pct.trim().parse::<u8>() {
                Ok(p) if (1..=100).contains(&p) => Ok(Amount::Percent(p)),
                _ => Err(format!("{what} {text:?}: a share is 1% to 100%")),
            };
        }
        match text.parse::<usize>() {
            Ok(0) if !zero_ok => Err(format!("{what} {text:?}: at least 1 host")),
            Ok(n) => Ok(Amount::Count(n)),
            Err(_) => Err(format!(
                "{what} {text:?}: a number of hosts (5) or a share of them (25%)"
            )),
        }
    }

    /// How many hosts of `total` this is: a share rounds down, but is at
    /// least one host, as Ansible's serial rounds.
    #[must_use]
    pub fn of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => (total * usize::from(p) / 100).max(1),
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// `--batch`: batch sizes in order; the last repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpec(Vec<Amount>);

impl BatchSpec {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("--batch: give sizes, e.g. 1,2,50%".into());
        }
        text.split(',')
            .map(|part| Amount::parse(part, "--batch", false))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// The sizes of the batches `total` hosts go in, summing to `total`.
    #[must_use]
    pub fn sizes(&self, total: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut left = total;
        let mut i = 0;
        while left > 0 {
            let amount = self.0[i.min(self.0.len() - 1)];
            let size = amount.of(total).clamp(1, left);
            sizes.push(size);
            left -= size;
            i += 1;
        }
        sizes
    }
}

impl fmt::Display for BatchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_ansible_serial() {
        let spec = |s: &str| BatchSpec::parse(s).unwrap();
        assert_eq!(spec("1,2,50%").sizes(6), [1, 2, 3]);
        assert_eq!(spec("1,2,50%").sizes(10), [1, 2, 5, 2]);
        assert_eq!(spec("2").sizes(5), [2, 2, 1]);
        assert_eq!(spec("30%").sizes(10), [3, 3, 3, 1]);
        assert_eq!(spec("10%").sizes(3), [1, 1, 1], "at least one host");
        assert_eq!(spec("100").sizes(3), [3]);
        assert_eq!(spec("1,5,25%").sizes(0), Vec::<usize>::new());
        assert_eq!(spec(" 1, 50% ").to_string(), "1,50%");
    }

    #[test]
    fn bad_specs_say_why() {
        for (text, needle) in [
            ("", "give sizes"),
            ("0", "at least 1 host"),
            ("1,,2", "a number of hosts"),
            ("0%", "1% to 100%"),
            ("150%", "1% to 100%"),
            ("two", "a number of hosts"),
            ("-1", "a number of hosts"),
        ] {
            let err = BatchSpec::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        assert_eq!(
            Amount::parse("0", "--max-failures", true),
            Ok(Amount::Count(0))
        );
        assert_eq!(
            Amount::parse("20%", "--max-failures", true).unwrap().of(6),
            1
        );
    }
}
