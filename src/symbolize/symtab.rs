//! A sorted table of function symbols from `.symtab` and `.dynsym`, for addresses that DWARF does
//! not cover (stripped binaries, hand-written assembly, libraries without debug info).

use object::{
    Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, RelocationFlags, RelocationTarget,
    SectionFlags, SectionIndex, SymbolKind,
};

/// One function symbol: the SVMA range `[start, end)` and its raw (mangled) name.
#[derive(Clone, Copy, Debug)]
struct Symbol<'data> {
    start: u64,
    end: u64,
    /// Lower is better among symbols at the same address: sized before unsized, then global
    /// before weak before local (then fewer leading underscores, as perf chooses).
    rank: u8,
    name: &'data [u8],
    /// A PLT stub calling `name` (shown as `name@plt`).
    plt: bool,
}

/// What a lookup found: a symbol's raw name, and whether it is the PLT stub of that function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SymbolName<'data> {
    pub name: &'data [u8],
    pub plt: bool,
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
        if let Some(obj) = objects.first() {
            plt::collect(obj, &mut symbols);
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
    pub(crate) fn lookup(&self, svma: u64) -> Option<SymbolName<'data>> {
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
            .map(|s| SymbolName {
                name: s.name,
                plt: s.plt,
            })
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
            plt: false,
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

/// Symbols for PLT stubs, from the PLT relocations, as perf's `dso__synthesize_plt_symbols` makes
/// them: stripped or not, no symbol table names the stubs in `.plt`, `.plt.sec` and `.plt.got`.
mod plt {
    use super::*;

    /// Appends one sized symbol per PLT stub of `obj` whose function is known.
    pub(super) fn collect<'data>(obj: &object::File<'data>, out: &mut Vec<Symbol<'data>>) {
        let (Some(relocations), Some(dynsym)) =
            (obj.dynamic_relocations(), obj.dynamic_symbol_table())
        else {
            return;
        };
        // GOT slot → the function it is resolved to, in relocation order.
        let mut slots: Vec<(u64, &'data [u8], u32)> = Vec::new();
        for (offset, relocation) in relocations {
            let RelocationTarget::Symbol(index) = relocation.target() else {
                continue;
            };
            let r_type = match relocation.flags() {
                RelocationFlags::Elf { r_type } => r_type.0,
                _ => 0,
            };
            if let Some(name) = dynsym
                .symbol_by_index(index)
                .ok()
                .and_then(|s| s.name_bytes().ok())
                .filter(|n| !n.is_empty())
            {
                slots.push((offset, name, r_type));
            }
        }
        if slots.is_empty() {
            return;
        }
        // By GOT address: the order linkers give `.rela.plt` (and so the aarch64 stubs) too.
        slots.sort_by_key(|s| s.0);
        for section in obj.sections() {
            let Ok(name) = section.name() else { continue };
            if !matches!(name, ".plt" | ".plt.sec" | ".plt.got") {
                continue;
            }
            let Ok(data) = section.data() else { continue };
            match obj.architecture() {
                object::Architecture::X86_64 | object::Architecture::X86_64_X32 => {
                    // `.plt.got` stubs are 8 bytes unless IBT-enabled (`endbr64` first).
                    let ibt = data.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]);
                    let entry = if name == ".plt.got" && !ibt { 8 } else { 16 };
                    x86_64(section.address(), data, entry, &slots, out);
                }
                object::Architecture::Aarch64 if name == ".plt" => {
                    aarch64(section.address(), data.len() as u64, &slots, out);
                }
                _ => {}
            }
        }
    }

    /// x86_64 stubs jump through their GOT slot: `jmp *disp32(%rip)` (`ff 25`), after an
    /// `endbr64` and a `bnd` prefix in IBT builds. Each stub is named by the slot it reads; the
    /// `.plt` header and the lazy-binding halves of IBT stubs read no slot and get no name.
    fn x86_64<'data>(
        address: u64,
        data: &[u8],
        entry: usize,
        slots: &[(u64, &'data [u8], u32)],
        out: &mut Vec<Symbol<'data>>,
    ) {
        for (k, chunk) in data.chunks(entry).enumerate() {
            let Some(p) = chunk.windows(6).position(|w| w[0] == 0xff && w[1] == 0x25) else {
                continue;
            };
            let start = address + (k * entry) as u64;
            let disp = i32::from_le_bytes([chunk[p + 2], chunk[p + 3], chunk[p + 4], chunk[p + 5]]);
            let got = (start + p as u64 + 6).wrapping_add(disp as i64 as u64);
            if let Ok(i) = slots.binary_search_by_key(&got, |s| s.0) {
                out.push(stub(start, start + entry as u64, slots[i].1));
            }
        }
    }

    /// aarch64 `.plt`: a 32-byte header, then 16-byte stubs in `.rela.plt` order.
    fn aarch64<'data>(
        address: u64,
        size: u64,
        slots: &[(u64, &'data [u8], u32)],
        out: &mut Vec<Symbol<'data>>,
    ) {
        let jump_slots = slots
            .iter()
            .filter(|s| s.2 == object::elf::R_AARCH64_JUMP_SLOT.0);
        for (i, &(_, name, _)) in jump_slots.enumerate() {
            let start = address + 32 + 16 * i as u64;
            if start + 16 > address + size {
                break;
            }
            out.push(stub(start, start + 16, name));
        }
    }

    fn stub(start: u64, end: u64, name: &[u8]) -> Symbol<'_> {
        Symbol {
            start,
            end,
            rank: 0,
            name,
            plt: true,
        }
    }
}
