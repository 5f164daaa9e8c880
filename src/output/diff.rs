//! Differential flame graphs: a recording compared with a baseline profile.
//!
//! Every frame is coloured by the change of its *inclusive* weight between the baseline and the
//! new profile (red grew, blue shrank, grey unchanged), and its tooltip gives before / after /
//! change. inferno 0.12.8 cannot draw this: its differential mode gives every non-leaf frame a
//! zero delta, and its options take no per-frame colours. So inferno draws the new profile as
//! usual and we recolour its frames from our own per-frame deltas: each frame rectangle carries
//! its depth (its `y`) and its extent in samples (`fg:x`, `fg:w`), from which the frame's path
//! from the root is rebuilt and looked up in our tables.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::View;
use crate::error::{Error, Result};
use crate::fold::Folded;

/// Frames whose inclusive weight changed by less than this fraction of itself are drawn grey:
/// differences that small are sampling noise.
pub const NEUTRAL_CHANGE: f64 = 0.05;

/// The profile a run is compared with.
#[derive(Clone, Debug)]
pub struct Baseline {
    /// Its folded stacks (roots as the profile's own).
    pub folded: Folded,
    /// Scale it to the new profile's total before comparing.
    pub normalize: bool,
    /// Where it was read from.
    pub path: PathBuf,
}

/// What a baseline file holds, told by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineKind {
    /// `PERFILE2`: a perf.data file.
    PerfData,
    /// gzip: our pprof export.
    Pprof,
    /// Anything else: folded text.
    Folded,
}

/// Tells a profile file's kind by content.
pub fn detect(head: &[u8]) -> BaselineKind {
    // perf.data magics: version 2 and the perf 3.x `PERFFILE`, in either byte order (the
    // reader refuses the other byte order in one line).
    const PERF_MAGICS: [&[u8]; 4] = [b"PERFILE2", b"2ELIFREP", b"PERFFILE", b"ELIFFREP"];
    if PERF_MAGICS.iter().any(|m| head.starts_with(m)) {
        BaselineKind::PerfData
    } else if head.starts_with(&[0x1f, 0x8b]) {
        BaselineKind::Pprof
    } else {
        BaselineKind::Folded
    }
}

/// The largest profile file read whole (folded text or pprof).
pub const MAX_PROFILE_BYTES: u64 = 1 << 30;

/// Opens a profile file for reading without blocking on a FIFO or taking a terminal, and
/// refuses anything but a regular file.
pub fn open_profile(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |source| Error::File {
        action: "cannot read",
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(cannot)?;
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(Error::InvalidOptions(format!(
            "{} is not a regular file: give a folded, perf.data or pprof file",
            path.display()
        )));
    }
    Ok(file)
}

/// Reads a folded or gzip'ed pprof profile from `path` (at most [`MAX_PROFILE_BYTES`];
/// perf.data files go through the recorder instead).
pub fn read_folded_or_pprof(path: &Path) -> Result<Folded> {
    let file = open_profile(path)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_PROFILE_BYTES + 1),
        &mut bytes,
    )
    .map_err(|source| Error::File {
        action: "cannot read",
        path: path.to_owned(),
        source,
    })?;
    if bytes.len() as u64 > MAX_PROFILE_BYTES {
        return Err(Error::Malformed(format!(
            "{} is larger than {} GiB: too large for folded stacks or pprof",
            path.display(),
            MAX_PROFILE_BYTES >> 30
        )));
    }
    match detect(&bytes) {
        BaselineKind::Pprof => super::pprof::to_folded(&bytes),
        _ => {
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                Error::Malformed(format!(
                    "{} is neither folded stacks (text), perf.data nor a gzip'ed pprof profile",
                    path.display()
                ))
            })?;
            Folded::parse(text)
        }
    }
}

