//! Folded stacks: the common currency between recorders and renderers.
//!
//! One line per unique stack, `root;caller;callee weight`, root first, the first frame being the
//! process name. This is inferno's collapsed format, so `.folded` output can be fed to
//! `inferno-flamegraph` or `flamegraph.pl` as is.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::error::{Error, Result};

/// Room left at the end of each stack's string for ` WEIGHT`, so that
/// [`Folded::with_lines`] writes the weights in place without moving the strings.
pub const WEIGHT_ROOM: usize = 21;

/// Folded stacks with their weights, in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    stacks: Vec<(String, u64)>,
}

impl Folded {
    /// Stacks from `stack -> weight` pairs, sorted by stack so output is deterministic.
    pub fn from_counts(counts: impl IntoIterator<Item = (String, u64)>) -> Self {
        let mut stacks: Vec<(String, u64)> = counts.into_iter().filter(|(_, w)| *w > 0).collect();
        stacks.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Folded { stacks }
    }

    /// Stacks in the given order, merging only *consecutive* duplicates: what a flame chart
    /// (time on the x axis) needs.
    pub fn from_sequence(seq: impl IntoIterator<Item = (String, u64)>) -> Self {
        let mut stacks: Vec<(String, u64)> = Vec::new();
        for (stack, weight) in seq {
            match stacks.last_mut() {
                Some((last, w)) if *last == stack => *w += weight,
                _ => stacks.push((stack, weight)),
            }
        }
        Folded { stacks }
    }

    /// Parses collapsed text. Blank lines are skipped; any other line must end in a count.
    pub fn parse(text: &str) -> Result<Self> {
        let mut stacks = Vec::new();
        for (n, line) in text.lines().enumerate() {
            stacks.extend(parse_line(n, line)?);
        }
        Ok(Folded { stacks })
    }

    /// [`Folded::parse`] of text read line by line (a command's output: never held whole).
    pub fn read(reader: impl std::io::BufRead) -> Result<Self> {
        let mut stacks = Vec::new();
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| Error::io("reading folded stacks", e))?;
            stacks.extend(parse_line(n, &line)?);
        }
        Ok(Folded { stacks })
    }

    /// Calls `f` with the stacks as collapsed lines (`stack weight`), without a second copy of
    /// the text: each weight is appended to its stack in place for the call and removed after
    /// it (a system-wide profile's text is tens of MB, and a renderer such as inferno needs all
    /// its lines at once).
    pub fn with_lines<R>(&mut self, f: impl FnOnce(&[&str]) -> R) -> R {
        let lengths: Vec<usize> = self.stacks.iter().map(|(stack, _)| stack.len()).collect();
        for (stack, weight) in &mut self.stacks {
            // Writing to a String cannot fail.
            let _ = write!(stack, " {weight}");
        }
        let lines: Vec<&str> = self.stacks.iter().map(|(line, _)| line.as_str()).collect();
        let result = f(&lines);
        drop(lines);
        for ((stack, _), len) in self.stacks.iter_mut().zip(lengths) {
            stack.truncate(len);
        }
        result
    }

    /// Writes the stacks as text, one `stack weight` line at a time.
    pub fn write_text(&self, writer: &mut dyn std::io::Write) -> std::io::Result<()> {
        for (stack, weight) in &self.stacks {
            writeln!(writer, "{stack} {weight}")?;
        }
        Ok(())
    }

    /// The stacks and weights, in order.
    pub fn stacks(&self) -> &[(String, u64)] {
        &self.stacks
    }

    /// The stacks and weights, in order, consumed.
    pub fn into_stacks(self) -> Vec<(String, u64)> {
        self.stacks
    }

    /// Sum of all weights.
    pub fn total(&self) -> u64 {
        self.stacks.iter().map(|(_, w)| w).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    /// The collapsed text, one `stack weight` per line.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.stacks.iter().map(|(s, _)| s.len() + 12).sum());
        for (stack, weight) in &self.stacks {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{stack} {weight}");
        }
        out
    }

    /// Applies the naming rules of the native backend (`symbolize::names`) to names an external
    /// tool wrote: demangled, without symbol versions, C++ return types and parameter lists, or
    /// (unless `full`) Rust generic arguments; inferno's `_[k]`/`_[i]`/`_[j]` annotations are
    /// kept. Stacks that become equal are merged.
    pub fn clean_names(&mut self, full: bool) {
        let mut cache: HashMap<String, String> = HashMap::new();
        let mut merged: HashMap<String, usize> = HashMap::with_capacity(self.stacks.len());
        let mut stacks: Vec<(String, u64)> = Vec::with_capacity(self.stacks.len());
        for (stack, weight) in std::mem::take(&mut self.stacks) {
            let mut out = String::with_capacity(stack.len());
            for (i, frame) in stack.split(';').enumerate() {
                if i > 0 {
                    out.push(';');
                }
                let (name, suffix) = split_annotation(frame);
                let clean = cache.entry(name.to_owned()).or_insert_with(|| {
                    crate::symbolize::names::tidy(&crate::symbolize::names::clean_external(
                        name, full,
                    ))
                    .into_owned()
                });
                out.push_str(clean);
                out.push_str(suffix);
            }
            match merged.get(&out) {
                Some(&at) => stacks[at].1 += weight,
                None => {
                    merged.insert(out.clone(), stacks.len());
                    stacks.push((out, weight));
                }
            }
        }
        self.stacks = stacks;
    }

    /// Drops every frame rootward of the first (leafmost) frame named in `names`, the process name
    /// included, as inferno's `--skip-after` does for perf input. Stacks that contain none of the
    /// names are kept whole. Stacks that become equal are merged.
    pub fn skip_after(&mut self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let keep_order = self.stacks.clone();
        let mut merged: HashMap<String, u64> = HashMap::with_capacity(keep_order.len());
        let mut order: Vec<String> = Vec::new();
        for (stack, weight) in keep_order {
            let frames: Vec<&str> = stack.split(';').collect();
            let cut = frames
                .iter()
                .rposition(|f| {
                    let function = without_location(f);
                    names.iter().any(|n| n == f || n == function)
                })
                .unwrap_or(0);
            let new_stack = frames[cut..].join(";");
            match merged.get_mut(&new_stack) {
                Some(w) => *w += weight,
                None => {
                    merged.insert(new_stack.clone(), weight);
                    order.push(new_stack);
                }
            }
        }
        self.stacks = order
            .into_iter()
            .map(|s| {
                let w = merged[&s];
                (s, w)
            })
            .collect();
    }
}

