//! SVG flame graphs, drawn by inferno from folded stacks.

use std::io::Write;

use crate::error::{Error, Result};
use crate::fold::Folded;
use crate::options::GraphOptions;
use crate::profile::{Measure, Profile, WeightUnit};

/// What a graph's numbers count, as inferno prints them: its count name and the factor from
/// folded counts to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Units {
    /// `samples`, `ms`, or an event's name.
    pub count_name: String,
    /// Folded counts × factor = numbers shown.
    pub factor: f64,
    /// Give the off-CPU markers their own colours (`[off-cpu]` blue, `[preempted]` grey).
    pub off_cpu_markers: bool,
}

/// The units of `profile`'s default measure: "samples" for sample counts, milliseconds for
/// time weights (folded counts stay nanoseconds), the event's name for event counts.
pub fn units(profile: &Profile) -> Units {
    let (count_name, factor) = match (profile.measure, &profile.weight_unit) {
        (Measure::Count, _) | (Measure::Weight, WeightUnit::Samples) => ("samples".into(), 1.0),
        (Measure::Weight, WeightUnit::Nanoseconds) => ("ms".into(), 1e-6),
        (Measure::Weight, WeightUnit::Microseconds) => ("ms".into(), 1e-3),
        (Measure::Weight, WeightUnit::Events(event)) => (event.clone(), 1.0),
    };
    Units {
        count_name,
        factor,
        off_cpu_markers: profile.weight_unit == WeightUnit::Microseconds,
    }
}

/// inferno's options for our graph options.
pub fn inferno_options(
    graph: &GraphOptions,
    units: &Units,
) -> inferno::flamegraph::Options<'static> {
    let mut options = inferno::flamegraph::Options::default();
    if let Some(title) = &graph.title {
        options.title = title.clone();
    } else if graph.flame_chart {
        options.title = "Flame Chart".to_owned();
    }
    options.subtitle = graph.subtitle.clone();
    options.deterministic = graph.deterministic;
    if graph.inverted {
        options.direction = inferno::flamegraph::Direction::Inverted;
    }
    options.reverse_stack_order = graph.reverse;
    options.notes = graph.notes.clone().unwrap_or_default();
    options.min_width = graph.min_width;
    options.image_width = graph.image_width;
    if let Some(palette) = graph.palette {
        options.colors = palette;
    }
    options.flame_chart = graph.flame_chart;
    options.count_name = units.count_name.clone();
    options.factor = units.factor;
    options
}

/// Draws `folded` as an SVG flame graph into `writer`.
pub fn write(
    folded: &mut Folded,
    graph: &GraphOptions,
    units: &Units,
    writer: &mut dyn Write,
) -> Result<()> {
    let mut options = inferno_options(graph, units);
    let mut colors = off_cpu_colors();
    if units.off_cpu_markers {
        options.palette_map = Some(&mut colors);
    }
    draw(folded, &mut options, writer)
}

/// Fixed colours for the off-CPU markers, so waiting stands apart from the palette's on-CPU
/// frames: `[off-cpu]` blue, `[preempted]` grey.
fn off_cpu_colors() -> inferno::flamegraph::color::PaletteMap {
    use inferno::flamegraph::color::{Color, PaletteMap};
    let mut map = PaletteMap::default();
    let blue = Color {
        r: 60,
        g: 110,
        b: 220,
    };
    let grey = Color {
        r: 160,
        g: 160,
        b: 160,
    };
    map.insert(crate::profile::OFF_CPU_FRAME, blue);
    map.insert(crate::profile::PREEMPTED_FRAME, grey);
    map
}

