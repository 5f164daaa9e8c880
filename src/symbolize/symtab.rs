//! A sorted table of function symbols from `.symtab` and `.dynsym`, for addresses that DWARF does
//! not cover (stripped binaries, hand-written assembly, libraries without debug info).
//!
//! Kept small for binaries with huge symbol tables (`librustc_driver` has 165k symbols naming
//! 20 MB of strings): each symbol is an address range and the offset of its name in the file's
//! mapped string table, 24 bytes; the strings themselves are read only for the symbols a lookup
//! finds (and for aliases at one address, to choose among them).

use object::read::elf::{ElfFile, FileHeader, SectionHeader, Sym};
use object::read::StringTable;
use object::{
    Endianness, Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, RelocationFlags,
    RelocationTarget, SymbolIndex,
};

/// One function symbol: the SVMA range `[start, end)` and where its raw (mangled) name is.
#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: u64,
    end: u64,
    /// The name's offset in string table `table`.
    name: u32,
    /// Index into [`SymbolTable::strings`]; also the source's preference among symbols at one
    /// address (the `.symtab` first).
    table: u8,
    /// Lower is better among symbols at the same address: sized before unsized, then global
    /// before weak before local (then fewer leading underscores, as perf chooses).
    rank: u8,
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
    symbols: Vec<Symbol>,
    /// The string tables the symbols' names are in.
    strings: Vec<StringTable<'data>>,
}

/// How many earlier symbols a lookup checks when the nearest one ends before the address (a large
/// symbol can contain a smaller one, such as a local label with a size).
const NESTED_LOOKBACK: usize = 4;

/// Ranks from this value up mark symbols without an ELF size.
const UNSIZED_RANK: u8 = 3;

/// How many bytes of a string table aliases' names are read from between two calls of the
/// `release` callback of [`SymbolTable::build`].
const RELEASE_BYTES: u32 = 1 << 20;

/// How many ELF symbols are read between two calls of the `release` callback of
/// [`SymbolTable::build`] (384 KiB of 64-bit symbols).
const RELEASE_EVERY: usize = 16 * 1024;

impl<'data> SymbolTable<'data> {
    /// Builds the table from the `.symtab` of the first object that has one, plus the `.dynsym` of
    /// every object without a `.symtab` (as perf does: a `.symtab` holds the dynamic symbols too),
    /// plus the PLT stubs of the first object. Symbols without a size get one: up to the next
    /// symbol or their section's end. `release` is called after each part of the symbol tables
    /// read, so the caller may drop the mapped pages already read.
    pub(crate) fn build(objects: &[&object::File<'data>], release: &mut dyn FnMut()) -> Self {
        let mut table = SymbolTable::default();
        let mut symbols = Vec::new();
        let with_symtab = objects.iter().position(|o| o.symbols().next().is_some());
        if let Some(i) = with_symtab {
            table.collect(objects[i], false, &mut symbols, release);
        }
        for (i, obj) in objects.iter().enumerate() {
            if Some(i) != with_symtab {
                table.collect(obj, true, &mut symbols, release);
            }
        }
        if let Some(obj) = objects.first() {
            table.collect_plt(obj, &mut symbols);
        }
        symbols.sort_unstable_by_key(|s| (s.start, s.rank, s.table, s.name));
        table.symbols = table.one_per_address(symbols, release);
        let symbols = &mut table.symbols;
        for i in 0..symbols.len() {
            if symbols[i].rank >= UNSIZED_RANK {
                // `end` holds the section's end: stop at the next symbol if it comes first.
                let next = symbols.get(i + 1).map_or(u64::MAX, |n| n.start);
                symbols[i].end = symbols[i].end.min(next);
            }
        }
        release();
        table
    }

    /// The raw name of the function symbol containing `svma`.
    ///
    /// An address in no symbol, one byte before a symbol's start, is taken as that symbol's: the
    /// return address of a signal handler points at the first byte of the signal trampoline
    /// (glibc's `__restore_rt`), so its lookup address `ra - 1` lands on the padding byte that
    /// glibc puts before it for exactly this reason (its CFI covers that byte).
    pub(crate) fn lookup(&self, svma: u64) -> Option<SymbolName<'data>> {
        let after = self.symbols.partition_point(|s| s.start <= svma);
        let found = self.symbols[..after]
            .iter()
            .rev()
            .take(NESTED_LOOKBACK)
            .find(|s| svma < s.end)
            .or_else(|| {
                self.symbols
                    .get(after)
                    .filter(|next| next.start == svma.wrapping_add(1))
            })?;
        let name = self.name(found);
        (!name.is_empty()).then_some(SymbolName {
            name,
            plt: found.plt,
        })
    }

