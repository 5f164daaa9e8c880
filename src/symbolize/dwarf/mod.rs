//! Function names and inline chains from DWARF, parsing compilation units only when an address
//! lands in them.
//!
//! A flame graph needs names, not source lines, and a profile touches few of a library's units:
//! glibc's debug file has about 4000, each with its own abbreviation table. Building an
//! `addr2line::Context` parses every unit's abbreviations and line-program header up front (some
//! 25 MB for glibc alone, the largest part of the profiler's peak memory). Here the only eager
//! work is a sorted table of unit address ranges, read from `.debug_aranges` (or, for units it
//! does not cover, from the unit's root entry, dropped right after). A unit is parsed on its
//! first lookup, with a table of its functions' ranges; a function's inlined calls are read on
//! the first lookup inside it. Line tables are never read.
//!
//! Naming: the first `DW_AT_linkage_name` on the chain of `DW_AT_abstract_origin` /
//! `DW_AT_specification` links from the entry (across units if need be), which demangles to the
//! qualified name; else the first `DW_AT_name` on that chain (addr2line stops at the first name
//! of either kind, so a C++ template's inline frames would lose their namespace).

use std::sync::Arc;

mod scopes;

use gimli::{AttributeValue, DebugInfoOffset, DwLang, Reader, ReaderOffset, Section, UnitOffset};
use scopes::{ScopeName, Scopes};

/// How many `DW_AT_abstract_origin` / `DW_AT_specification` links a name may follow.
const MAX_NAME_LINKS: usize = 16;

/// One name found at an address: the function's raw (mangled) name and its unit's language.
#[derive(Clone, Debug)]
pub(crate) struct FrameName<R> {
    pub name: R,
    pub language: Option<DwLang>,
    /// For a plain `DW_AT_name`, the names of the namespaces, classes and functions around its
    /// entry, outermost first (`std`, `vector<int>`): the qualification a linkage name gives.
    pub scope: Vec<String>,
}

/// Address ranges mapped to values, for lookups of the entries containing an address.
struct RangeTable<T> {
    /// Sorted by `begin`.
    entries: Vec<(u64, u64, T)>,
    /// `max_end[i]`: the largest `end` among `entries[..=i]`, to stop backward scans early.
    max_end: Vec<u64>,
}

impl<T: Copy> RangeTable<T> {
    fn new(mut entries: Vec<(u64, u64, T)>) -> Self {
        // Empty ranges and ranges at address 0 (functions the linker dropped) match nothing real:
        // an ELF file's first page holds its headers, never code.
        entries.retain(|&(begin, end, _)| begin < end && begin != 0);
        // Equal starts: the longer (outer) range first, so a backward scan meets the inner one
        // first.
        entries.sort_by_key(|&(begin, end, _)| (begin, std::cmp::Reverse(end)));
        entries.shrink_to_fit();
        let mut max_end = Vec::with_capacity(entries.len());
        let mut running = 0;
        for &(_, end, _) in &entries {
            running = running.max(end);
            max_end.push(running);
        }
        RangeTable { entries, max_end }
    }

    /// The values of the ranges containing `address`, the latest-starting (innermost) first.
    fn find(&self, address: u64) -> impl Iterator<Item = T> + '_ {
        let after = self
            .entries
            .partition_point(|&(begin, _, _)| begin <= address);
        (0..after)
            .rev()
            .take_while(move |&i| self.max_end[i] > address)
            .filter(move |&i| self.entries[i].1 > address)
            .map(move |i| self.entries[i].2)
    }
}

/// A function (`DW_TAG_subprogram` with code) of a parsed unit.
struct Function<R: Reader> {
    offset: UnitOffset<R::Offset>,
    /// The `DW_TAG_inlined_subroutine` entries below it, read on the first lookup inside it.
    inlined: Option<Vec<Inlined<R>>>,
}

/// One range of one inlined call.
struct Inlined<R: Reader> {
    begin: u64,
    end: u64,
    /// How many inlined calls enclose this one (0: inlined straight into the function).
    depth: u32,
    offset: UnitOffset<R::Offset>,
}

/// A unit parsed on demand.
struct ParsedUnit<R: Reader> {
    unit: gimli::Unit<R>,
    language: Option<DwLang>,
    /// Built on the first address lookup in this unit (not for units only visited for names).
    functions: Option<(Vec<Function<R>>, RangeTable<u32>)>,
    /// The scopes around entries, for plain names that need qualifying.
    scopes: Scopes<R>,
}

/// The units of one `.debug_info` section (the main file's, or a dwz supplementary file's).
struct Units<R: Reader> {
    dwarf: Arc<gimli::Dwarf<R>>,
    /// Each unit's header offset, ascending.
    offsets: Vec<DebugInfoOffset<R::Offset>>,
    /// `None`: not parsed yet (or let go); `Some(None)`: unusable.
    parsed: Vec<Option<Option<Box<ParsedUnit<R>>>>>,
    /// The parsed units, least recently used first: at most [`MAX_PARSED_UNITS`] are kept.
    recent: std::collections::VecDeque<usize>,
    /// A `.debug_info` decompressed as it is read: then `offsets` holds the units met so far, in
    /// the order they were met.
    lazy: Option<Lazy<R>>,
}

