//! JIT symbols from perf map files (`/tmp/perf-PID.map`): one `START SIZE NAME` line per code
//! region, `START` and `SIZE` in hex (with or without `0x`), `NAME` to the end of the line. When
//! regions overlap (a JIT reusing memory), the line written last wins.

use std::path::Path;

/// How many earlier entries a lookup checks when the nearest one does not contain the address.
const OVERLAP_LOOKBACK: usize = 8;

#[derive(Debug)]
struct Entry {
    start: u64,
    end: u64,
    /// Position in the file, so that later lines win among overlapping ones.
    line: usize,
    name: (usize, usize),
}

/// The regions of one perf map, sorted by start address.
#[derive(Debug, Default)]
pub(crate) struct PerfMap {
    entries: Vec<Entry>,
    text: String,
}

impl PerfMap {
    /// Reads the map at `path`; `None` if it cannot be read.
    pub(crate) fn load(path: &Path) -> Option<Self> {
        std::fs::read_to_string(path).ok().map(|c| Self::parse(&c))
    }

    /// Parses the content of a perf map, skipping malformed lines.
    pub(crate) fn parse(content: &str) -> Self {
        let mut map = PerfMap::default();
        for (line_no, line) in content.lines().enumerate() {
            let Some((start, size, name)) = parse_line(line) else {
                continue;
            };
            let begin = map.text.len();
            map.text.push_str(name);
            map.entries.push(Entry {
                start,
                end: start.saturating_add(size),
                line: line_no,
                name: (begin, map.text.len()),
            });
        }
        map.entries.sort_by_key(|e| e.start);
        map
    }

    /// The name of the region containing `address`.
    pub(crate) fn lookup(&self, address: u64) -> Option<&str> {
        let after = self.entries.partition_point(|e| e.start <= address);
        let entry = self.entries[..after]
            .iter()
            .rev()
            .take(OVERLAP_LOOKBACK)
            .filter(|e| address < e.end)
            .max_by_key(|e| e.line)?;
        self.text.get(entry.name.0..entry.name.1)
    }
}

fn parse_line(line: &str) -> Option<(u64, u64, &str)> {
    let mut parts = line.trim_end().splitn(3, ' ');
    let start = parse_hex(parts.next()?)?;
    let size = parse_hex(parts.next()?)?;
    let name = parts.next()?.trim_start();
    (!name.is_empty()).then_some((start, size, name))
}

fn parse_hex(s: &str) -> Option<u64> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_looks_up_regions() {
        let map = PerfMap::parse(
            "7f0000001000 40 LazyCompile:~foo script.js:1\n\
             0x7f0000002000 0x10 bar\n\
             garbage line\n\
             7f0000001000 20 reused\n",
        );
        assert_eq!(map.lookup(0x7f0000001010), Some("reused"));
        assert_eq!(
            map.lookup(0x7f0000001030),
            Some("LazyCompile:~foo script.js:1")
        );
        assert_eq!(map.lookup(0x7f000000200f), Some("bar"));
        assert_eq!(map.lookup(0x7f0000002010), None);
        assert_eq!(map.lookup(0x7f0000000fff), None);
    }
}
