//! Benchmark workload for `bench/run.py`: a fixed amount of work (so a slowdown shows as a longer
//! run) with deep inlining and generics: generating log lines, matching them with `regex`,
//! aggregating per-key statistics in hash maps, and sorting the result.
//!
//! Usage: `rustload THREADS LINES_PER_THREAD`; prints a checksum and exits 0.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;

use regex::Regex;

/// A small deterministic generator, so every run does the same work.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

const HOSTS: &[&str] = &["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"];
const PATHS: &[&str] = &["/api/users", "/api/orders", "/static/app.js", "/login", "/search"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];

/// Writes one generated log line into `line`.
fn generate(rng: &mut XorShift, line: &mut String) {
    line.clear();
    let _ = write!(
        line,
        "{}.example.org - [{:02}/Mar/2024:{:02}:{:02}:{:02}] \"{} {}/{} HTTP/1.1\" {} {} ua=client-{}",
        rng.pick(HOSTS),
        rng.next() % 28 + 1,
        rng.next() % 24,
        rng.next() % 60,
        rng.next() % 60,
        rng.pick(METHODS),
        rng.pick(PATHS),
        rng.next() % 5000,
        [200, 200, 200, 301, 404, 500][(rng.next() % 6) as usize],
        rng.next() % 100_000,
        rng.next() % 300,
    );
}

/// Running statistics of one key.
#[derive(Default, Clone, Copy)]
struct Stats {
    count: u64,
    bytes: u64,
    max: u64,
}

impl Stats {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
        self.max = self.max.max(bytes);
    }
}

/// Adds `bytes` under `key`, generic over the key type so each map gets its own code.
fn tally<K: Hash + Eq>(map: &mut HashMap<K, Stats>, key: K, bytes: u64) {
    map.entry(key).or_default().add(bytes);
}

/// The top `n` keys by bytes: a generic sort over the map's entries.
fn top<K: Ord + Clone>(map: &HashMap<K, Stats>, n: usize) -> Vec<(K, Stats)> {
    let mut entries: Vec<(K, Stats)> = map.iter().map(|(k, s)| (k.clone(), *s)).collect();
    entries.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then_with(|| a.0.cmp(&b.0)));
    entries.truncate(n);
    entries
}

/// One thread's work: generate, parse and aggregate `lines` lines; returns a checksum.
fn work(seed: u64, lines: u64) -> u64 {
    let re = Regex::new(
        r#"^(\w+)\.example\.org - \[(\d+)/(\w+)/(\d+):(\d+):\d+:\d+\] "(\w+) (/[\w/.]+)/(\d+) HTTP/1\.1" (\d{3}) (\d+) ua=([\w-]+)$"#,
    )
    .expect("the pattern is valid");
    let mut rng = XorShift(seed | 1);
    let mut line = String::with_capacity(160);
    let mut by_host: HashMap<String, Stats> = HashMap::new();
    let mut by_path: HashMap<(String, u16), Stats> = HashMap::new();
    let mut by_agent: HashMap<String, Stats> = HashMap::new();
    let mut by_hour: HashMap<u32, Stats> = HashMap::new();
    let mut checksum = 0u64;
    for _ in 0..lines {
        generate(&mut rng, &mut line);
        let Some(caps) = re.captures(&line) else {
            continue;
        };
        let bytes: u64 = caps[10].parse().unwrap_or(0);
        let status: u16 = caps[9].parse().unwrap_or(0);
        let hour: u32 = caps[5].parse().unwrap_or(0);
        tally(&mut by_host, caps[1].to_string(), bytes);
        tally(&mut by_path, (format!("{} {}", &caps[6], &caps[7]), status), bytes);
        tally(&mut by_agent, caps[11].to_string(), bytes);
        tally(&mut by_hour, hour, bytes);
        checksum = checksum.wrapping_mul(31).wrapping_add(bytes);
    }
    for (_, s) in top(&by_host, 3)
        .into_iter()
        .map(|(k, s)| (k.len(), s))
        .chain(top(&by_path, 5).into_iter().map(|(k, s)| (k.0.len(), s)))
        .chain(top(&by_agent, 5).into_iter().map(|(k, s)| (k.len(), s)))
        .chain(top(&by_hour, 5).into_iter().map(|(k, s)| (k as usize, s)))
    {
        checksum ^= s.count ^ s.max;
    }
    checksum
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let lines: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let handles: Vec<_> = (0..threads)
        .map(|t| std::thread::spawn(move || work(0x9e37_79b9_7f4a_7c15 ^ (t << 8), lines)))
        .collect();
    let checksum = handles
        .into_iter()
        .map(|h| h.join().unwrap_or(0))
        .fold(0u64, |a, b| a ^ b);
    println!("rustload threads={threads} lines={lines} checksum={checksum:x}");
}
