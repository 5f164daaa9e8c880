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
    /// `[start, end)` when only the kernel's own text is here (from the cache, see
    /// `kallsyms_cache.rs`); `None` for a whole file.
    own_only: Option<(u64, u64)>,
}

impl Kallsyms {
    /// Reads the table at `path` (normally `/proc/kallsyms`); an unreadable file gives an empty table.
    pub(crate) fn load(path: &Path) -> Self {
        match std::fs::File::open(path) {
            Ok(file) => Self::from_reader(file),
            Err(_) => Self::default(),
        }
    }

    /// Parses the content of a kallsyms file.
    #[cfg(test)]
    pub(crate) fn parse(content: &str) -> Self {
        Self::from_reader(content.as_bytes())
    }

    /// Reads the file in large blocks and parses the whole lines of each block where they lie
    /// (the file is ~5 MB of text, ~120k lines: copying each line out and checking each name's
    /// UTF-8 cost half as much again as the kernel's formatting of them).
    pub(crate) fn from_reader(mut reader: impl std::io::Read) -> Self {
        let mut table = Builder::default();
        let mut block = vec![0u8; READ_BLOCK];
        // Bytes of an unfinished line at the start of `block`.
        let mut carried = 0;
        loop {
            let read = match reader.read(&mut block[carried..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let filled = carried + read;
            let whole = match memchr::memrchr(b'\n', &block[..filled]) {
                Some(last) => last + 1,
                // A line longer than the block: not kallsyms; what was read is kept.
                None if filled == block.len() => {
                    carried = 0;
                    break;
                }
                None => {
                    carried = filled;
                    continue;
                }
            };
            if !table.add_lines(&block[..whole]) {
                return Self::default();
            }
            block.copy_within(whole..filled, 0);
            carried = filled - whole;
        }
        if carried > 0 && carried < block.len() {
            // The last line, without its newline.
            block[carried] = b'\n';
            if !table.add_lines(&block[..=carried]) {
                return Self::default();
            }
        }
        table.finish()
    }

    /// Whether this table can name `address`: a whole file can name any, the kernel's own text
    /// only what lies in it.
    pub(crate) fn covers(&self, address: u64) -> bool {
        self.own_only
            .is_none_or(|(start, end)| (start..end).contains(&address))
    }

    /// The kernel's own text, `_text` to `_etext`, and its symbols in order, if both bounds are
    /// in the table.
    pub(crate) fn own_text(&self) -> Option<(u64, u64, Vec<Symbol<'_>>)> {
        let named = |wanted: &str| {
            let i = (0..self.addresses.len()).find(|&i| self.name(i) == Some(wanted))?;
            Some(self.addresses[i])
        };
        let (start, end) = (named("_text")?, named("_etext")?);
        let symbols = (0..self.addresses.len())
            .filter(|&i| (start..end).contains(&self.addresses[i]))
            .map(|i| Some((self.addresses[i], self.name(i)?)))
            .collect::<Option<Vec<_>>>()?;
        (start < end).then_some((start, end, symbols))
    }

    /// The table of the kernel's own text `[start, end)` from its symbols' offsets from `start`
    /// (in order) and name lengths, the names one after the other in `names`; `None` unless
    /// all of that fits together.
    pub(crate) fn own_text_from(
        start: u64,
        end: u64,
        symbols: impl Iterator<Item = (u32, u16)>,
        names: &str,
    ) -> Option<Self> {
        let mut table = Kallsyms {
            own_only: Some((start, end)),
            ..Self::default()
        };
        let mut at = 0u32;
        for (offset, len) in symbols {
            let address = start + u64::from(offset);
            if address >= end || table.addresses.last().is_some_and(|&last| last > address) {
                return None;
            }
            table.addresses.push(address);
            table.names.push((at, u32::from(len)));
            at = at.checked_add(u32::from(len))?;
        }
        if at as usize != names.len() {
            return None;
        }
        table.text = names.to_owned();
        Some(table)
    }

    fn name(&self, index: usize) -> Option<&str> {
        let (start, len) = *self.names.get(index)?;
        self.text.get(start as usize..(start + len) as usize)
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
        self.name(index)
    }
}

/// A symbol's address and name.
pub(crate) type Symbol<'a> = (u64, &'a str);

/// Bytes read from the file at a time.
const READ_BLOCK: usize = 1 << 20;

/// The table being read: addresses with ranges into `text`, in file order.
#[derive(Default)]
struct Builder {
    entries: Vec<(u64, u32, u32)>,
    text: Vec<u8>,
}

impl Builder {
    /// Adds the text symbols of `lines` (whole lines, each ending with a newline); false when
    /// the addresses are hidden (`kptr_restrict`, `perf_event_paranoid` as a user: all are zero,
    /// and the other ~100k lines need not be formatted by the kernel).
    fn add_lines(&mut self, lines: &[u8]) -> bool {
        let mut start = 0;
        for end in memchr::Memchr::new(b'\n', lines) {
            let line = &lines[start..end];
            start = end + 1;
            let Some((address, name)) = parse_line(line) else {
                continue;
            };
            if address == 0 && self.entries.is_empty() {
                return false;
            }
            let (Ok(start), Ok(len)) = (u32::try_from(self.text.len()), u32::try_from(name.len()))
            else {
                return true;
            };
            self.text.extend_from_slice(name);
            self.entries.push((address, start, len));
        }
        true
    }

