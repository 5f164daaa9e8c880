//! `rocks DIR SECONDS`: writes, reads and compacts keys in a RocksDB database in DIR (created,
//! then removed) for about SECONDS, and prints `ops=N`. The point is the C++ library underneath:
//! librocksdb-sys compiles RocksDB with `-g` here (`debug = true`), giving a binary with well over
//! 100 MB of DWARF for the profiler to unwind and symbolize.

use rocksdb::{Options, DB};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: rocks DIR SECONDS");
        std::process::exit(2);
    }
    let dir = std::path::Path::new(&args[1]).join("rocks.db");
    let secs: f64 = args[2].parse().expect("SECONDS must be a number");
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_write_buffer_size(4 << 20);
    let db = DB::open(&opts, &dir).expect("open the database");
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut ops: u64 = 0;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while Instant::now() < end {
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("key{:012}", x % 2_000_000);
            db.put(key.as_bytes(), x.to_le_bytes()).expect("put");
            let probe = format!("key{:012}", (x >> 20) % 2_000_000);
            let _ = db.get(probe.as_bytes()).expect("get");
            ops += 2;
        }
        if ops % 200_000 == 0 {
            let mut it = db.iterator(rocksdb::IteratorMode::Start);
            for _ in 0..1000 {
                if it.next().is_none() {
                    break;
                }
            }
        }
    }
    db.flush().expect("flush");
    drop(db);
    let _ = DB::destroy(&Options::default(), &dir);
    println!("ops={ops}");
}
