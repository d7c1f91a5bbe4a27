//! Alpine (apk) version ordering, as apk-tools' `version.c` defines it.
//!
//! A version is a token stream: numbers separated by `.` (a component with leading zeros
//! compares as a fraction, so `1.02 < 1.1`), an optional single lowercase letter, `_suffix[N]`
//! where `alpha`, `beta`, `pre`, `rc` (and `b`) sort before the release and `cvs`, `svn`,
//! `git`, `hg`, `p` after it, and a `-rN` package revision.

use std::cmp::Ordering;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Token {
    Invalid = -1,
    DigitOrZero = 0,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    RevisionNo,
    End,
}

const PRE_SUFFIXES: [&str; 5] = ["alpha", "beta", "pre", "rc", "b"];
const POST_SUFFIXES: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn rest(&self) -> &[u8] {
        self.s.get(self.pos..).unwrap_or_default()
    }

    /// The type of the token that starts at the cursor, consuming its separator.
    fn next_token(&mut self, current: Token) -> Token {
        let Some(c) = self.peek().filter(|c| *c != 0) else {
            return Token::End;
        };
        let mut n = Token::Invalid;
        if matches!(current, Token::Digit | Token::DigitOrZero) && c.is_ascii_lowercase() {
            n = Token::Letter;
        } else if current == Token::Letter && c.is_ascii_digit() {
            n = Token::Digit;
        } else if current == Token::Suffix && c.is_ascii_digit() {
            n = Token::SuffixNo;
        } else {
            match c {
                b'.' => n = Token::DigitOrZero,
                b'_' => n = Token::Suffix,
                b'-' if self.s.get(self.pos + 1) == Some(&b'r') => {
                    n = Token::RevisionNo;
                    self.pos += 1;
                }
                _ => {}
            }
            self.pos += 1;
        }
        if n < current
            && !((n == Token::DigitOrZero && current == Token::Digit)
                || (n == Token::Suffix && current == Token::SuffixNo)
                || (n == Token::Digit && current == Token::Letter))
        {
            n = Token::Invalid;
        }
        n
    }

    /// The value of the token of type `*kind` at the cursor; advances `*kind` to the next.
    fn get_token(&mut self, kind: &mut Token) -> i64 {
        if self.pos >= self.s.len() {
            *kind = Token::End;
            return 0;
        }
        let mut value: i64 = 0;
        let mut next = Token::Invalid;
        let start = self.pos;
        match *kind {
            Token::DigitOrZero if self.peek() == Some(b'0') => {
                // Leading zeros: the more there are, the smaller the component.
                while self.peek() == Some(b'0') {
                    self.pos += 1;
                }
                value = -((self.pos - start) as i64);
                next = Token::Digit;
            }
            Token::DigitOrZero | Token::Digit | Token::SuffixNo | Token::RevisionNo => {
                while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
                    value = value.saturating_mul(10).saturating_add(i64::from(c - b'0'));
                    self.pos += 1;
                }
            }
            Token::Letter => {
                value = i64::from(self.peek().unwrap_or(0));
                self.pos += 1;
            }
            Token::Suffix => {
                let rest = self.rest();
                if let Some(i) = PRE_SUFFIXES
                    .iter()
                    .position(|s| rest.starts_with(s.as_bytes()))
                {
                    value = i as i64 - PRE_SUFFIXES.len() as i64;
                    self.pos += PRE_SUFFIXES[i].len();
                } else if let Some(i) = POST_SUFFIXES
                    .iter()
                    .position(|s| rest.starts_with(s.as_bytes()))
                {
                    value = i as i64;
                    self.pos += POST_SUFFIXES[i].len();
                } else {
                    *kind = Token::Invalid;
                    return -1;
                }
            }
            Token::Invalid | Token::End => {
                *kind = Token::Invalid;
                return -1;
            }
        }
        if self.pos >= self.s.len() {
            *kind = Token::End;
        } else if next != Token::Invalid {
            *kind = next;
        } else {
            *kind = self.next_token(*kind);
        }
        value
    }
}

/// Whether apk-tools accepts `version` as a valid version.
pub fn is_valid(version: &str) -> bool {
    let mut cursor = Cursor {
        s: version.as_bytes(),
        pos: 0,
    };
    let mut kind = Token::Digit;
    while kind != Token::End && kind != Token::Invalid {
        cursor.get_token(&mut kind);
    }
    kind == Token::End
}