    fn finish(mut self) -> Kallsyms {
        if self.entries.iter().all(|e| e.0 == 0) {
            return Kallsyms::default();
        }
        // Names are checked once, as a whole: a kernel's are ASCII.
        let Ok(text) = String::from_utf8(std::mem::take(&mut self.text)) else {
            return Kallsyms::default();
        };
        // Already in order for the kernel's own symbols (modules follow): a sorted run is cheap.
        self.entries.sort_by_key(|e| e.0);
        Kallsyms {
            addresses: self.entries.iter().map(|e| e.0).collect(),
            names: self.entries.iter().map(|e| (e.1, e.2)).collect(),
            text,
            own_only: None,
        }
    }
}

/// `(address, name)` of a text symbol line: `ADDRESS TYPE NAME[\t[MODULE]]`.
pub(super) fn parse_line(line: &[u8]) -> Option<(u64, &[u8])> {
    let space = memchr::memchr(b' ', line)?;
    let (address, rest) = (&line[..space], &line[space + 1..]);
    if !matches!(rest, [b't' | b'T' | b'w' | b'W', b' ', ..]) || address.len() > 16 {
        return None;
    }
    let address = address.iter().try_fold(0u64, |value, &digit| {
        let nibble = (digit as char).to_digit(16)?;
        Some(value << 4 | u64::from(nibble))
    })?;
    let name = &rest[2..];
    let name = memchr::memchr(b'\t', name).map_or(name, |tab| &name[..tab]);
    (!name.is_empty() && space > 0).then_some((address, name))
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

    /// Hands out a few bytes per read, as a pipe or a slow file would.
    struct Trickle<'a>(&'a [u8]);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(out.len()).min(7);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn lines_cut_across_reads_and_a_last_line_without_newline_are_read() {
        let k = Kallsyms::from_reader(Trickle(SAMPLE.trim_end().as_bytes()));
        assert_eq!(k.lookup(0xffffffff81000104), Some("helper"));
        assert_eq!(k.lookup(0xffffffff81000300), Some("do_work"));
        assert_eq!(k.lookup(0xffffffffc0001010), Some("ext4_thing"));
        assert_eq!(k.addresses.len(), 4);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let k = Kallsyms::parse(" T no_address\nzz T bad_hex\nffffffff81000000 T\nffffffff81000000 T \n11112222333344445 T too_long\nffffffff81000010 t ok\n");
        assert_eq!(k.addresses, [0xffffffff81000010]);
        assert_eq!(k.lookup(0xffffffff81000010), Some("ok"));
    }

    #[test]
    fn hidden_addresses_give_an_empty_table() {
        let k = Kallsyms::parse("0000000000000000 T _stext\n0000000000000000 T do_work\n");
        assert_eq!(k.lookup(0), None);
        assert_eq!(k.lookup(0x1234), None);
    }
}