/// Draws `folded` with inferno's `options` (its lines written in place: a big profile's text
/// is not copied). A flame graph (merged stacks) is drawn from [`visible`]'s lines: the same
/// picture, from a fraction of the lines when most stacks are too narrow to see.
pub fn draw(
    folded: &mut Folded,
    options: &mut inferno::flamegraph::Options<'_>,
    writer: &mut dyn Write,
) -> Result<()> {
    let merged = !options.flame_chart && !options.reverse_stack_order && options.base.is_empty();
    let result = if merged {
        let mut visible = folded.with_lines(|lines| visible(lines, options.min_width));
        // The lines are in the order inferno would sort them into, and sorting the cut lines
        // again could reorder siblings (`f x.c:1` before `f x.c:10` once `f x.c:1;g` is cut to
        // `f x.c:1`). A flame chart's lines are merged as given, in reverse: so they are given
        // reversed, as a flame chart.
        options.flame_chart = true;
        let drawn = visible.with_lines(|lines| {
            inferno::flamegraph::from_lines(options, lines.iter().rev().copied(), writer)
        });
        options.flame_chart = false;
        drawn
    } else {
        folded.with_lines(|lines| {
            inferno::flamegraph::from_lines(options, lines.iter().copied(), writer)
        })
    };
    result.map_err(|e| Error::io("drawing the flame graph", e))
}

/// The collapsed `lines` (`stack weight`) as inferno draws them, in inferno's order, each cut
/// before its first frame that inferno would not draw: a frame narrower than `min_width` percent
/// of the total. The frames that are drawn keep their weights and places, so the graph is the
/// same; a system-wide profile's 56,000 lines, most of them a handful of samples deep in a
/// short-lived compiler, become a few thousand, and inferno's frame list shrinks with them.
///
/// inferno sorts the lines and merges each line's frames with the previous line's common prefix
/// (a frame is one box from the line that opens it to the line that closes it): the first pass
/// sums each box's weight, the second cuts each line at its first box below the threshold
/// (keeping at least the root frame, so the total stays the same) and merges consecutive equal
/// cuts.
fn visible(lines: &[&str], min_width: f64) -> Folded {
    let mut sorted: Vec<&str> = lines.to_vec();
    sorted.sort_unstable();
    let parsed = || {
        sorted.iter().filter_map(|line| {
            let (stack, weight) = line.rsplit_once(' ')?;
            Some((stack.trim(), weight.parse::<u64>().ok()?))
        })
    };
    // inferno's threshold, computed as inferno computes it.
    let total: u64 = parsed().map(|(_, weight)| weight).sum();
    let widthpertime_pct = 100.0 / total as f64;
    let min_weight = min_width / widthpertime_pct;
    let mut walk = Boxes::default();
    let mut weights: Vec<u64> = Vec::new();
    for (stack, weight) in parsed() {
        walk.step(stack);
        weights.resize(walk.opened, 0);
        for &id in &walk.open {
            weights[id] += weight;
        }
    }
    let mut walk = Boxes::default();
    let mut cut: Vec<(&str, u64)> = Vec::new();
    for (stack, weight) in parsed() {
        let open = walk.step(stack);
        let keep = (open.iter())
            .position(|&id| (weights[id] as f64) < min_weight)
            .unwrap_or(open.len())
            .max(1);
        let end = stack
            .split(';')
            .take(keep)
            .map(|f| f.len() + 1)
            .sum::<usize>()
            - 1;
        let prefix = &stack[..end];
        match cut.last_mut() {
            Some((last, w)) if *last == prefix => *w += weight,
            _ => cut.push((prefix, weight)),
        }
    }
    Folded::from_sequence(
        cut.into_iter()
            .map(|(stack, weight)| (stack.to_owned(), weight)),
    )
}

/// inferno's boxes over a sequence of stacks: each frame continues the box of the previous
/// stack's frame at the same depth while all frames before it are equal, else opens a new box.
#[derive(Default)]
struct Boxes<'a> {
    /// The previous stack's frames.
    frames: Vec<&'a str>,
    /// The box each of them is in.
    open: Vec<usize>,
    /// Boxes opened so far (the next box's id).
    opened: usize,
}

