//! Debian version ordering, as dpkg's `verrevcmp` and `dpkg_version_compare` define it.
//!
//! `[epoch:]upstream[-revision]`: the epoch compares numerically; upstream and revision
//! compare by alternating runs of non-digits (character by character, where `~` sorts before
//! everything, even the end of the string, and letters sort before other characters) and
//! runs of digits (numerically).

use std::cmp::Ordering;

/// A version split into its three parts. Borrowed from the string it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    /// The epoch, 0 when absent (or not a number, as dpkg would refuse it).
    pub epoch: u64,
    /// The upstream version.
    pub upstream: &'a str,
    /// The Debian revision, empty when absent.
    pub revision: &'a str,
}

/// Splits `[epoch:]upstream[-revision]`. The epoch ends at the first `:`, the revision
/// starts after the last `-`.
pub fn parse(version: &str) -> Parts<'_> {
    let version = version.trim();
    let (epoch, rest) = match version.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, version),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => (u, r),
        None => (rest, ""),
    };
    Parts {
        epoch,
        upstream,
        revision,
    }
}

/// Orders two Debian versions like `dpkg --compare-versions`.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (parse(a), parse(b));
    a.epoch
        .cmp(&b.epoch)
        .then_with(|| verrevcmp(a.upstream.as_bytes(), b.upstream.as_bytes()))
        .then_with(|| verrevcmp(a.revision.as_bytes(), b.revision.as_bytes()))
}

/// The weight of a character in a non-digit run: `~` < end of string < letters < others.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0usize, 0usize);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        // A run of non-digits.
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // A run of digits: skip leading zeros, then the longer run is larger, else the
        // first differing digit decides.
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn dpkg_examples() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0+b1", Less),
            ("1:1.2.11.dfsg-2+deb11u2", "1:1.2.13.dfsg-1", Less),
            ("1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1+deb12u1", Less),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
            ("1:0.9", "2.0", Greater),
            ("1.0-1", "1.0-1~bpo1", Greater),
            ("1.0a", "1.0-", Greater),
            ("1.001", "1.1", Equal),
            ("0", "00", Equal),
            ("1.2.3", "1.2.3-0", Equal),
            ("a", "", Greater),
            ("~", "", Less),
            ("~~", "~", Less),
            ("1.0.", "1.0", Greater),
            ("3.0.11-1~deb12u2", "3.0.11-1~deb12u1", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn parts() {
        let p = parse("1:2.3-4-5");
        assert_eq!((p.epoch, p.upstream, p.revision), (1, "2.3-4", "5"));
        let p = parse("2.3");
        assert_eq!((p.epoch, p.upstream, p.revision), (0, "2.3", ""));
    }
}