/// Gives a lazily decompressed `.debug_info` with at least its first `end` bytes (fewer only
/// when the section has fewer), see `inflate.rs`.
pub(crate) type Grow<R> = Box<dyn FnMut(u64) -> R + Send>;

/// What is known of a lazily decompressed `.debug_info`.
struct Lazy<R: Reader> {
    grow: Grow<R>,
    /// Every unit starting below this offset is known (found by walking the unit headers).
    walked: u64,
    /// `(offset, index)` of every known unit, by offset.
    order: Vec<(u64, usize)>,
    /// Units `.debug_aranges` does not list were looked for (the whole section was read).
    indexed: bool,
}

/// Parsed units kept per section: a unit's abbreviations, functions and scopes take tens of KB
/// to MBs (C++), and a big program's samples touch hundreds of units. Addresses are named in
/// order at the end of a recording, so a unit let go is rarely needed again.
const MAX_PARSED_UNITS: usize = 64;

/// How far the scans over a whole section go between two calls of their `release` callback.
/// The kernel (6.18, on filesystems with large folios) maps the whole folio of a page read
/// through a file mapping, up to 2 MiB: reading the header of each of RocksDB's 600 units
/// mapped 200 MiB of its 300 MiB of DWARF before anything was given back.
const RELEASE_BYTES: u64 = 8 << 20;

/// Calls `release` each time `offset` has moved [`RELEASE_BYTES`] past `*last`.
fn release_every(offset: u64, last: &mut u64, release: &mut dyn FnMut()) {
    if offset.abs_diff(*last) >= RELEASE_BYTES {
        *last = offset;
        release();
    }
}

/// Per unit: its offset in `.debug_info`, and the offset of its abbreviation table.
type UnitHeaders<O> = (Vec<DebugInfoOffset<O>>, Vec<gimli::DebugAbbrevOffset<O>>);

/// The offset of each unit of `dwarf` and of its abbreviation table, calling `release` as it
/// goes (a unit header is read from each unit: from all over a big section).
fn read_headers<R: Reader>(
    dwarf: &gimli::Dwarf<R>,
    release: &mut dyn FnMut(),
) -> UnitHeaders<R::Offset> {
    let (mut offsets, mut tables) = (Vec::new(), Vec::new());
    let mut headers = dwarf.units();
    let mut released = 0;
    while let Ok(Some(header)) = headers.next() {
        if let Some(offset) = header.debug_info_offset() {
            release_every(offset.0.into_u64(), &mut released, release);
            offsets.push(offset);
            tables.push(header.debug_abbrev_offset());
        }
    }
    (offsets, tables)
}

impl<R: Reader> Units<R> {
    fn new(dwarf: Arc<gimli::Dwarf<R>>, offsets: Vec<DebugInfoOffset<R::Offset>>) -> Self {
        let parsed = (0..offsets.len()).map(|_| None).collect();
        Units {
            dwarf,
            offsets,
            parsed,
            recent: std::collections::VecDeque::new(),
            lazy: None,
        }
    }

    /// The units of a `.debug_info` that `grow` decompresses as it is read: none known yet.
    fn lazy(dwarf: gimli::Dwarf<R>, grow: Grow<R>) -> Self {
        let mut units = Self::new(Arc::new(dwarf), Vec::new());
        units.lazy = Some(Lazy {
            grow,
            walked: 0,
            order: Vec::new(),
            indexed: false,
        });
        units
    }

    fn section_len(&self) -> u64 {
        self.dwarf.debug_info.reader().len().into_u64()
    }

    /// Makes the first `end` bytes of `.debug_info` readable (decompressing them if need be);
    /// false when the section is shorter.
    fn ensure(&mut self, end: u64) -> bool {
        if self.section_len() >= end {
            return true;
        }
        let Some(lazy) = &mut self.lazy else {
            return false;
        };
        let section = (lazy.grow)(end);
        // Parsed units hold their own views of the section: only this handle is replaced.
        let Some(dwarf) = Arc::get_mut(&mut self.dwarf) else {
            return false;
        };
        dwarf.debug_info = gimli::DebugInfo::from(section);
        self.section_len() >= end
    }

    /// The end of the unit whose header is at `offset`, the whole unit made readable.
    fn unit_end(&mut self, offset: u64) -> Option<u64> {
        // The longest initial length and version fields; a last unit may end sooner.
        self.ensure(offset.saturating_add(12));
        let mut reader = self.dwarf.debug_info.reader().clone();
        reader.skip(R::Offset::from_u64(offset).ok()?).ok()?;
        let (length, format) = reader.read_initial_length().ok()?;
        let end = offset
            .checked_add(u64::from(format.initial_length_size()))?
            .checked_add(length.into_u64())?;
        self.ensure(end).then_some(end)
    }