/// Orders two apk versions like `apk version -t`.
pub fn compare(a: &str, b: &str) -> Ordering {
    let mut ca = Cursor {
        s: a.trim().as_bytes(),
        pos: 0,
    };
    let mut cb = Cursor {
        s: b.trim().as_bytes(),
        pos: 0,
    };
    let (mut at, mut bt) = (Token::Digit, Token::Digit);
    let (mut av, mut bv) = (0i64, 0i64);
    while at == bt && at != Token::End && at != Token::Invalid && av == bv {
        av = ca.get_token(&mut at);
        bv = cb.get_token(&mut bt);
    }
    if av != bv {
        return av.cmp(&bv);
    }
    if at == bt {
        return Ordering::Equal;
    }
    // Equal so far: the longer one is newer, unless what it has more of is a pre-release
    // suffix.
    let mut t = at;
    if at == Token::Suffix && ca.get_token(&mut t) < 0 {
        return Ordering::Less;
    }
    let mut t = bt;
    if bt == Token::Suffix && cb.get_token(&mut t) < 0 {
        return Ordering::Greater;
    }
    // A later token type (e.g. End) means the version stopped earlier: older.
    bt.cmp(&at)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs from apk-tools' own test vectors (`test/version.data`).
    const VECTORS: &str = "\
2.34 > 0.1.0_alpha
23_foo > 4_beta
0.1.0_alpha = 0.1.0_alpha
0.1.0_alpha < 0.1.3_alpha
0.1.0_alpha2 > 0.1.0_alpha
0.1.0_alpha < 2.2.39-r1
1.0.4-r3 < 1.0.4-r4
1.1 > 1.1_alpha1
1.2.1 > 1.2
1.3_alpha2 < 1.3_alpha3
2.3.0b-r1 < 2.3.0b-r2
0.12.3 > 0.12
0.13_beta5 > 0.9.12
1.2.12.1 < 1.2.13
3.1_p16 < 3.1_p17
1.06-r6 < 006
1.2.2-r1 > 1.2.2
20050718-r2 > 3.9.8-r5
2.01.01_alpha10 > 0.94
1.0 > 0.99.3.20040818
4.2.52_p2-r1 < 4.2.52_p4-r2
9 > 2.18.3-r10
2.11-r1 > 2.11
3.0.20060720 < 20060720
2.5.1-r8 < 2.5.1a-r1
1.3.5-r10 > 1.3.5-r8
2.0.0_rc3-r1 > 1.5
3.0.0-r2 < 021109-r3
3.9_pre20060124 > 0.01
6b-r7 > 1.12-r7
0.10.0 < 0.10.1_rc1
1.0-r1 > 0.15.1b
22.7.3-r1 > 22.7
2.10.1 > 02.08.01b
1.6d > 1.2.07.8
1.2.07.8 < 1.2.12.04
1.07-r1 < 1.07.5
0.20070118 < 0.20070207_rc1
4.5_p1-r1 > 4.5_p1
0.9.8c-r1 < 0.9.8d
1.7 < 1.7b
1.8.5 < 1.8.5_p2
2.9.11_pre20051101-r3 > 2.9.11_pre20051101
0.9.28.1 < 087-r1
2.12r-r4 < 2.12r-r5
7.0.17 < 7.0.174
1.3-r0 < 1.3.1-r0
1.3_pre1-r1 < 1.3.2
1.0_p10-r0 > 1.0_p9-r0
0.1.0_alpha_pre2 < 0.1.0_alpha
10.0.0_b2-r0 < 10.0.0_b3-r0
";

    #[test]
    fn apk_tools_vectors() {
        for line in VECTORS.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [a, op, b] = parts[..] else {
                panic!("bad vector {line}")
            };
            let want = match op {
                "<" => Ordering::Less,
                ">" => Ordering::Greater,
                _ => Ordering::Equal,
            };
            assert_eq!(compare(a, b), want, "{line}");
            assert_eq!(compare(b, a), want.reverse(), "{line} (reversed)");
        }
    }

    #[test]
    fn validity() {
        assert!(is_valid("1.2.3_rc1-r0"));
        assert!(is_valid("2.6.1.3-r1"));
        assert!(!is_valid("1.0bc"));
        assert!(!is_valid("1.0-x"));
    }
}
