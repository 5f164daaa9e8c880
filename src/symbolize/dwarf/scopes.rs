//! The scopes (namespaces, classes, functions) around a DWARF entry: what qualifies a plain
//! `DW_AT_name` (`Slice` in class `Slice` of namespace `rocksdb` is `rocksdb::Slice::Slice`).
//!
//! A unit's entries say only who their children are, so the scopes of an entry are its ancestors
//! on the way down from the unit's root. GCC gives every entry with children a
//! `DW_AT_sibling`, which lets a walk step over each subtree that does not hold the entry: a
//! walk decodes the few thousand entries along its path instead of the hundreds of thousands of
//! a big C++ unit. Without sibling links (rustc, clang) a walk decodes everything before the
//! entry; so once the walks of a unit have decoded as many bytes as the unit holds, the unit's
//! scopes are read once into a table of entry-offset ranges, as a full scan would have, and
//! looked up there from then on. Neither way costs more than twice the other.

use gimli::{AttributeValue, Reader, ReaderOffset, UnitOffset};
use rustc_hash::FxHashMap;

use super::RangeTable;

/// The name of a scope, read from the section only when a frame inside it is named.
#[derive(Clone)]
pub(super) enum ScopeName<R> {
    Named(R),
    /// A namespace without a name.
    AnonymousNamespace,
    /// A class without a name (GCC's closure types).
    Lambda,
}

impl<R: Reader> ScopeName<R> {
    /// The scope an entry with `tag` and `name` opens for the entries below it, if any.
    fn of(tag: gimli::DwTag, name: Option<R>) -> Option<Self> {
        match name {
            Some(name) if !name.is_empty() => Some(ScopeName::Named(name)),
            None if tag == gimli::DW_TAG_namespace => Some(ScopeName::AnonymousNamespace),
            // GCC gives a lambda's closure type no name.
            None if tag == gimli::DW_TAG_class_type => Some(ScopeName::Lambda),
            _ => None,
        }
    }

    pub(super) fn text(&self) -> String {
        match self {
            ScopeName::Named(name) => (name.to_string_lossy())
                .map(|n| n.into_owned())
                .unwrap_or_default(),
            ScopeName::AnonymousNamespace => "(anonymous namespace)".into(),
            ScopeName::Lambda => "{lambda}".into(),
        }
    }
}

/// Entries whose name qualifies the names below them.
fn is_scope(tag: gimli::DwTag) -> bool {
    matches!(
        tag,
        gimli::DW_TAG_namespace
            | gimli::DW_TAG_class_type
            | gimli::DW_TAG_structure_type
            | gimli::DW_TAG_union_type
            | gimli::DW_TAG_subprogram
    )
}

/// How the scopes of one unit's entries are found (see the module documentation).
pub(super) enum Scopes<R: Reader> {
    /// Walks down from the root to each entry asked for; `spent`: bytes of entries the walks
    /// decoded so far; `found`: their answers by entry offset.
    Walking {
        spent: u64,
        found: FxHashMap<u64, Vec<ScopeName<R>>>,
    },
    /// Every named scope of the unit, with the range of entry offsets below it.
    Table(Vec<ScopeName<R>>, RangeTable<u32>),
}

impl<R: Reader> Default for Scopes<R> {
    fn default() -> Self {
        Scopes::Walking {
            spent: 0,
            found: FxHashMap::default(),
        }
    }
}

impl<R: Reader> Scopes<R> {
    /// The scopes around the entry at `offset` of `unit`, outermost first.
    pub(super) fn around(
        &mut self,
        dwarf: &gimli::Dwarf<R>,
        unit: &gimli::Unit<R>,
        offset: UnitOffset<R::Offset>,
    ) -> Vec<ScopeName<R>> {
        let at = offset.0.into_u64();
        if let Scopes::Walking { spent, found } = self {
            if let Some(scopes) = found.get(&at) {
                return scopes.clone();
            }
            let unit_bytes = unit.header.length_including_self().into_u64();
            if *spent < unit_bytes {
                let (scopes, cost) = walk_to(dwarf, unit, at);
                *spent += cost;
                found.insert(at, scopes.clone());
                return scopes;
            }
            let (names, table) = read_scopes(dwarf, unit);
            *self = Scopes::Table(names, table);
        }
        let Scopes::Table(names, table) = self else {
            return Vec::new();
        };
        let mut scopes: Vec<ScopeName<R>> = (table.find(at))
            .map(|i| names[i as usize].clone())
            .collect();
        scopes.reverse();
        scopes
    }
}