    /// The index of the unit at `offset`, added to the known units if new (lazy sections only).
    fn add_unit(&mut self, offset: u64) -> Option<usize> {
        let lazy = self.lazy.as_mut()?;
        match lazy.order.binary_search_by_key(&offset, |&(o, _)| o) {
            Ok(i) => Some(lazy.order[i].1),
            Err(i) => {
                let index = self.offsets.len();
                self.offsets
                    .push(DebugInfoOffset(R::Offset::from_u64(offset).ok()?));
                self.parsed.push(None);
                lazy.order.insert(i, (offset, index));
                Some(index)
            }
        }
    }

    /// Walks the unit headers of a lazy section until past `target`, adding the units met.
    fn discover(&mut self, target: u64) {
        while let Some(at) = self.lazy.as_ref().map(|lazy| lazy.walked) {
            // `u64::MAX`: the walk is over.
            if at > target || at == u64::MAX {
                return;
            }
            let end = self.unit_end(at);
            let known = end.and_then(|_| self.add_unit(at));
            if let Some(lazy) = &mut self.lazy {
                // The end of the section, or a header that cannot be read: nothing further.
                lazy.walked = match (end, known) {
                    (Some(end), Some(_)) => end,
                    _ => u64::MAX,
                };
            }
        }
    }

    /// The units of `dwarf`, each abbreviation table that several units share parsed once, up
    /// front: Rust binaries have thousands of units sharing a few tables. (What gimli's
    /// `populate_abbreviations_cache` does, done here so that `release` is called while the
    /// headers are read.)
    fn with_shared_abbreviations(mut dwarf: gimli::Dwarf<R>, release: &mut dyn FnMut()) -> Self {
        let (offsets, mut tables) = read_headers(&dwarf, release);
        tables.sort_unstable_by_key(|offset| offset.0.into_u64());
        let mut shared: Vec<_> = (tables.windows(2))
            .filter(|pair| pair[0] == pair[1])
            .map(|pair| pair[0])
            .collect();
        shared.dedup();
        for offset in shared {
            if let Ok(table) = dwarf.debug_abbrev.abbreviations(offset) {
                dwarf.abbreviations_cache.set::<R>(offset, Arc::new(table));
            }
        }
        Self::new(Arc::new(dwarf), offsets)
    }

    /// Marks unit `index` as the most recently used, letting the least recently used parsed
    /// unit go when there are too many.
    fn touch(&mut self, index: usize) {
        if index >= self.parsed.len() || self.recent.back() == Some(&index) {
            return;
        }
        if let Some(i) = self.recent.iter().position(|&u| u == index) {
            self.recent.remove(i);
        } else if self.recent.len() >= MAX_PARSED_UNITS {
            if let Some(oldest) = self.recent.pop_front() {
                self.parsed[oldest] = None;
            }
        }
        self.recent.push_back(index);
    }

    /// The index of the unit whose entries include `offset`.
    fn containing(&mut self, offset: DebugInfoOffset<R::Offset>) -> Option<usize> {
        let offset = offset.0.into_u64();
        if self.lazy.is_none() {
            return (self.offsets)
                .partition_point(|o| o.0.into_u64() <= offset)
                .checked_sub(1);
        }
        // Units between known ones are found only by walking the headers up to there.
        self.discover(offset);
        let order = &self.lazy.as_ref()?.order;
        let i = order
            .partition_point(|&(o, _)| o <= offset)
            .checked_sub(1)?;
        Some(order[i].1)
    }

    fn index_of(&self, offset: DebugInfoOffset<R::Offset>) -> Option<usize> {
        match &self.lazy {
            None => self.offsets.binary_search_by_key(&offset.0, |o| o.0).ok(),
            Some(lazy) => {
                let offset = offset.0.into_u64();
                let i = lazy.order.binary_search_by_key(&offset, |&(o, _)| o).ok()?;
                Some(lazy.order[i].1)
            }
        }
    }

    /// Unit `index`, parsed on first use, with the sections it reads.
    fn get(&mut self, index: usize) -> Option<(&gimli::Dwarf<R>, &mut ParsedUnit<R>)> {
        self.touch(index);
        if self.lazy.is_some() && self.parsed.get(index).is_some_and(Option::is_none) {
            self.unit_end(self.offsets[index].0.into_u64());
        }
        let slot = self.parsed.get_mut(index)?;
        let dwarf = &*self.dwarf;
        if slot.is_none() {
            let unit = dwarf
                .unit_header(self.offsets[index])
                .and_then(|header| dwarf.unit(header))
                .ok();
            *slot = Some(unit.map(|mut unit| {
                // Names never read the line program: its header (a file table of hundreds of
                // entries in Rust units) would stay for as long as the unit.
                unit.line_program = None;
                let language = root_language(&unit);
                Box::new(ParsedUnit {
                    unit,
                    language,
                    functions: None,
                    scopes: Scopes::default(),
                })
            }));
        }
        Some((dwarf, slot.as_mut()?.as_deref_mut()?))
    }
}

/// Names by address for one file's DWARF.
pub(crate) struct DwarfNames<R: Reader> {
    units: Units<R>,
    /// The dwz supplementary file's units, for names that point there.
    sup: Option<Units<R>>,
    /// Unit address ranges → unit index.
    ranges: RangeTable<u32>,
}

