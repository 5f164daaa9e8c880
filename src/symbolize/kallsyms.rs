//! Kernel symbols from `/proc/kallsyms`: `ADDRESS TYPE NAME[\t[MODULE]]` lines, text symbols only,
//! sorted once for binary search. The file has no sizes: a symbol reaches up to the next one, and
//! the last one (usually in the last loaded module) covers at most [`LAST_SYMBOL_SPAN`] bytes.
//! When `kptr_restrict` hides addresses (all zero), the table is empty.

use std::path::Path;

/// How far past the last known kernel symbol an address is still attributed to it.
const LAST_SYMBOL_SPAN: u64 = 64 * 1024;

/// The kernel's text symbols, sorted by address; names are ranges in one shared string.
#[derive(Debug, Default)]
pub(crate) struct Kallsyms {
    addresses: Vec<u64>,
    names: Vec<(u32, u32)>,
    text: String,
}

impl Kallsyms {
    /// Reads the table at `path` (normally `/proc/kallsyms`); an unreadable file gives an empty table.
    pub(crate) fn load(path: &Path) -> Self {
        // Streamed line by line: the file is ~5 MB of text we need not hold at once.
        match std::fs::File::open(path) {
            Ok(file) => Self::from_lines(std::io::BufReader::with_capacity(256 * 1024, file)),
            Err(_) => Self::default(),
        }
    }

    /// Parses the content of a kallsyms file.
    #[cfg(test)]
    pub(crate) fn parse(content: &str) -> Self {
        Self::from_lines(content.as_bytes())
    }

    fn from_lines(mut reader: impl std::io::BufRead) -> Self {
        let mut entries: Vec<(u64, u32, u32)> = Vec::with_capacity(1 << 17);
        let mut text = String::with_capacity(3 << 20);
        // Bytes, not `read_line`: most lines are data symbols, skipped before any UTF-8 check.
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let Some((address, name)) = parse_line(line.strip_suffix(b"\n").unwrap_or(&line))
            else {
                continue;
            };
            if address == 0 && entries.is_empty() {
                // Addresses hidden (kptr_restrict, perf_event_paranoid as a user): they all are,
                // and the other ~100k lines need not be formatted by the kernel.
                return Self::default();
            }
            let (Ok(start), Ok(len)) = (u32::try_from(text.len()), u32::try_from(name.len()))
            else {
                break;
            };
            text.push_str(name);
            entries.push((address, start, len));
        }
        text.shrink_to_fit();
        if entries.iter().all(|e| e.0 == 0) {
            return Self::default();
        }
        entries.sort_by_key(|e| e.0);
        Kallsyms {
            addresses: entries.iter().map(|e| e.0).collect(),
            names: entries.iter().map(|e| (e.1, e.2)).collect(),
            text,
        }
    }

    /// The name of the kernel function containing `address`.
    pub(crate) fn lookup(&self, address: u64) -> Option<&str> {
        let index = self
            .addresses
            .partition_point(|&a| a <= address)
            .checked_sub(1)?;
        if index + 1 == self.addresses.len() && address - self.addresses[index] >= LAST_SYMBOL_SPAN
        {
            return None;
        }
        let (start, len) = self.names[index];
        self.text.get(start as usize..(start + len) as usize)
    }
}

/// `(address, name)` of a text symbol line.
fn parse_line(line: &[u8]) -> Option<(u64, &str)> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let address = std::str::from_utf8(parts.next()?).ok()?;
    let kind = parts.next()?;
    if !matches!(kind, b"t" | b"T" | b"w" | b"W") {
        return None;
    }
    let address = u64::from_str_radix(address, 16).ok()?;
    let name = parts.next()?.split(|&b| b == b'\t').next()?;
    let name = std::str::from_utf8(name).ok()?;
    (!name.is_empty()).then_some((address, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81000000 T _stext
ffffffff81000100 t helper
ffffffff81000200 D some_data
ffffffff81000300 T do_work
ffffffffc0001000 t ext4_thing\t[ext4]
";

    #[test]
    fn finds_the_nearest_text_symbol_below() {
        let k = Kallsyms::parse(SAMPLE);
        assert_eq!(k.lookup(0xffffffff81000104), Some("helper"));
        // Data symbols are skipped: the address still belongs to `helper`.
        assert_eq!(k.lookup(0xffffffff81000204), Some("helper"));
        assert_eq!(k.lookup(0xffffffff81000300), Some("do_work"));
        assert_eq!(k.lookup(0xffffffffc0001010), Some("ext4_thing"));
        assert_eq!(k.lookup(0xffffffff80ffffff), None);
        assert_eq!(k.lookup(0xffffffffc0001000 + LAST_SYMBOL_SPAN), None);
    }

    #[test]
    fn hidden_addresses_give_an_empty_table() {
        let k = Kallsyms::parse("0000000000000000 T _stext\n0000000000000000 T do_work\n");
        assert_eq!(k.lookup(0), None);
        assert_eq!(k.lookup(0x1234), None);
    }
}