/// inferno's annotations (`_[k]`, `_[i]`, `_[j]`, `_[w]`) are not shown in frame titles.
fn shown_name(frame: &str) -> &str {
    match frame.len().checked_sub(4).map(|i| (i, &frame[i..])) {
        Some((i, tail))
            if frame.is_char_boundary(i)
                && tail.starts_with("_[")
                && tail.ends_with(']')
                && matches!(&tail[2..3], "k" | "i" | "j" | "w") =>
        {
            &frame[..i]
        }
        _ => frame,
    }
}

/// Inclusive weight of every path from the root (`a;b;c`, names as shown), `""` for all.
fn inclusive(folded: &Folded) -> HashMap<String, u64> {
    let mut map: HashMap<String, u64> = HashMap::new();
    for (stack, weight) in folded.stacks() {
        *map.entry(String::new()).or_default() += weight;
        let mut path = String::new();
        for (i, frame) in stack.split(';').enumerate() {
            if i > 0 {
                path.push(';');
            }
            path.push_str(shown_name(frame));
            *map.entry(path.clone()).or_default() += weight;
        }
    }
    map
}

/// Per-path weights before (scaled when normalizing) and after.
struct Deltas {
    before: HashMap<String, u64>,
    after: HashMap<String, u64>,
    scale: f64,
    max_abs: f64,
}

impl Deltas {
    fn new(base: &Baseline, after: &Folded) -> Self {
        let before = inclusive(&base.folded);
        let after_map = inclusive(after);
        let scale = if base.normalize && base.folded.total() > 0 {
            after.total() as f64 / base.folded.total() as f64
        } else {
            1.0
        };
        let mut d = Deltas {
            before,
            after: after_map,
            scale,
            max_abs: 0.0,
        };
        let paths: Vec<String> = d.after.keys().cloned().collect();
        d.max_abs = paths
            .iter()
            .map(|p| d.change(p).0.abs())
            .fold(0.0, f64::max);
        d
    }

    /// (before scaled, after, after - before) for `path`.
    fn values(&self, path: &str) -> (f64, f64) {
        let before = self.before.get(path).copied().unwrap_or(0) as f64 * self.scale;
        let after = self.after.get(path).copied().unwrap_or(0) as f64;
        (before, after)
    }

    /// (change, change relative to the larger of before and after).
    fn change(&self, path: &str) -> (f64, f64) {
        let (before, after) = self.values(path);
        let delta = after - before;
        (delta, delta / before.max(after).max(1.0))
    }

    /// Red for growth, blue for shrinkage, deeper for larger changes; grey below noise.
    fn color(&self, path: &str) -> String {
        let (delta, relative) = self.change(path);
        if relative.abs() < NEUTRAL_CHANGE || self.max_abs == 0.0 {
            return "rgb(220,220,220)".into();
        }
        let intensity = 0.3 + 0.7 * (delta.abs() / self.max_abs);
        let v = (225.0 * (1.0 - intensity)).round() as u8;
        if delta > 0.0 {
            format!("rgb(255,{v},{v})")
        } else {
            format!("rgb({v},{v},255)")
        }
    }
}

/// Draws the differential SVG of `view` against `base`.
pub fn write_svg(base: &Baseline, view: &mut View<'_>, writer: &mut dyn Write) -> Result<()> {
    let units = super::svg::units(view.profile);
    let mut graph = view.graph.clone();
    if graph.subtitle.is_none() {
        graph.subtitle = Some(format!(
            "Differential against {}{}: red grew, blue shrank (inclusive weight)",
            base.path.display(),
            if base.normalize { ", normalized" } else { "" }
        ));
    }
    let mut options = super::svg::inferno_options(&graph, &units);
    let mut svg = Vec::new();
    super::svg::draw(view.folded, &mut options, &mut svg)?;
    let svg = String::from_utf8(svg)
        .map_err(|_| Error::Malformed("inferno wrote a non-UTF-8 SVG".into()))?;
    let deltas = Deltas::new(base, view.folded);
    let out = recolor(&svg, graph.inverted, &deltas, &units);
    writer
        .write_all(out.as_bytes())
        .map_err(|e| Error::io("writing the differential graph", e))
}