/// `frame` without the ` FILE:LINE` that `--lines` adds (`main src/main.rs:3` → `main`), so that
/// `--skip-after main` finds it.
fn without_location(frame: &str) -> &str {
    let is_location = |loc: &str| {
        loc.rsplit_once(':').is_some_and(|(file, line)| {
            !file.is_empty() && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit())
        })
    };
    match frame.rsplit_once(' ') {
        Some((function, loc)) if is_location(loc) => function,
        _ => frame,
    }
}

/// Splits an inferno annotation (`_[k]`, `_[i]`, `_[j]`) off a frame name.
fn split_annotation(frame: &str) -> (&str, &str) {
    for suffix in ["_[k]", "_[i]", "_[j]"] {
        if let Some(name) = frame.strip_suffix(suffix) {
            return (name, suffix);
        }
    }
    (frame, "")
}

/// One line of collapsed text (line number `n` from 0): `None` when blank.
fn parse_line(n: usize, line: &str) -> Result<Option<(String, u64)>> {
    let line = line.trim_end();
    if line.is_empty() {
        return Ok(None);
    }
    let (stack, count) = line.rsplit_once(' ').ok_or_else(|| {
        Error::Malformed(format!(
            "folded stacks line {}: no count in {line:?}",
            n + 1
        ))
    })?;
    let count: u64 = count.parse().map_err(|_| {
        Error::Malformed(format!(
            "folded stacks line {}: bad count in {line:?}",
            n + 1
        ))
    })?;
    let mut owned = String::with_capacity(stack.len() + WEIGHT_ROOM);
    owned.push_str(stack);
    Ok(Some((owned, count)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn with_lines_gives_collapsed_lines_and_leaves_the_stacks_as_they_were() {
        let mut folded = Folded::parse("p;main;a 6\np;main;b 3\n").unwrap();
        let before = folded.clone();
        let joined = folded.with_lines(|lines| lines.join("|"));
        assert_eq!(joined, "p;main;a 6|p;main;b 3");
        assert_eq!(folded, before);
    }

    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        let text = "prog;main;a 3\nprog;main;b 1\n";
        let f = Folded::parse(text).unwrap();
        assert_eq!(f.total(), 4);
        assert_eq!(f.to_text(), text);
        assert!(Folded::parse("prog;main").is_err());
        assert!(Folded::parse("prog;main x").is_err());
    }

    #[test]
    fn from_counts_sorts_and_drops_zero() {
        let f = Folded::from_counts([("b".into(), 1), ("a".into(), 2), ("c".into(), 0)]);
        assert_eq!(f.to_text(), "a 2\nb 1\n");
    }

    #[test]
    fn sequence_merges_only_neighbours() {
        let f = Folded::from_sequence([
            ("a".into(), 1),
            ("a".into(), 1),
            ("b".into(), 1),
            ("a".into(), 1),
        ]);
        assert_eq!(f.to_text(), "a 2\nb 1\na 1\n");
    }

    #[test]
    fn cleans_names_keeping_annotations() {
        let mut f = Folded::parse(
            "p;_ZN4core3ptr13drop_in_place17h0123456789abcdefE_[i];_RNvCs1234_7mycrate3foo 1\n\
             p;main;realpath@@GLIBC_2.3;void std::sort<int*>(int*, int*) 2\n\
             p;main;realpath;std::sort<int*> 3\n\
             p;fold<usize, core::ops::range::Range<u64>>_[i] 4\n",
        )
        .unwrap();
        let mut full = f.clone();
        f.clean_names(false);
        assert_eq!(
            f.to_text(),
            "p;core::ptr::drop_in_place_[i];mycrate::foo 1\n\
             p;main;realpath;std::sort<int*> 5\n\
             p;fold_[i] 4\n"
        );
        full.clean_names(true);
        assert!(full
            .to_text()
            .contains("p;fold<usize, core::ops::range::Range<u64>>_[i] 4"));
    }

    #[test]
    fn skip_after_finds_frames_with_lines() {
        let mut f = Folded::parse("p;main a.c:3;init a.c:9;work a.c:20 5\n").unwrap();
        f.skip_after(&["init".to_string()]);
        assert_eq!(f.to_text(), "init a.c:9;work a.c:20 5\n");
        assert_eq!(without_location("operator new"), "operator new");
        assert_eq!(without_location("f x:y"), "f x:y");
    }

    #[test]
    fn skip_after_cuts_rootward_frames_and_merges() {
        let mut f = Folded::parse("p;main;init;x 2\np;start;init;x 3\np;main;y 1\n").unwrap();
        f.skip_after(&["init".to_string()]);
        assert_eq!(f.to_text(), "init;x 5\np;main;y 1\n");
    }
}