impl<R: Reader> DwarfNames<R> {
    /// Indexes the units of `dwarf` by address. Cheap: parses `.debug_aranges` and, for units it
    /// does not list, each unit's root entry. `release` gives back the mapped pages read so far;
    /// it is called every few MB of a section (see [`RELEASE_BYTES`]).
    pub(crate) fn new(dwarf: gimli::Dwarf<R>, release: &mut dyn FnMut()) -> Self {
        let sup = Self::sup_units(&dwarf, release);
        let mut units = Units::with_shared_abbreviations(dwarf, release);
        let mut ranges = Vec::new();
        let covered = arange_ranges(&mut units, &mut ranges, release);
        root_ranges(&units, &covered, &mut ranges, release);
        DwarfNames {
            units,
            sup,
            ranges: RangeTable::new(ranges),
        }
    }

    /// [`DwarfNames::new`] for a `.debug_info` that `grow` decompresses as lookups read it: only
    /// the units `.debug_aranges` lists are known at first, each decompressed when an address
    /// lands in it. Units it does not list are looked for on the first address that no listed
    /// unit covers and the caller expects DWARF for ([`DwarfNames::index_everything`]).
    pub(crate) fn new_lazy(
        dwarf: gimli::Dwarf<R>,
        grow: Grow<R>,
        release: &mut dyn FnMut(),
    ) -> Self {
        let sup = Self::sup_units(&dwarf, release);
        let mut units = Units::lazy(dwarf, grow);
        let mut ranges = Vec::new();
        arange_ranges(&mut units, &mut ranges, release);
        DwarfNames {
            units,
            sup,
            ranges: RangeTable::new(ranges),
        }
    }

    /// The dwz supplementary file's units (the main file keeps its link to it: its strings may
    /// live there).
    fn sup_units(dwarf: &gimli::Dwarf<R>, release: &mut dyn FnMut()) -> Option<Units<R>> {
        (dwarf.sup.clone()).map(|sup| {
            let (offsets, _) = read_headers(&sup, release);
            Units::new(sup, offsets)
        })
    }

    /// Whether some unit's ranges hold `address` (a unit of a lazy section that
    /// `.debug_aranges` does not list is not known before [`DwarfNames::index_everything`]).
    pub(crate) fn covers(&self, address: u64) -> bool {
        self.ranges.find(address).next().is_some()
    }

    /// For a lazy section, reads it whole and indexes the units `.debug_aranges` does not list,
    /// once; returns whether that was done now (lookups may then find more).
    pub(crate) fn index_everything(&mut self, release: &mut dyn FnMut()) -> bool {
        let Some(lazy) = &mut self.units.lazy else {
            return false;
        };
        if lazy.indexed {
            return false;
        }
        lazy.indexed = true;
        self.units.discover(u64::MAX);
        let mut covered = vec![false; self.units.offsets.len()];
        for &(_, _, index) in &self.ranges.entries {
            covered[index as usize] = true;
        }
        let mut ranges = std::mem::take(&mut self.ranges.entries);
        root_ranges(&self.units, &covered, &mut ranges, release);
        self.ranges = RangeTable::new(ranges);
        true
    }

    /// Pushes the names at `address` onto `out`, outermost first: the function containing it
    /// (if `outermost`: a caller that names it from the symbol table does not need it), then
    /// the functions inlined there, the innermost last. Returns false, pushing nothing, if no
    /// unit has a function there.
    pub(crate) fn frames(
        &mut self,
        address: u64,
        outermost: bool,
        out: &mut Vec<FrameName<R>>,
    ) -> bool {
        let candidates: Vec<u32> = self.ranges.find(address).collect();
        for index in candidates {
            let Some((function, language)) = self.function_at(index as usize, address) else {
                continue;
            };
            let first = out.len();
            if outermost {
                if let Some(name) = self.name(index as usize, function, language) {
                    out.push(name);
                }
            }
            let chain = self.inlined_at(index as usize, function, address);
            for offset in chain {
                if let Some(name) = self.name(index as usize, offset, language) {
                    out.push(name);
                }
            }
            if out.len() > first || !outermost {
                return true;
            }
        }
        false
    }

    /// The innermost function of unit `index` containing `address`, and the unit's language.
    fn function_at(
        &mut self,
        index: usize,
        address: u64,
    ) -> Option<(UnitOffset<R::Offset>, Option<DwLang>)> {
        let (dwarf, parsed) = self.units.get(index)?;
        let (functions, table) = parsed
            .functions
            .get_or_insert_with(|| read_functions(dwarf, &parsed.unit));
        let found = table.find(address).next()?;
        Some((functions[found as usize].offset, parsed.language))
    }