impl<'a> Boxes<'a> {
    /// Moves to `stack`; returns the box of each of its frames, root first.
    fn step(&mut self, stack: &'a str) -> &[usize] {
        let mut depth = 0;
        let mut shared = true;
        for frame in stack.split(';') {
            if shared && self.frames.get(depth) == Some(&frame) {
                depth += 1;
                continue;
            }
            if shared {
                self.frames.truncate(depth);
                self.open.truncate(depth);
                shared = false;
            }
            self.frames.push(frame);
            self.open.push(self.opened);
            self.opened += 1;
            depth += 1;
        }
        self.frames.truncate(depth);
        self.open.truncate(depth);
        &self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_titles_and_options() {
        let mut folded =
            Folded::parse("prog;main;work_a 6\nprog;main;work_b 3\nprog;main;work_c 1\n").unwrap();
        let graph = GraphOptions {
            title: Some("My <Title>".into()),
            inverted: true,
            ..GraphOptions::default()
        };
        let mut out = Vec::new();
        let units = Units {
            count_name: "samples".into(),
            factor: 1.0,
            off_cpu_markers: false,
        };
        write(&mut folded, &graph, &units, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.contains("My &lt;Title&gt;"), "title escaped in SVG");
        assert!(svg.contains("work_a (6 samples, 60.00%)"));
        assert!(svg.contains("inverted = true") || svg.contains("Icicle"));
    }

    /// The graph drawn from [`visible`]'s cut lines is byte for byte the graph of all lines,
    /// here with siblings whose order the cut could change (`f x.c:1` and `f x.c:10`), boxes
    /// just above and below the threshold, a whole root too narrow to draw, and repeated paths.
    #[test]
    fn cutting_invisible_frames_draws_the_same_graph() {
        let mut text = String::new();
        for i in 0..400 {
            text += &format!("p;main;f x.c:1;leaf{i} 1\n");
            text += &format!("p;main;g;h{};k{i} 1\n", i % 7);
        }
        text += "p;main;f x.c:10 300\np;main;f x.c:1 20\np;main;f x.c:1;big 50\n";
        text += "tiny;main 1\nq;main;f!x 3\nq;main;f;y 2\nq;main;f 9\n";
        for min_width in [0.01, 0.1, 0.5, 5.0] {
            let graph = GraphOptions {
                deterministic: true,
                min_width,
                ..GraphOptions::default()
            };
            let units = Units {
                count_name: "samples".into(),
                factor: 1.0,
                off_cpu_markers: false,
            };
            let mut folded = Folded::parse(&text).unwrap();
            let mut cut = Vec::new();
            write(&mut folded, &graph, &units, &mut cut).unwrap();
            let mut all = Vec::new();
            folded
                .with_lines(|lines| {
                    let mut options = inferno_options(&graph, &units);
                    inferno::flamegraph::from_lines(&mut options, lines.iter().copied(), &mut all)
                })
                .unwrap();
            assert!(
                cut == all,
                "min width {min_width}%: the cut lines draw another graph"
            );
            let lines = folded.with_lines(|lines| visible(lines, min_width));
            // At 0.01% of 1,185 samples every box is drawn; from 0.1% the leaves of weight 1 are not.
            assert_eq!(
                lines.stacks().len() < folded.stacks().len(),
                min_width >= 0.1
            );
            assert_eq!(lines.total(), folded.total());
        }
    }

    #[test]
    fn time_weights_show_as_milliseconds() {
        let mut folded = Folded::parse("prog;main;a 1500000000\nprog;main;b 500000000\n").unwrap();
        let units = Units {
            count_name: "ms".into(),
            factor: 1e-6,
            off_cpu_markers: false,
        };
        let mut out = Vec::new();
        write(&mut folded, &GraphOptions::default(), &units, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.contains("main (2,000 ms, 100.00%)"), "{svg}");
        assert!(svg.contains("a (1,500 ms, 75.00%)"), "{svg}");
    }

    #[test]
    fn off_cpu_graph_in_ms_with_marker_colours() {
        let mut folded =
            Folded::parse("p;main;wait;[off-cpu] 150000\np;main;work 50000\n").unwrap();
        let units = Units {
            count_name: "ms".into(),
            factor: 1e-3,
            off_cpu_markers: true,
        };
        let mut out = Vec::new();
        write(&mut folded, &GraphOptions::default(), &units, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.contains("[off-cpu] (150 ms, 75.00%)"), "{svg}");
        assert!(svg.contains("rgb(60,110,220)"), "[off-cpu] in blue");
    }
}