    /// The symbol's raw name (empty if its offset is outside its string table).
    fn name(&self, symbol: &Symbol) -> &'data [u8] {
        (self.strings.get(usize::from(symbol.table)))
            .and_then(|strings| strings.get(symbol.name).ok())
            .unwrap_or_default()
    }

    /// Keeps one symbol per address out of `symbols` (sorted by address, rank and table): the
    /// best ranked, and among equals of one table the one with the fewest leading underscores.
    /// Only such aliases have their names read, in string table order (see
    /// [`SymbolTable::alias_underscores`]).
    fn one_per_address(&self, mut symbols: Vec<Symbol>, release: &mut dyn FnMut()) -> Vec<Symbol> {
        let underscores = self.alias_underscores(&symbols, release);
        let mut kept = 0;
        let mut i = 0;
        while i < symbols.len() {
            let group = group_len(&symbols[i..]);
            let peers = peers_len(&symbols[i..i + group]);
            let best = (i..i + peers)
                .min_by_key(|&k| underscores.get(k).copied().unwrap_or(0))
                .unwrap_or(i);
            symbols[kept] = symbols[best];
            kept += 1;
            i += group;
        }
        symbols.truncate(kept);
        symbols.shrink_to_fit();
        symbols
    }

    /// Per symbol, the leading underscores of its name if it has peers (symbols at its address
    /// of the same rank and table), else 0; empty if no symbol has peers. Names are read in
    /// string table order, the mapped pages released every [`RELEASE_BYTES`] of it: read in
    /// address order, a few thousand aliases touch every page of an 18 MB string table.
    fn alias_underscores(&self, symbols: &[Symbol], release: &mut dyn FnMut()) -> Vec<u8> {
        let mut aliases: Vec<usize> = Vec::new();
        let mut i = 0;
        while i < symbols.len() {
            let group = group_len(&symbols[i..]);
            let peers = peers_len(&symbols[i..i + group]);
            if peers > 1 {
                aliases.extend(i..i + peers);
            }
            i += group;
        }
        if aliases.is_empty() {
            return Vec::new();
        }
        aliases.sort_unstable_by_key(|&k| (symbols[k].table, symbols[k].name));
        let mut underscores = vec![0u8; symbols.len()];
        let mut released_at = (0, 0);
        for &k in &aliases {
            let symbol = &symbols[k];
            if symbol.table != released_at.0 || symbol.name - released_at.1 >= RELEASE_BYTES {
                release();
                released_at = (symbol.table, symbol.name);
            }
            let count = leading_underscores(self.name(symbol));
            underscores[k] = u8::try_from(count).unwrap_or(u8::MAX);
        }
        underscores
    }

    /// Appends the function symbols of `obj`'s `.symtab` (or `.dynsym` if `dynamic`) to `out`,
    /// their string table to `self.strings`.
    fn collect(
        &mut self,
        obj: &object::File<'data>,
        dynamic: bool,
        out: &mut Vec<Symbol>,
        release: &mut dyn FnMut(),
    ) {
        let Ok(table) = u8::try_from(self.strings.len()) else {
            return;
        };
        let strings = match obj {
            object::File::Elf32(elf) => collect_elf(elf, dynamic, table, out, release),
            object::File::Elf64(elf) => collect_elf(elf, dynamic, table, out, release),
            _ => None,
        };
        self.strings.extend(strings);
    }

    /// Appends the PLT stubs of `obj` (see [`plt`]), named in its `.dynsym`'s string table.
    fn collect_plt(&mut self, obj: &object::File<'data>, out: &mut Vec<Symbol>) {
        let Ok(table) = u8::try_from(self.strings.len()) else {
            return;
        };
        let strings = match obj {
            object::File::Elf32(elf) => plt::collect(elf, table, out),
            object::File::Elf64(elf) => plt::collect(elf, table, out),
            _ => None,
        };
        self.strings.extend(strings);
    }
}

/// How many symbols from the first one share its address.
fn group_len(symbols: &[Symbol]) -> usize {
    let start = symbols.first().map(|s| s.start);
    symbols
        .iter()
        .take_while(|s| Some(s.start) == start)
        .count()
}

/// How many symbols of a group (sorted by rank and table) share the first one's rank and table.
fn peers_len(group: &[Symbol]) -> usize {
    let first = group.first().map(|s| (s.rank, s.table));
    group
        .iter()
        .take_while(|s| Some((s.rank, s.table)) == first)
        .count()
}

fn leading_underscores(name: &[u8]) -> usize {
    name.iter().take_while(|&&b| b == b'_').count()
}