    /// The inlined calls at `address` in the function at `function` of unit `index`, outermost
    /// first.
    fn inlined_at(
        &mut self,
        index: usize,
        function: UnitOffset<R::Offset>,
        address: u64,
    ) -> Vec<UnitOffset<R::Offset>> {
        // Through `get`: naming the function may have let this unit go (parsed again then).
        let Some((dwarf, parsed)) = self.units.get(index) else {
            return Vec::new();
        };
        let (functions, _) = parsed
            .functions
            .get_or_insert_with(|| read_functions(dwarf, &parsed.unit));
        let Ok(i) = functions.binary_search_by_key(&function.0, |f| f.offset.0) else {
            return Vec::new();
        };
        let inlined = functions[i]
            .inlined
            .get_or_insert_with(|| read_inlined(dwarf, &parsed.unit, function));
        let mut chain: Vec<(u32, UnitOffset<R::Offset>)> = inlined
            .iter()
            .filter(|call| call.begin <= address && address < call.end)
            .map(|call| (call.depth, call.offset))
            .collect();
        chain.sort_by_key(|&(depth, _)| depth);
        chain.dedup_by_key(|&mut (depth, _)| depth);
        // Depths must run 0, 1, 2...: a gap means broken nesting; keep the consistent part.
        let consistent = chain
            .iter()
            .enumerate()
            .take_while(|(i, (depth, _))| *depth as usize == *i)
            .count();
        chain.truncate(consistent);
        chain.into_iter().map(|(_, offset)| offset).collect()
    }

    /// The name of the entry at `offset` in unit `index`, following abstract origins and
    /// specifications (into other units and the supplementary file if need be).
    fn name(
        &mut self,
        index: usize,
        offset: UnitOffset<R::Offset>,
        language: Option<DwLang>,
    ) -> Option<FrameName<R>> {
        let (mut in_sup, mut index, mut offset) = (false, index, offset);
        // The first plain name met, used if no entry on the chain has a linkage name.
        let mut plain = None;
        // Where the chain ends: its last entry sits in the scopes that qualify a plain name.
        let mut last = (false, index, offset);
        let found =
            |this: &mut Self, name: Option<R>, last: (bool, usize, UnitOffset<R::Offset>)| {
                let name = name?;
                let scope = this.scope_of(last);
                Some(FrameName {
                    name,
                    language,
                    scope,
                })
            };
        for _ in 0..MAX_NAME_LINKS {
            let units = if in_sup {
                self.sup.as_mut()?
            } else {
                &mut self.units
            };
            let Some((dwarf, parsed)) = units.get(index) else {
                return found(self, plain, last);
            };
            let Some(entry) = read_name(dwarf, &parsed.unit, offset) else {
                return found(self, plain, last);
            };
            if let Some(linkage) = entry.linkage {
                return Some(FrameName {
                    name: linkage,
                    language,
                    scope: Vec::new(),
                });
            }
            last = (in_sup, index, offset);
            if plain.is_none() {
                plain = entry.name;
            }
            let Some(next) = entry.next else {
                return found(self, plain, last);
            };
            (in_sup, index, offset) = match next {
                AttributeValue::UnitRef(next) => (in_sup, index, next),
                AttributeValue::DebugInfoRef(next) => {
                    let units = if in_sup {
                        self.sup.as_mut()
                    } else {
                        Some(&mut self.units)
                    };
                    match units.and_then(|units| units.locate(next)) {
                        Some((target, offset)) => (in_sup, target, offset),
                        None => return found(self, plain, last),
                    }
                }
                AttributeValue::DebugInfoRefSup(next) => {
                    match self.sup.as_mut().and_then(|sup| sup.locate(next)) {
                        Some((target, offset)) => (true, target, offset),
                        None => return found(self, plain, last),
                    }
                }
                _ => return found(self, plain, last),
            };
        }
        found(self, plain, last)
    }

    /// The names of the scopes around the entry at `offset` of unit `index` (of the
    /// supplementary file if `in_sup`), outermost first.
    fn scope_of(
        &mut self,
        (in_sup, index, offset): (bool, usize, UnitOffset<R::Offset>),
    ) -> Vec<String> {
        let units = if in_sup {
            match self.sup.as_mut() {
                Some(sup) => sup,
                None => return Vec::new(),
            }
        } else {
            &mut self.units
        };
        let Some((dwarf, parsed)) = units.get(index) else {
            return Vec::new();
        };
        let ParsedUnit { unit, scopes, .. } = parsed;
        let scopes = scopes.around(dwarf, unit, offset);
        scopes.iter().map(ScopeName::text).collect()
    }
}

/// Pushes the address ranges `.debug_aranges` gives each unit onto `ranges`; returns, per unit
/// index, whether it had any.
fn arange_ranges<R: Reader>(
    units: &mut Units<R>,
    ranges: &mut Vec<(u64, u64, u32)>,
    release: &mut dyn FnMut(),
) -> Vec<bool> {
    let mut covered = vec![false; units.offsets.len()];
    let mut headers = units.dwarf.debug_aranges.headers();
    let mut released = 0;
    while let Ok(Some(header)) = headers.next() {
        release_every(header.offset().0.into_u64(), &mut released, release);
        let offset = header.debug_info_offset();
        let index = match units.lazy {
            Some(_) => units.add_unit(offset.0.into_u64()),
            None => units.index_of(offset),
        };
        let Some(index) = index else {
            continue;
        };
        if covered.len() <= index {
            covered.resize(index + 1, false);
        }
        let mut entries = header.entries();
        loop {
            match entries.next() {
                Ok(Some(entry)) => {
                    let range = entry.range();
                    if range.begin != 0 && range.begin < range.end {
                        ranges.push((range.begin, range.end, index as u32));
                        covered[index] = true;
                    }
                }
                Ok(None) => break,
                // A bad entry (an address overflow) is skipped; gimli ends the set after
                // errors it cannot step over.
                Err(_) => continue,
            }
        }
    }
    covered
}

