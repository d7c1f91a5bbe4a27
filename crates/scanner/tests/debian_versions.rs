//! Debian version ordering against the reference: `apt_pkg.version_compare` from Debian's
//! python3-apt (the same ordering as `dpkg --compare-versions`), on many thousands of pairs
//! of real version strings taken from the machine's apt package lists, plus variants of them
//! that stress the rules (`~`, `+`, epochs, leading zeros). All pairs are judged in one
//! Python process. A second test asks `dpkg --compare-versions` itself on a sample of 1,200.

use std::cmp::Ordering;
use std::io::Write as _;
use std::process::{Command, Stdio};

use image_cleaner_scanner::version::debian;

const PYTHON: &str = "/usr/bin/python3";
const ORACLE: &str = r#"
import sys, apt_pkg
apt_pkg.init()
out = []
for line in sys.stdin:
    a, b = line.rstrip("\n").split("\t")
    r = apt_pkg.version_compare(a, b)
    out.append("<" if r < 0 else (">" if r > 0 else "="))
sys.stdout.write("".join(out))
"#;

/// Every `Version:` in the apt lists, deduplicated, in list order.
fn real_versions() -> Vec<String> {
    let lists = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir("/var/lib/apt/lists")
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.to_string_lossy().contains("Packages"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut files = lists();
    if files.is_empty() {
        // A fresh machine may never have fetched its package lists.
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        files = lists();
    }
    assert!(
        !files.is_empty(),
        "no apt package lists under /var/lib/apt/lists (run apt-get update)"
    );
    let mut seen = std::collections::HashSet::new();
    let mut versions = Vec::new();
    for file in files {
        let output = Command::new("/usr/lib/apt/apt-helper")
            .arg("cat-file")
            .arg(&file)
            .output()
            .expect("running apt-helper cat-file");
        let text = String::from_utf8_lossy(&output.stdout);
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("Version: ") {
                let v = v.trim().to_string();
                if seen.insert(v.clone()) {
                    versions.push(v);
                }
            }
        }
    }
    versions
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn variant(v: &str, rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => format!("{v}~rc1"),
        1 => format!("{v}+b1"),
        2 => format!("1:{v}"),
        3 => v.replacen('.', ".0", 1),
        4 => format!("{v}~"),
        5 => v.replace('-', "~deb12u1-"),
        6 => format!("{v}.1"),
        _ => v.trim_end_matches(|c: char| c.is_ascii_digit()).to_string(),
    }
}

#[test]
fn agrees_with_apt_pkg_on_real_versions() {
    let versions = real_versions();
    assert!(
        versions.len() > 1000,
        "only {} versions in the apt lists",
        versions.len()
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut pairs: Vec<(String, String)> = Vec::new();
    // Neighbours in byte order: close strings exercise the fine rules.
    let mut sorted = versions.clone();
    sorted.sort();
    for w in sorted.windows(2) {
        pairs.push((w[0].clone(), w[1].clone()));
    }
    // Neighbours in list order: versions of related packages.
    for w in versions.windows(2).step_by(3) {
        pairs.push((w[1].clone(), w[0].clone()));
    }
    // Random pairs and variants of real versions.
    for _ in 0..20_000 {
        let a = &versions[rng.below(versions.len())];
        let b = &versions[rng.below(versions.len())];
        pairs.push((a.clone(), b.clone()));
        let v = variant(a, &mut rng);
        pairs.push((a.clone(), v));
    }
    pairs.retain(|(a, b)| !a.contains(['\t', '\n']) && !b.contains(['\t', '\n']));

    let mut child = Command::new(PYTHON)
        .args(["-c", ORACLE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running /usr/bin/python3 (install python3-apt)");
    let mut input = String::new();
    for (a, b) in &pairs {
        input.push_str(a);
        input.push('\t');
        input.push_str(b);
        input.push('\n');
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("oracle output");
    writer.join().expect("writer").expect("writing pairs");
    assert!(
        output.status.success(),
        "the apt_pkg oracle failed (is python3-apt installed?)"
    );
    let verdicts = String::from_utf8(output.stdout).expect("ascii verdicts");
    assert_eq!(verdicts.len(), pairs.len(), "oracle answered every pair");

    let mut disagreements = Vec::new();
    for ((a, b), verdict) in pairs.iter().zip(verdicts.chars()) {
        let want = match verdict {
            '<' => Ordering::Less,
            '>' => Ordering::Greater,
            _ => Ordering::Equal,
        };
        let got = debian::compare(a, b);
        if got != want {
            disagreements.push(format!("{a} vs {b}: apt says {want:?}, we say {got:?}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} pairs disagree, e.g.:\n{}",
        disagreements.len(),
        pairs.len(),
        disagreements[..disagreements.len().min(20)].join("\n")
    );
    eprintln!("{} pairs agree with apt_pkg", pairs.len());
}

/// `dpkg --compare-versions` itself, one process per question: slower, so on a deterministic
/// sample of real versions, their variants and close neighbours. `None` when dpkg calls a
/// version malformed (some variants are, e.g. an empty revision).
fn dpkg_says(a: &str, b: &str) -> Option<Ordering> {
    let holds = |relation: &str| {
        let output = Command::new("dpkg")
            .args(["--compare-versions", a, relation, b])
            .output()
            .expect("running dpkg --compare-versions");
        match output.status.code() {
            Some(0) => Some(true),
            Some(1) => Some(false),
            _ => None,
        }
    };
    Some(if holds("lt")? {
        Ordering::Less
    } else if holds("eq")? {
        Ordering::Equal
    } else {
        Ordering::Greater
    })
}

#[test]
fn agrees_with_dpkg_compare_versions_on_a_sample() {
    let versions = real_versions();
    assert!(versions.len() > 1000);
    let mut sorted = versions.clone();
    sorted.sort();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut pairs = Vec::new();
    for _ in 0..400 {
        let i = rng.below(sorted.len() - 1);
        pairs.push((sorted[i].clone(), sorted[i + 1].clone()));
        let a = &versions[rng.below(versions.len())];
        let b = &versions[rng.below(versions.len())];
        pairs.push((a.clone(), b.clone()));
        pairs.push((a.clone(), variant(a, &mut rng)));
    }
    let mut judged = 0;
    let disagreements: Vec<String> = pairs
        .iter()
        .filter_map(|(a, b)| {
            let want = dpkg_says(a, b)?;
            judged += 1;
            let got = debian::compare(a, b);
            (want != got).then(|| format!("{a} vs {b}: dpkg says {want:?}, we say {got:?}"))
        })
        .collect();
    assert!(judged > 1000, "dpkg judged only {judged} pairs");
    assert!(
        disagreements.is_empty(),
        "{} of {} pairs disagree with dpkg:\n{}",
        disagreements.len(),
        pairs.len(),
        disagreements[..disagreements.len().min(20)].join("\n")
    );
}