/// Appends the function symbols of `elf`'s `.symtab` (or `.dynsym`) to `out`, naming string
/// table `table`, and returns that string table (`None` if the symbol table is empty).
fn collect_elf<'data, Elf: FileHeader<Endian = Endianness>>(
    elf: &ElfFile<'data, Elf>,
    dynamic: bool,
    table: u8,
    out: &mut Vec<Symbol>,
    release: &mut dyn FnMut(),
) -> Option<StringTable<'data>> {
    let endian = elf.endian();
    let symbols = if dynamic {
        elf.elf_dynamic_symbol_table()
    } else {
        elf.elf_symbol_table()
    };
    if symbols.is_empty() {
        return None;
    }
    let sections = elf.elf_section_table();
    // Only ARM code has mapping symbols (`$x`, `$d`) to skip: elsewhere no name is read here.
    let mapping_symbols = matches!(
        elf.elf_header().e_machine(endian),
        object::elf::EM_ARM | object::elf::EM_AARCH64
    );
    // Per section index: its end address if it holds code (`SHF_EXECINSTR`; also true of the
    // `NOBITS` copies of code sections in separate debug files).
    let code_ends: Vec<Option<u64>> = (sections.iter())
        .map(|s| {
            (s.sh_flags(endian).contains(object::elf::SHF_EXECINSTR))
                .then(|| (s.sh_addr(endian).into()).saturating_add(s.sh_size(endian).into()))
        })
        .collect();
    for (i, sym) in symbols.iter().enumerate() {
        if i % RELEASE_EVERY == RELEASE_EVERY - 1 {
            release();
        }
        let Ok(Some(section)) = symbols.symbol_section(endian, sym, SymbolIndex(i)) else {
            continue;
        };
        let Some(&Some(section_end)) = code_ends.get(section.0) else {
            continue;
        };
        let start: u64 = sym.st_value(endian).into();
        let name = sym.st_name(endian);
        let strings = mapping_symbols.then(|| symbols.strings());
        if start == 0 || name == 0 || !is_function::<Elf>(sym, strings, endian) {
            continue;
        }
        let size: u64 = sym.st_size(endian).into();
        let binding = match sym.st_bind() {
            object::elf::STB_WEAK => 1,
            object::elf::STB_LOCAL => 2,
            _ => 0,
        };
        out.push(Symbol {
            start,
            // Unsized: stash the section's end, narrowed to the next symbol later.
            end: if size > 0 {
                start.saturating_add(size)
            } else {
                section_end
            },
            name,
            table,
            rank: if size > 0 {
                binding
            } else {
                UNSIZED_RANK + binding
            },
            plt: false,
        });
    }
    Some(symbols.strings())
}

/// Whether `sym` may name a function: `STT_FUNC` and `STT_GNU_IFUNC` do; so may symbols of no or
/// unknown type, unless (checked only given the `strings` of an ARM file) they are mapping
/// symbols (`$x`, `$d`). Only those untyped ARM symbols have their name read.
fn is_function<Elf: FileHeader>(
    sym: &Elf::Sym,
    strings: Option<StringTable<'_>>,
    endian: Elf::Endian,
) -> bool {
    match sym.st_type() {
        object::elf::STT_FUNC | object::elf::STT_GNU_IFUNC => true,
        object::elf::STT_OBJECT
        | object::elf::STT_COMMON
        | object::elf::STT_SECTION
        | object::elf::STT_FILE
        | object::elf::STT_TLS => false,
        _ => strings.is_none_or(|strings| {
            sym.name(endian, strings)
                .is_ok_and(|n| !n.is_empty() && !n.starts_with(b"$"))
        }),
    }
}

/// Symbols for PLT stubs, from the PLT relocations, as perf's `dso__synthesize_plt_symbols` makes
/// them: stripped or not, no symbol table names the stubs in `.plt`, `.plt.sec` and `.plt.got`.
mod plt {
    use super::*;