/// Pushes the ranges of the units not `covered` (by `.debug_aranges`) from their root entry.
fn root_ranges<R: Reader>(
    units: &Units<R>,
    covered: &[bool],
    ranges: &mut Vec<(u64, u64, u32)>,
    release: &mut dyn FnMut(),
) {
    for index in (0..units.offsets.len()).filter(|&i| !covered.get(i).copied().unwrap_or(false)) {
        // Parsing a unit reads its abbreviations and line program header, elsewhere in the
        // file than its neighbours' when they are listed in `.debug_aranges`.
        release();
        let dwarf = &units.dwarf;
        let Ok(unit) = dwarf
            .unit_header(units.offsets[index])
            .and_then(|header| dwarf.unit(header))
        else {
            continue;
        };
        let mut root = unit.entries();
        if let Ok(Some(entry)) = root.next_dfs() {
            push_ranges(dwarf, &unit, entry, ranges, |begin, end| {
                (begin, end, index as u32)
            });
        }
    }
}

impl<R: Reader> Units<R> {
    /// The header of unit `index` (parsed again: headers are small).
    fn get_header(&self, index: usize) -> Option<gimli::UnitHeader<R>> {
        self.dwarf.unit_header(*self.offsets.get(index)?).ok()
    }

    /// The unit holding the entry at `offset` in the section, and the entry's offset in it.
    fn locate(
        &mut self,
        offset: DebugInfoOffset<R::Offset>,
    ) -> Option<(usize, UnitOffset<R::Offset>)> {
        let target = self.containing(offset)?;
        let header = self.get_header(target)?;
        Some((target, offset.to_unit_offset(&header)?))
    }
}

/// `DW_AT_language` of a unit's root entry.
fn root_language<R: Reader>(unit: &gimli::Unit<R>) -> Option<DwLang> {
    let mut entries = unit.entries();
    let root = entries.next_dfs().ok()??;
    match root.attr_value(gimli::DW_AT_language)? {
        AttributeValue::Language(language) => Some(language),
        _ => None,
    }
}

/// Every function of `unit` that has code, with a table of their ranges. Functions come in
/// offset order.
///
/// Types outside any function are stepped over by their `DW_AT_sibling` (GCC writes one for
/// every entry with children): they hold member *declarations*, whose code is described by an
/// entry outside the class (`DW_AT_specification`), and they are most of a C++ unit's entries
/// (59% of RocksDB's). Only a class local to a function holds its members' code (GCC), so
/// types inside functions are read through.
fn read_functions<R: Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
) -> (Vec<Function<R>>, RangeTable<u32>) {
    let mut functions = Vec::new();
    let mut ranges = Vec::new();
    let Ok(mut entries) = unit.entries_raw(None) else {
        return (functions, RangeTable::new(ranges));
    };
    let mut entry = gimli::DebuggingInformationEntry::null();
    let mut depth: isize = 0;
    // The depth of the outermost function entry above the next entry, if any.
    let mut in_function: Option<isize> = None;
    while !entries.is_empty() {
        let offset = entries.next_offset();
        let Ok(abbrev) = entries.read_abbreviation() else {
            break;
        };
        let Some(abbrev) = abbrev else {
            depth -= 1;
            if in_function.is_some_and(|d| d >= depth) {
                in_function = None;
            }
            continue;
        };
        let tag = abbrev.tag();
        if in_function.is_none() && is_type(tag) && abbrev.has_children() {
            let Ok(found) = scopes::read_name_and_sibling(&mut entries, abbrev) else {
                break;
            };
            let sibling = found.sibling.filter(|&s| s > offset.0.into_u64());
            match sibling.and_then(|s| scopes::entries_at(unit, s)) {
                Some(after) => entries = after,
                None => depth += 1,
            }
            continue;
        }
        // Only a subprogram whose abbreviation has an address can have code: the others (C++
        // member declarations, abstract instances: most subprograms of a C++ unit) are
        // skipped without decoding their attributes.
        let has_code = tag == gimli::DW_TAG_subprogram
            && (abbrev.attributes().iter())
                .any(|a| matches!(a.name(), gimli::DW_AT_low_pc | gimli::DW_AT_ranges));
        let read = if has_code {
            entries.read_attributes(abbrev.attributes(), &mut entry.attrs)
        } else {
            entries.skip_attributes(abbrev.attributes())
        };
        if read.is_err() {
            break;
        }
        if abbrev.has_children() {
            if tag == gimli::DW_TAG_subprogram && in_function.is_none() {
                in_function = Some(depth);
            }
            depth += 1;
        }
        if !has_code {
            continue;
        }
        let index = functions.len() as u32;
        let before = ranges.len();
        push_ranges(dwarf, unit, &entry, &mut ranges, |begin, end| {
            (begin, end, index)
        });
        if ranges.len() > before {
            functions.push(Function {
                offset,
                inlined: None,
            });
        }
    }
    (functions, RangeTable::new(ranges))
}

