//! JIT symbols from perf map files (`/tmp/perf-PID.map`): one `START SIZE NAME` line per code
//! region, `START` and `SIZE` in hex (with or without `0x`), `NAME` to the end of the line. When
//! regions overlap (a JIT reusing memory), the line written last wins.
//!
//! `/tmp` is writable by every user, so the file is hostile until checked (the profiler often
//! runs as root): it is opened with `O_NOFOLLOW | O_NONBLOCK` (a symlink or a FIFO planted there
//! never blocks or redirects the read), then checked on the opened descriptor to be a regular
//! file owned by root or by one of the accepted users, and read up to [`MAX_MAP_BYTES`], lines
//! longer than [`MAX_LINE`] skipped. Anything else is skipped with a one-line note.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Most bytes read from one perf map (a large node application writes a few MiB).
pub(crate) const MAX_MAP_BYTES: u64 = 64 << 20;
/// Longest line used; longer ones are skipped (JIT names are at most a few hundred bytes).
pub(crate) const MAX_LINE: usize = 4096;

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
    /// Reads the map at `path` if it is a regular file owned by root or by a uid in `owners`.
    /// Returns the map (`None` if there is none or it was skipped) and a note for the user when
    /// the file was skipped or only partly used.
    pub(crate) fn load(path: &Path, owners: &[u32]) -> (Option<Self>, Option<String>) {
        match read_checked(path, owners) {
            Ok(None) => (None, None),
            Ok(Some((bytes, cut))) => {
                let (map, long_lines) = Self::parse_bytes(&bytes);
                let note = match (cut, long_lines) {
                    (false, 0) => None,
                    (true, _) => Some(format!(
                        "perf map {} is larger than {} MiB: only its first {} MiB are used",
                        path.display(),
                        MAX_MAP_BYTES >> 20,
                        MAX_MAP_BYTES >> 20
                    )),
                    (false, n) => Some(format!(
                        "perf map {}: {n} lines longer than {MAX_LINE} bytes were skipped",
                        path.display()
                    )),
                };
                (Some(map), note)
            }
            Err(reason) => (
                None,
                Some(format!("perf map {} skipped: {reason}", path.display())),
            ),
        }
    }

    /// The first of the maps at `paths` that exists and is accepted (see [`PerfMap::load`]);
    /// notes for the user go to `notes`.
    pub(crate) fn load_first<'p>(
        paths: impl IntoIterator<Item = &'p std::path::PathBuf>,
        owners: &[u32],
        notes: &mut Vec<String>,
    ) -> Option<Self> {
        paths.into_iter().find_map(|path| {
            let (map, note) = Self::load(path, owners);
            notes.extend(note);
            map
        })
    }

    /// Parses the content of a perf map, skipping malformed lines.
    #[cfg(test)]
    pub(crate) fn parse(content: &str) -> Self {
        Self::parse_bytes(content.as_bytes()).0
    }

    /// Parses perf map bytes, skipping malformed lines; also returns how many lines were skipped
    /// for being longer than [`MAX_LINE`].
    fn parse_bytes(content: &[u8]) -> (Self, usize) {
        let mut map = PerfMap::default();
        let mut long_lines = 0;
        for (line_no, line) in content.split(|&b| b == b'\n').enumerate() {
            if line.len() > MAX_LINE {
                long_lines += 1;
                continue;
            }
            let line = String::from_utf8_lossy(line);
            let Some((start, size, name)) = parse_line(&line) else {
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
        (map, long_lines)
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

/// Opens `path` without following a symlink or blocking on a FIFO, checks the opened file, and
/// reads at most [`MAX_MAP_BYTES`] of it: `Ok(None)` if it does not exist, else the bytes and
/// whether they were cut at the limit (then at the last complete line), or why it was refused.
fn read_checked(path: &Path, owners: &[u32]) -> Result<Option<(Vec<u8>, bool)>, String> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err("it is a symbolic link".into())
        }
        Err(e) => return Err(format!("cannot open it: {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    if !meta.file_type().is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.uid() != 0 && !owners.contains(&meta.uid()) {
        return Err(format!(
            "it is owned by uid {}, neither root nor the profiled program's user",
            meta.uid()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_MAP_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let cut = bytes.len() as u64 > MAX_MAP_BYTES;
    if cut {
        let end = bytes.iter().rposition(|&b| b == b'\n').unwrap_or(0);
        bytes.truncate(end);
    }
    Ok(Some((bytes, cut)))
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

    /// A FIFO, a symlink and a map with an overlong line: never a hang, a note for each.
    #[test]
    fn hostile_files_are_skipped_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: geteuid has no preconditions.
        let me = [unsafe { libc::geteuid() }];

        let fifo = dir.path().join("fifo.map");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c_path is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let (map, note) = PerfMap::load(&fifo, &me);
        assert!(map.is_none());
        assert!(note.unwrap().contains("not a regular file"));

        let link = dir.path().join("link.map");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let (map, note) = PerfMap::load(&link, &me);
        assert!(map.is_none());
        assert!(note.unwrap().contains("symbolic link"));

        let long = dir.path().join("long.map");
        let line = format!("1000 10 {}\n2000 10 ok\n", "x".repeat(MAX_LINE));
        std::fs::write(&long, line).unwrap();
        let (map, note) = PerfMap::load(&long, &me);
        let map = map.unwrap();
        assert_eq!(map.lookup(0x1004), None);
        assert_eq!(map.lookup(0x2004), Some("ok"));
        assert!(note.unwrap().contains("1 lines longer"));

        let (map, note) = PerfMap::load(&dir.path().join("missing.map"), &me);
        assert!(map.is_none() && note.is_none());
    }
}
