//! A sorted table of function symbols from `.symtab` and `.dynsym`, for addresses that DWARF does
//! not cover (stripped binaries, hand-written assembly, libraries without debug info).

use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionIndex, SymbolKind};

/// One function symbol: the SVMA range `[start, end)` and its raw (mangled) name.
#[derive(Clone, Copy, Debug)]
struct Symbol<'data> {
    start: u64,
    end: u64,
    /// Lower is better among symbols at the same address: sized before unsized, then global
    /// before weak before local (then fewer leading underscores, as perf chooses).
    rank: u8,
    name: &'data [u8],
}

/// Function symbols sorted by start address, one per address.
#[derive(Debug, Default)]
pub(crate) struct SymbolTable<'data> {
    symbols: Vec<Symbol<'data>>,
}

/// How many earlier symbols a lookup checks when the nearest one ends before the address (a large
/// symbol can contain a smaller one, such as a local label with a size).
const NESTED_LOOKBACK: usize = 4;

/// Ranks from this value up mark symbols without an ELF size.
const UNSIZED_RANK: u8 = 3;

impl<'data> SymbolTable<'data> {
    /// Builds the table from the `.symtab` of the first object that has one, plus the `.dynsym` of
    /// every object. Symbols without a size get one: up to the next symbol or their section's end.
    pub(crate) fn build(objects: &[&object::File<'data>]) -> Self {
        let mut symbols = Vec::new();
        if let Some(obj) = objects.iter().find(|o| o.symbols().next().is_some()) {
            collect(obj, obj.symbols(), &mut symbols);
        }
        for obj in objects {
            collect(obj, obj.dynamic_symbols(), &mut symbols);
        }
        symbols.sort_unstable_by_key(|s| (s.start, s.rank, leading_underscores(s.name)));
        symbols.dedup_by_key(|s| s.start);
        for i in 0..symbols.len() {
            if symbols[i].rank >= UNSIZED_RANK {
                // `end` holds the section's end: stop at the next symbol if it comes first.
                let next = symbols.get(i + 1).map_or(u64::MAX, |n| n.start);
                symbols[i].end = symbols[i].end.min(next);
            }
        }
        SymbolTable { symbols }
    }

    /// The raw name of the function symbol containing `svma`.
    ///
    /// An address in no symbol, one byte before a symbol's start, is taken as that symbol's: the
    /// return address of a signal handler points at the first byte of the signal trampoline
    /// (glibc's `__restore_rt`), so its lookup address `ra - 1` lands on the padding byte that
    /// glibc puts before it for exactly this reason (its CFI covers that byte).
    pub(crate) fn lookup(&self, svma: u64) -> Option<&'data [u8]> {
        let after = self.symbols.partition_point(|s| s.start <= svma);
        self.symbols[..after]
            .iter()
            .rev()
            .take(NESTED_LOOKBACK)
            .find(|s| svma < s.end)
            .or_else(|| {
                self.symbols
                    .get(after)
                    .filter(|next| next.start == svma.wrapping_add(1))
            })
            .map(|s| s.name)
    }
}

fn leading_underscores(name: &[u8]) -> usize {
    name.iter().take_while(|&&b| b == b'_').count()
}

/// Appends the function symbols of `iter` to `out`.
fn collect<'data, 'file>(
    obj: &'file object::File<'data>,
    iter: object::read::SymbolIterator<'data, 'file>,
    out: &mut Vec<Symbol<'data>>,
) {
    for sym in iter {
        let Some(section) = sym.section_index() else {
            continue;
        };
        let Some(section_end) = executable_section_end(obj, section) else {
            continue;
        };
        let accepted_kind = matches!(sym.kind(), SymbolKind::Text | SymbolKind::Unknown);
        let Ok(name) = sym.name_bytes() else { continue };
        if !accepted_kind || name.is_empty() || name.starts_with(b"$") || sym.address() == 0 {
            continue;
        }
        let start = sym.address();
        let sized = sym.size() > 0;
        let binding = if sym.is_weak() {
            1
        } else if sym.is_global() {
            0
        } else {
            2
        };
        out.push(Symbol {
            start,
            // Unsized: stash the section's end, narrowed to the next symbol later.
            end: if sized {
                start.saturating_add(sym.size())
            } else {
                section_end
            },
            rank: if sized {
                binding
            } else {
                UNSIZED_RANK + binding
            },
            name,
        });
    }
}

/// The end address of section `index` if it holds code (`SHF_EXECINSTR`; also true of the `NOBITS`
/// copies of code sections in separate debug files).
fn executable_section_end(obj: &object::File<'_>, index: SectionIndex) -> Option<u64> {
    let section = obj.section_by_index(index).ok()?;
    let executable = match section.flags() {
        SectionFlags::Elf { sh_flags, .. } => sh_flags.contains(object::elf::SHF_EXECINSTR),
        _ => section.kind() == object::SectionKind::Text,
    };
    executable.then(|| section.address().saturating_add(section.size()))
}