/// Type entries: outside functions, their children are declarations (see [`read_functions`]).
fn is_type(tag: gimli::DwTag) -> bool {
    matches!(
        tag,
        gimli::DW_TAG_class_type
            | gimli::DW_TAG_structure_type
            | gimli::DW_TAG_union_type
            | gimli::DW_TAG_enumeration_type
    )
}

/// The inlined calls below the function entry at `function`, each range with its call depth.
fn read_inlined<R: Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    function: UnitOffset<R::Offset>,
) -> Vec<Inlined<R>> {
    let mut calls = Vec::new();
    let Ok(mut entries) = unit.entries_raw(Some(function)) else {
        return calls;
    };
    // The function's own entry, at depth 0; its subtree is what follows at depth >= 1.
    match entries.read_abbreviation() {
        Ok(Some(abbrev)) if abbrev.has_children() => {
            if entries.skip_attributes(abbrev.attributes()).is_err() {
                return calls;
            }
        }
        _ => return calls,
    }
    // `inlined_above[d]`: inlined calls on the path down to the entry at depth d (inclusive).
    let mut inlined_above: Vec<u32> = vec![0];
    let mut entry = gimli::DebuggingInformationEntry::null();
    let mut ranges = Vec::new();
    while entries.next_depth() > 0 && !entries.is_empty() {
        let depth = entries.next_depth() as usize;
        let tag = match next_entry(&mut entries, gimli::DW_TAG_inlined_subroutine, &mut entry) {
            Ok(Some(tag)) => tag,
            Ok(None) => continue, // end of a sibling list
            Err(_) => break,
        };
        let above = inlined_above.get(depth - 1).copied().unwrap_or(0);
        let is_call = tag == gimli::DW_TAG_inlined_subroutine;
        inlined_above.truncate(depth);
        inlined_above.resize(depth, above);
        inlined_above.push(above + u32::from(is_call));
        if !is_call {
            continue;
        }
        let offset = entry.offset;
        ranges.clear();
        push_ranges(dwarf, unit, &entry, &mut ranges, |begin, end| (begin, end));
        calls.extend(ranges.iter().map(|&(begin, end)| Inlined {
            begin,
            end,
            depth: above,
            offset,
        }));
    }
    calls.shrink_to_fit();
    calls
}

/// Reads the next entry: returns its tag (`None` for a null entry, which ends a list of
/// siblings), with its offset and attributes in `entry` if the tag is `wanted`; other entries
/// are skipped without decoding their attributes.
fn next_entry<R: Reader>(
    entries: &mut gimli::EntriesRaw<'_, R>,
    wanted: gimli::DwTag,
    entry: &mut gimli::DebuggingInformationEntry<R>,
) -> gimli::Result<Option<gimli::DwTag>> {
    let offset = entries.next_offset();
    let Some(abbrev) = entries.read_abbreviation()? else {
        return Ok(None);
    };
    if abbrev.tag() == wanted {
        entries.read_attributes(abbrev.attributes(), &mut entry.attrs)?;
        entry.offset = offset;
    } else {
        entries.skip_attributes(abbrev.attributes())?;
    }
    Ok(Some(abbrev.tag()))
}

/// Pushes `make(begin, end)` for each usable range of `entry`: from `DW_AT_ranges`, else
/// `DW_AT_low_pc` with `DW_AT_high_pc` (an address, or a size). Read here rather than with
/// gimli's `die_ranges`, whose `low_pc + size` overflows on the all-ones "dead code" tombstone
/// that linkers write for discarded functions; those, empty ranges and ranges at 0 are skipped.
fn push_ranges<R: Reader, T>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    entry: &gimli::DebuggingInformationEntry<R>,
    out: &mut Vec<T>,
    make: impl Fn(u64, u64) -> T,
) {
    // DWARF's tombstones are -1 and -2 at the unit's address size (as gimli checks them).
    let ones = match unit.header.address_size() {
        8 => u64::MAX,
        size => (1u64 << (u32::from(size) * 8).min(63)) - 1,
    };
    let tombstone = ones - 1;
    let mut push = |begin: u64, end: u64| {
        if begin != 0 && begin < end && begin < tombstone {
            out.push(make(begin, end));
        }
    };
    let (mut low, mut high, mut size) = (None, None, None);
    for attr in entry.attrs() {
        match (attr.name(), attr.value()) {
            (gimli::DW_AT_ranges, value) => {
                if let Ok(Some(mut ranges)) = dwarf.attr_ranges(unit, value) {
                    // gimli skips tombstoned and empty list entries itself.
                    while let Ok(Some(range)) = ranges.next() {
                        push(range.begin, range.end);
                    }
                }
                return;
            }
            (gimli::DW_AT_low_pc, value) => low = dwarf.attr_address(unit, value).ok().flatten(),
            (gimli::DW_AT_high_pc, gimli::AttributeValue::Udata(n)) => size = Some(n),
            (gimli::DW_AT_high_pc, value) => high = dwarf.attr_address(unit, value).ok().flatten(),
            _ => {}
        }
    }
    if let Some(begin) = low {
        if let Some(end) = high.or_else(|| size.map(|n| begin.wrapping_add(n))) {
            push(begin, end);
        }
    }
}

