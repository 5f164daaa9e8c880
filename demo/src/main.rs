//! The bundled demo: a small program with a recognizable profile, for the README's first command
//! (`cargo build --release -p flamegraph -p demo`, then `flamegraph -- target/release/demo`).
//!
//! About half the time goes to `count_primes`, a third to `sort_words`, a tenth to `checksum`;
//! two threads run side by side. Runs about two seconds.

use std::hint::black_box;
use std::time::{Duration, Instant};

#[inline(never)]
fn count_primes(limit: u64) -> usize {
    (2..limit)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count()
}

#[inline(never)]
fn sort_words(seed: u64, n: usize) -> String {
    let mut x = seed;
    let mut words: Vec<String> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:x}")
        })
        .collect();
    words.sort();
    words.swap_remove(n / 2)
}

#[inline(never)]
fn checksum(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn worker(id: u64, run_for: Duration) -> u64 {
    let start = Instant::now();
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i * 31 + id as u32) as u8)
        .collect();
    let mut acc = 0u64;
    while start.elapsed() < run_for {
        acc += black_box(count_primes(black_box(40_000))) as u64;
        acc += black_box(sort_words(acc + id, 6_000)).len() as u64;
        acc += u64::from(black_box(checksum(black_box(&data))));
    }
    acc
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let run_for = Duration::from_secs_f64(seconds);
    let other = std::thread::spawn(move || worker(1, run_for));
    let mine = worker(2, run_for);
    let theirs = other.join().expect("worker thread panicked");
    println!("demo done: {}", mine ^ theirs);
}