    /// Appends one sized symbol per PLT stub of `elf` whose function is known, named in string
    /// table `table`, and returns that table (`.dynsym`'s strings).
    pub(super) fn collect<'data, Elf: FileHeader<Endian = Endianness>>(
        elf: &ElfFile<'data, Elf>,
        table: u8,
        out: &mut Vec<Symbol>,
    ) -> Option<StringTable<'data>> {
        let endian = elf.endian();
        let (Some(relocations), Some(dynsym)) =
            (elf.dynamic_relocations(), elf.dynamic_symbol_table())
        else {
            return None;
        };
        // GOT slot → the function it is resolved to (its name's offset), in relocation order.
        let mut slots: Vec<(u64, u32, u32)> = Vec::new();
        // GOT slot → the address of the IFUNC it is resolved by (`*ABS*+0x…@plt` in objdump).
        let mut ifunc_slots: Vec<(u64, u64, u32)> = Vec::new();
        for (offset, relocation) in relocations {
            let r_type = match relocation.flags() {
                RelocationFlags::Elf { r_type } => r_type.0,
                _ => 0,
            };
            let RelocationTarget::Symbol(index) = relocation.target() else {
                if is_irelative(elf.architecture(), r_type) {
                    ifunc_slots.push((offset, relocation.addend() as u64, r_type));
                }
                continue;
            };
            if let Some(name) = dynsym
                .symbol_by_index(index)
                .ok()
                .map(|s| s.elf_symbol().st_name(endian))
                .filter(|&n| n != 0)
            {
                slots.push((offset, name, r_type));
            }
        }
        name_ifunc_slots(elf, &dynsym, ifunc_slots, &mut slots);
        if slots.is_empty() {
            return None;
        }
        // By GOT address: the order linkers give `.rela.plt` (and so the aarch64 stubs) too.
        slots.sort_by_key(|s| s.0);
        let before = out.len();
        for section in elf.sections() {
            let Ok(name) = section.name() else { continue };
            if !matches!(name, ".plt" | ".plt.sec" | ".plt.got") {
                continue;
            }
            let Ok(data) = section.data() else { continue };
            match elf.architecture() {
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
        for stub in &mut out[before..] {
            stub.table = table;
        }
        Some(elf.elf_dynamic_symbol_table().strings())
    }

    /// Whether `r_type` sets a GOT slot to what an IFUNC resolver returns. A library calling its
    /// own IFUNCs (glibc's `qsort` calling `memcpy`) does it through such slots, with no symbol.
    fn is_irelative(arch: object::Architecture, r_type: u32) -> bool {
        match arch {
            object::Architecture::X86_64 | object::Architecture::X86_64_X32 => {
                r_type == object::elf::R_X86_64_IRELATIVE.0
            }
            object::Architecture::Aarch64 => r_type == object::elf::R_AARCH64_IRELATIVE.0,
            _ => false,
        }
    }

    /// Names each IFUNC slot after the dynamic symbol at its resolver's address (`memmove` for
    /// glibc's `*ABS*+0x9f550`), global before weak, and adds it to `slots`. perf 6.1 names these
    /// stubs just `@plt`; a slot whose address no symbol has is left unnamed, as before.
    fn name_ifunc_slots<'data, Elf: FileHeader<Endian = Endianness>>(
        elf: &ElfFile<'data, Elf>,
        dynsym: &object::read::elf::ElfSymbolTable<'data, '_, Elf>,
        mut ifunc_slots: Vec<(u64, u64, u32)>,
        slots: &mut Vec<(u64, u32, u32)>,
    ) {
        if ifunc_slots.is_empty() {
            return;
        }
        let endian = elf.endian();
        ifunc_slots.sort_unstable_by_key(|s| s.1);
        // Resolver address → (is weak, name offset) of the best symbol found there.
        let mut names: Vec<Option<(bool, u32)>> = vec![None; ifunc_slots.len()];
        for symbol in dynsym.symbols() {
            let sym = symbol.elf_symbol();
            let name = sym.st_name(endian);
            let address = symbol.address();
            let first = ifunc_slots.partition_point(|s| s.1 < address);
            if name == 0 || ifunc_slots.get(first).is_none_or(|s| s.1 != address) {
                continue;
            }
            let candidate = (sym.st_bind() == object::elf::STB_WEAK, name);
            let best = &mut names[first];
            if best.is_none_or(|b| !candidate.0 && b.0) {
                *best = Some(candidate);
            }
        }
        let mut first = 0;
        for (i, &(offset, address, r_type)) in ifunc_slots.iter().enumerate() {
            if i > 0 && address != ifunc_slots[i - 1].1 {
                first = i;
            }
            if let Some((_, name)) = names[first] {
                slots.push((offset, name, r_type));
            }
        }
    }

    /// x86_64 stubs jump through their GOT slot: `jmp *disp32(%rip)` (`ff 25`), after an
    /// `endbr64` and a `bnd` prefix in IBT builds. Each stub is named by the slot it reads; the
    /// `.plt` header and the lazy-binding halves of IBT stubs read no slot and get no name.
    fn x86_64(
        address: u64,
        data: &[u8],
        entry: usize,
        slots: &[(u64, u32, u32)],
        out: &mut Vec<Symbol>,
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
    fn aarch64(address: u64, size: u64, slots: &[(u64, u32, u32)], out: &mut Vec<Symbol>) {
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

    /// A stub calling the function named at `name`; its string table is set by the caller.
    fn stub(start: u64, end: u64, name: u32) -> Symbol {
        Symbol {
            start,
            end,
            name,
            table: 0,
            rank: 0,
            plt: true,
        }
    }
}