/// The names an entry carries, and the entry it refers to for more.
struct EntryName<R: Reader> {
    linkage: Option<R>,
    name: Option<R>,
    /// `DW_AT_abstract_origin` or `DW_AT_specification`.
    next: Option<AttributeValue<R>>,
}

/// The names of the entry at `offset` and its link to follow: a linkage name, when some entry of
/// the chain has one, gives the qualified name that the plain `DW_AT_name` lacks.
fn read_name<R: Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    offset: UnitOffset<R::Offset>,
) -> Option<EntryName<R>> {
    let mut entries = unit.entries_raw(Some(offset)).ok()?;
    let abbrev = entries.read_abbreviation().ok()??;
    let mut found = EntryName {
        linkage: None,
        name: None,
        next: None,
    };
    for spec in abbrev.attributes() {
        let attr = entries.read_attribute(*spec).ok()?;
        match attr.name() {
            gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name => {
                if let Ok(linkage) = dwarf.attr_string(unit, attr.value()) {
                    found.linkage = Some(linkage);
                    return Some(found);
                }
            }
            gimli::DW_AT_name => {
                if let Ok(plain) = dwarf.attr_string(unit, attr.value()) {
                    found.name = Some(plain);
                }
            }
            gimli::DW_AT_abstract_origin | gimli::DW_AT_specification => {
                found.next = Some(attr.value());
            }
            _ => {}
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_table_finds_innermost_first_and_skips_junk() {
        let table = RangeTable::new(vec![
            (0x1000, 0x2000, 1),
            (0x1100, 0x1200, 2),
            (0, 0x5000, 3),      // dropped: at address 0
            (0x3000, 0x3000, 4), // dropped: empty
            (0x1f00, 0x4000, 5),
        ]);
        assert_eq!(table.find(0x1150).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(table.find(0x1f80).collect::<Vec<_>>(), vec![5, 1]);
        assert_eq!(table.find(0x2000).collect::<Vec<_>>(), vec![5]);
        assert!(table.find(0x3000).any(|v| v == 5));
        assert_eq!(table.find(0x4000).count(), 0);
        assert_eq!(table.find(0x10).count(), 0);
        // Equal starts: the inner (shorter) range first.
        let ties = RangeTable::new(vec![(0x1000, 0x1100, 1), (0x1000, 0x2000, 2)]);
        assert_eq!(ties.find(0x1050).collect::<Vec<_>>(), vec![1, 2]);
    }

    /// DWARF built with gimli's writer: a unit with a live function and one the linker dropped,
    /// tombstoned with an all-ones low_pc and a size as high_pc (`low_pc + size` overflows).
    #[test]
    fn tombstoned_functions_are_skipped_without_overflow() {
        use gimli::write::{Address, AttributeValue as Value, DwarfUnit, EndianVec, Sections};
        let encoding = gimli::Encoding {
            format: gimli::Format::Dwarf32,
            version: 4,
            address_size: 8,
        };
        let mut dwarf_unit = DwarfUnit::new(encoding);
        let unit = &mut dwarf_unit.unit;
        let root = unit.root();
        let function = |unit: &mut gimli::write::Unit, name: &str, low: u64, size: u64| {
            let root = unit.root();
            let id = unit.add(root, gimli::DW_TAG_subprogram);
            let entry = unit.get_mut(id);
            entry.set(gimli::DW_AT_name, Value::String(name.as_bytes().to_vec()));
            entry.set(gimli::DW_AT_low_pc, Value::Address(Address::Constant(low)));
            entry.set(gimli::DW_AT_high_pc, Value::Udata(size));
        };
        unit.get_mut(root).set(
            gimli::DW_AT_low_pc,
            Value::Address(Address::Constant(0x1000)),
        );
        unit.get_mut(root)
            .set(gimli::DW_AT_high_pc, Value::Udata(0x1000));
        function(unit, "dead", u64::MAX, 0x10);
        function(unit, "live", 0x1000, 0x20);
        let mut sections = Sections::new(EndianVec::new(gimli::LittleEndian));
        dwarf_unit.write(&mut sections).unwrap();
        let dwarf = gimli::Dwarf::load(|id| -> Result<_, ()> {
            let bytes = sections
                .get(id)
                .map(|s| s.slice().to_vec())
                .unwrap_or_default();
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            Ok(gimli::EndianSlice::new(bytes, gimli::LittleEndian))
        })
        .unwrap();
        let mut names = DwarfNames::new(dwarf, &mut || {});
        let mut out = Vec::new();
        names.frames(0x1004, true, &mut out);
        let found: Vec<_> = out.iter().map(|f| f.name.to_string_lossy()).collect();
        assert_eq!(found, ["live"]);
        out.clear();
        names.frames(0x1030, true, &mut out);
        assert!(out.is_empty(), "nothing at 0x1030");
    }
}