/// The named scopes of `unit`: namespaces (`(anonymous namespace)` when unnamed), classes,
/// structures, unions and functions, each with the range of entry offsets below it.
fn read_scopes<R: Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
) -> (Vec<ScopeName<R>>, RangeTable<u32>) {
    let mut names = Vec::new();
    let mut ranges = Vec::new();
    // Open scopes: (depth, start offset, index into `names`).
    let mut open: Vec<(isize, u64, u32)> = Vec::new();
    let Ok(mut entries) = unit.entries_raw(None) else {
        return (names, RangeTable::new(ranges));
    };
    let mut depth: isize = 0;
    while !entries.is_empty() {
        let offset = entries.next_offset().0.into_u64();
        let Ok(abbrev) = entries.read_abbreviation() else {
            break;
        };
        let Some(abbrev) = abbrev else {
            depth -= 1;
            continue;
        };
        while open.last().is_some_and(|&(d, _, _)| d >= depth) {
            let (_, start, index) = open.pop().unwrap_or_default();
            ranges.push((start.max(1), offset, index));
        }
        if !(is_scope(abbrev.tag()) && abbrev.has_children()) {
            if entries.skip_attributes(abbrev.attributes()).is_err() {
                break;
            }
            if abbrev.has_children() {
                depth += 1;
            }
            continue;
        }
        let Ok(found) = read_name_and_sibling(&mut entries, abbrev) else {
            return (names, RangeTable::new(ranges));
        };
        let name = found
            .name
            .and_then(|name| dwarf.attr_string(unit, name).ok());
        if let Some(name) = ScopeName::of(abbrev.tag(), name) {
            // The scope holds the entries below it, not the entry itself.
            open.push((depth, offset + 1, names.len() as u32));
            names.push(name);
        }
        depth += 1;
    }
    let end = entries.next_offset().0.into_u64();
    for (_, start, index) in open {
        ranges.push((start.max(1), end, index));
    }
    (names, RangeTable::new(ranges))
}

/// The named scopes above the entry at offset `target` of `unit`, outermost first, found by
/// walking down from the root and stepping over every subtree whose `DW_AT_sibling` shows it
/// ends at or before `target`; and how many bytes of entries the walk decoded.
fn walk_to<R: Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    target: u64,
) -> (Vec<ScopeName<R>>, u64) {
    // The entries with children on the way down: (depth, the scope each opens).
    let mut path: Vec<(isize, Option<ScopeName<R>>)> = Vec::new();
    let Ok(mut entries) = unit.entries_raw(None) else {
        return (Vec::new(), 0);
    };
    let mut spent = 0;
    let mut segment = entries.next_offset().0.into_u64();
    let mut depth: isize = 0;
    loop {
        let offset = entries.next_offset().0.into_u64();
        if offset >= target || entries.is_empty() {
            spent += offset.saturating_sub(segment);
            break;
        }
        let abbrev = match entries.read_abbreviation() {
            Ok(Some(abbrev)) => abbrev,
            Ok(None) => {
                depth -= 1;
                continue;
            }
            Err(_) => return (Vec::new(), spent + offset.saturating_sub(segment)),
        };
        while path.last().is_some_and(|(d, _)| *d >= depth) {
            path.pop();
        }
        if !abbrev.has_children() {
            if entries.skip_attributes(abbrev.attributes()).is_err() {
                return (Vec::new(), spent + offset.saturating_sub(segment));
            }
            continue;
        }
        let Ok(found) = read_name_and_sibling(&mut entries, abbrev) else {
            return (Vec::new(), spent + offset.saturating_sub(segment));
        };
        // A sibling link must lead forward, and not past the target.
        let after = found.sibling.filter(|&s| s > offset && s <= target);
        if let Some(jumped) = after.and_then(|s| entries_at(unit, s)) {
            spent += entries.next_offset().0.into_u64().saturating_sub(segment);
            entries = jumped;
            segment = entries.next_offset().0.into_u64();
            continue;
        }
        let scope = if is_scope(abbrev.tag()) {
            let name = found
                .name
                .and_then(|name| dwarf.attr_string(unit, name).ok());
            ScopeName::of(abbrev.tag(), name)
        } else {
            None
        };
        path.push((depth, scope));
        depth += 1;
    }
    while path.last().is_some_and(|(d, _)| *d >= depth) {
        path.pop();
    }
    (
        path.into_iter().filter_map(|(_, scope)| scope).collect(),
        spent,
    )
}