/// One frame rectangle of inferno's SVG.
struct SvgFrame {
    name: String,
    y: i64,
    x: u64,
    w: u64,
    title: std::ops::Range<usize>,
    fill: std::ops::Range<usize>,
}

/// The frames after `<svg id="frames"`: each `<title>` and the `<rect>` after it.
fn svg_frames(svg: &str) -> Vec<SvgFrame> {
    let mut frames = Vec::new();
    let mut pos = svg.find("id=\"frames\"").unwrap_or(0);
    while let Some(start) = svg[pos..]
        .find("<title>")
        .map(|i| pos + i + "<title>".len())
    {
        let Some(end) = svg[start..].find("</title>").map(|i| start + i) else {
            break;
        };
        let Some(rect) = svg[end..].find("<rect").map(|i| end + i) else {
            break;
        };
        let rect_end = svg[rect..].find("/>").map_or(svg.len(), |i| rect + i);
        let tag = &svg[rect..rect_end];
        let attr = |name: &str| {
            let key = format!(" {name}=\"");
            tag.find(&key).map(|i| {
                let from = rect + i + key.len();
                from..from + svg[from..].find('"').unwrap_or(0)
            })
        };
        pos = rect_end;
        let (Some(y), Some(x), Some(w), Some(fill)) =
            (attr("y"), attr("fg:x"), attr("fg:w"), attr("fill"))
        else {
            continue;
        };
        let title = crate::output::diff::unescape(&svg[start..end]);
        let name = title.rsplit_once(" (").map_or("", |(n, _)| n).to_owned();
        frames.push(SvgFrame {
            name,
            y: svg[y].parse().unwrap_or(0),
            x: svg[x].parse().unwrap_or(0),
            w: svg[w].parse().unwrap_or(0),
            title: start..end,
            fill,
        });
    }
    frames
}

/// The root path of every frame, from the geometry: a frame's parent is the frame one level
/// rootward whose sample extent covers it. Depth 0 is inferno's "all" frame, path "".
fn frame_paths(frames: &[SvgFrame], inverted: bool) -> Vec<Option<String>> {
    let mut ys: Vec<i64> = frames.iter().map(|f| f.y).collect();
    ys.sort_unstable();
    ys.dedup();
    if !inverted {
        ys.reverse();
    }
    let depth = |y: i64| ys.iter().position(|&v| v == y).unwrap_or(0);
    let mut order: Vec<usize> = (0..frames.len()).collect();
    order.sort_by_key(|&i| (depth(frames[i].y), frames[i].x));
    let mut paths: Vec<Option<String>> = vec![None; frames.len()];
    // Per depth: (x, w, index) sorted by x.
    let mut levels: Vec<Vec<(u64, u64, usize)>> = vec![Vec::new(); ys.len()];
    for &i in &order {
        let d = depth(frames[i].y);
        let f = &frames[i];
        paths[i] = if d == 0 {
            Some(String::new())
        } else {
            let parents = &levels[d - 1];
            let at = parents.partition_point(|p| p.0 <= f.x);
            at.checked_sub(1)
                .map(|j| parents[j])
                .filter(|p| f.x < p.0 + p.1.max(1))
                .and_then(|p| paths[p.2].clone())
                .map(|parent| {
                    if d == 1 {
                        f.name.clone()
                    } else {
                        format!("{parent};{}", f.name)
                    }
                })
        };
        levels[d].push((f.x, f.w, i));
    }
    paths
}

