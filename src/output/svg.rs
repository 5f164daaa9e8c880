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
/// is not copied).
pub fn draw(
    folded: &mut Folded,
    options: &mut inferno::flamegraph::Options<'_>,
    writer: &mut dyn Write,
) -> Result<()> {
    folded
        .with_lines(|lines| inferno::flamegraph::from_lines(options, lines.iter().copied(), writer))
        .map_err(|e| Error::io("drawing the flame graph", e))
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