/// Entries from the one at unit offset `offset`.
pub(super) fn entries_at<'u, R: Reader>(
    unit: &'u gimli::Unit<R>,
    offset: u64,
) -> Option<gimli::EntriesRaw<'u, R>> {
    let offset = UnitOffset(R::Offset::from_u64(offset).ok()?);
    unit.entries_raw(Some(offset)).ok()
}

/// What [`read_name_and_sibling`] decodes of an entry.
pub(super) struct NameAndSibling<R: Reader> {
    /// `DW_AT_name` of a scope entry, as its form gives it (the string is found only when the
    /// name is used: most entries read are stepped over).
    pub name: Option<AttributeValue<R>>,
    /// `DW_AT_sibling`: the unit offset of the entry after this one's subtree.
    pub sibling: Option<u64>,
}

/// Reads the attributes of the entry whose abbreviation was just read, decoding only its
/// `DW_AT_sibling` and, for a scope entry, its `DW_AT_name`; the rest are stepped over.
pub(super) fn read_name_and_sibling<R: Reader>(
    entries: &mut gimli::EntriesRaw<'_, R>,
    abbrev: &gimli::Abbreviation,
) -> gimli::Result<NameAndSibling<R>> {
    let mut found = NameAndSibling {
        name: None,
        sibling: None,
    };
    let named = is_scope(abbrev.tag());
    let specs = abbrev.attributes();
    let mut skipped = 0;
    for (k, spec) in specs.iter().enumerate() {
        let wanted =
            spec.name() == gimli::DW_AT_sibling || (named && spec.name() == gimli::DW_AT_name);
        if !wanted {
            continue;
        }
        entries.skip_attributes(&specs[skipped..k])?;
        let attr = entries.read_attribute(*spec)?;
        skipped = k + 1;
        match attr.value() {
            AttributeValue::UnitRef(sibling) if spec.name() == gimli::DW_AT_sibling => {
                found.sibling = Some(sibling.0.into_u64());
            }
            value if spec.name() == gimli::DW_AT_name => found.name = Some(value),
            _ => {}
        }
    }
    entries.skip_attributes(&specs[skipped..])?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbolize::tests::{cpp_scopes_program, leaked_dwarf};

    /// At every function entry of a g++ program (namespaces, templates, lambdas, a local class),
    /// a walk finds the scopes the full table holds, and decodes less than the unit to do it.
    #[test]
    fn walks_find_the_scopes_the_table_holds() {
        let dir = tempfile::tempdir().unwrap();
        let dwarf = leaked_dwarf(&cpp_scopes_program(dir.path()));
        let (mut checked, mut spent, mut scanned) = (0, 0, 0);
        let mut qualified = std::collections::BTreeSet::new();
        let mut headers = dwarf.units();
        while let Some(header) = headers.next().unwrap() {
            let unit = dwarf.unit(header).unwrap();
            let (names, table) = read_scopes(&dwarf, &unit);
            let mut entries = unit.entries();
            while let Some(entry) = entries.next_dfs().unwrap() {
                if entry.tag() != gimli::DW_TAG_subprogram {
                    continue;
                }
                let at = entry.offset().0 as u64;
                let text = |scopes: &mut dyn Iterator<Item = &ScopeName<_>>| {
                    scopes.map(ScopeName::text).collect::<Vec<_>>().join("::")
                };
                let mut expected: Vec<u32> = table.find(at).collect();
                expected.reverse();
                let expected = text(&mut expected.iter().map(|&i| &names[i as usize]));
                let (walked, cost) = walk_to(&dwarf, &unit, at);
                assert_eq!(text(&mut walked.iter()), expected, "entry {at:#x}");
                qualified.insert(expected);
                checked += 1;
                spent += cost;
                scanned += unit.header.length_including_self() as u64;
            }
        }
        assert!(checked > 1000, "{checked} functions");
        for scope in [
            "outer",
            "outer::(anonymous namespace)::Box<long int>",
            "Local",
        ] {
            assert!(qualified.contains(scope), "{scope} not in {qualified:?}");
        }
        // GCC's sibling links: a walk decodes a small part of its unit.
        assert!(
            spent * 10 < scanned,
            "walks decoded {spent} of {scanned} bytes"
        );
    }
}