fn recolor(svg: &str, inverted: bool, deltas: &Deltas, units: &super::svg::Units) -> String {
    let frames = svg_frames(svg);
    let paths = frame_paths(&frames, inverted);
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for (frame, path) in frames.iter().zip(&paths) {
        let Some(path) = path else { continue };
        let (before, after) = deltas.values(path);
        let (delta, relative) = deltas.change(path);
        let f = units.factor;
        let name = if path.is_empty() { "all" } else { &frame.name };
        let title = format!(
            "{name} (before {:.0}, after {:.0} {}; change {:+.0}, {:+.1}%)",
            before * f,
            after * f,
            units.count_name,
            delta * f,
            relative * 100.0
        );
        edits.push((frame.title.clone(), escape(&title)));
        edits.push((frame.fill.clone(), deltas.color(path)));
    }
    edits.sort_by_key(|e| e.0.start);
    let mut out = String::with_capacity(svg.len() + edits.len() * 16);
    let mut last = 0;
    for (range, text) in edits {
        out.push_str(&svg[last..range.start]);
        out.push_str(&text);
        last = range.end;
    }
    out.push_str(&svg[last..]);
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// XML entities back to text (inferno escapes frame titles).
pub fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Folded output of a diff: `stack before after` per stack of either profile, raw counts (the
/// format inferno's `difffolded` writes).
pub fn write_folded(base: &Baseline, after: &Folded, writer: &mut dyn Write) -> Result<()> {
    let mut both: HashMap<&str, (u64, u64)> = HashMap::new();
    for (stack, w) in base.folded.stacks() {
        both.entry(stack).or_default().0 += w;
    }
    for (stack, w) in after.stacks() {
        both.entry(stack).or_default().1 += w;
    }
    let mut lines: Vec<_> = both.into_iter().collect();
    lines.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut text = String::new();
    for (stack, (b, a)) in lines {
        text.push_str(&format!("{stack} {b} {a}\n"));
    }
    writer
        .write_all(text.as_bytes())
        .map_err(|e| Error::io("writing folded stacks", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::GraphOptions;
    use crate::profile::Profile;

    fn colors(svg: &str) -> HashMap<String, String> {
        let frames = svg_frames(svg);
        frames
            .iter()
            .map(|f| (f.name.clone(), svg[f.fill.clone()].to_owned()))
            .collect()
    }

    #[test]
    fn every_frame_coloured_by_its_inclusive_change() {
        let before = Folded::parse("p;main;a 60\np;main;b 30\np;main;c 10\np;other 100\n").unwrap();
        let after = Folded::parse("p;main;a 60\np;main;b 60\np;main;c 10\np;other 100\n").unwrap();
        let base = Baseline {
            folded: before,
            normalize: false,
            path: "before.folded".into(),
        };
        let profile = Profile::from_folded(&after, false);
        let info = super::super::RecordingInfo::default();
        let graph = GraphOptions::default();
        let mut after = after;
        let mut view = View {
            profile: &profile,
            info: &info,
            folded: &mut after,
            diff: Some(&base),
            graph: &graph,
        };
        let mut out = Vec::new();
        write_svg(&base, &mut view, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        let c = colors(&svg);
        let red = |c: &HashMap<String, String>, n: &str| {
            c[n].starts_with("rgb(255,") && !c[n].ends_with(",255)")
        };
        assert!(red(&c, "b"), "{c:?}");
        assert!(red(&c, "main"), "callers of b grew too: {c:?}");
        assert_eq!(c["a"], "rgb(220,220,220)");
        assert_eq!(c["other"], "rgb(220,220,220)");
        assert!(
            svg.contains("b (before 30, after 60 samples; change +30, +50.0%)"),
            "{svg}"
        );
        // Normalized: the unchanged functions shrank relative to the total.
        let normalized = Baseline {
            normalize: true,
            ..base.clone()
        };
        let mut out = Vec::new();
        write_svg(&normalized, &mut view, &mut out).unwrap();
        let c = colors(&String::from_utf8(out).unwrap());
        assert!(c["a"].ends_with(",255)"), "{c:?}");
        assert!(red(&c, "b"));
    }

    #[test]
    fn detects_kinds_and_strips_annotations() {
        assert_eq!(detect(b"PERFILE2...."), BaselineKind::PerfData);
        assert_eq!(detect(&[0x1f, 0x8b, 8]), BaselineKind::Pprof);
        assert_eq!(detect(b"a;b 1\n"), BaselineKind::Folded);
        assert_eq!(shown_name("read_[k]"), "read");
        assert_eq!(shown_name("x_[z]"), "x_[z]");
        assert_eq!(shown_name("é"), "é");
    }
}
