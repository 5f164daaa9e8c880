//! The last stage: folded stacks → `--post-process` → SVG (inferno) or `.folded` text.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::fold::Folded;
use crate::options::{GraphOptions, OutputFormat, OutputOptions};

/// Runs the folded stacks through a shell-quoted command (stdin → stdout), as
/// `--post-process 'sed s/foo/bar/'` or `--post-process 'tee stacks.folded'`.
pub fn post_process(folded: &Folded, command: &str) -> Result<Folded> {
    let fail = |reason: String| Error::PostProcess {
        command: command.to_owned(),
        reason,
    };
    let argv = shlex::split(command).ok_or_else(|| fail("unbalanced quotes".into()))?;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| fail("empty command".into()))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start {program}: {e}")))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| fail("no stdout pipe".into()))?;
    // Read concurrently so a command that writes as it reads never blocks on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let text = folded.to_text();
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read all its input (e.g. `head`) closes the pipe early; that is
        // its right, not an error.
        if let Err(e) = stdin.write_all(text.as_bytes()) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(fail(format!("writing its input: {e}")));
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| fail(format!("waiting for it: {e}")))?;
    let output = reader
        .join()
        .map_err(|_| fail("reader thread panicked".into()))?
        .map_err(|e| fail(format!("reading its output: {e}")))?;
    if !status.success() {
        return Err(fail(format!("it exited with {status}")));
    }
    Folded::parse(&output).map_err(|e| fail(format!("its output is not folded stacks: {e}")))
}

/// inferno's options for our graph options.
pub fn inferno_options(graph: &GraphOptions) -> inferno::flamegraph::Options<'static> {
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
    if graph.time_in_us {
        // Folded counts are microseconds; tooltips show (rounded) milliseconds.
        options.count_name = "ms".to_owned();
        options.factor = 0.001;
    }
    options
}

/// Fixed colours for the off-CPU markers, so waiting stands apart from the palette's on-CPU
/// frames: `[off-cpu]` blue, `[preempted]` grey.
fn off_cpu_colors() -> inferno::flamegraph::color::PaletteMap {
    use inferno::flamegraph::color::{Color, PaletteMap};
    let mut map = PaletteMap::default();
    map.insert(
        crate::profile::OFF_CPU_FRAME,
        Color {
            r: 60,
            g: 110,
            b: 220,
        },
    );
    map.insert(
        crate::profile::PREEMPTED_FRAME,
        Color {
            r: 160,
            g: 160,
            b: 160,
        },
    );
    map
}

/// Renders `folded` in the requested format into `writer`.
pub fn render(
    folded: &Folded,
    graph: &GraphOptions,
    format: OutputFormat,
    writer: impl Write,
) -> Result<()> {
    let mut writer = std::io::BufWriter::new(writer);
    match format {
        OutputFormat::Folded => writer
            .write_all(folded.to_text().as_bytes())
            .map_err(|e| Error::io("writing folded stacks", e))?,
        OutputFormat::Svg => {
            let mut options = inferno_options(graph);
            let mut colors = off_cpu_colors();
            if graph.time_in_us {
                options.palette_map = Some(&mut colors);
            }
            let lines: Vec<String> = folded
                .stacks()
                .iter()
                .map(|(s, w)| format!("{s} {w}"))
                .collect();
            inferno::flamegraph::from_lines(
                &mut options,
                lines.iter().map(String::as_str),
                &mut writer,
            )
            .map_err(|e| Error::io("drawing the flame graph", e))?;
        }
    }
    writer
        .flush()
        .map_err(|e| Error::io("writing the output", e))
}

/// Post-processes, then writes the output through [`crate::sink::Sink`] (a regular file
/// atomically: a failure never leaves half a graph nor a temporary file), then opens it if asked.
pub fn write_output(folded: &Folded, graph: &GraphOptions, output: &OutputOptions) -> Result<()> {
    let processed;
    let folded = match &output.post_process {
        Some(cmd) => {
            processed = post_process(folded, cmd)?;
            &processed
        }
        None => folded,
    };
    let mut sink = crate::sink::Sink::create(&output.path)?;
    render(folded, graph, output.format, &mut sink)?;
    sink.commit()?;
    if output.open {
        crate::sink::open_in_viewer(&output.path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Folded {
        Folded::parse("prog;main;work_a 6\nprog;main;work_b 3\nprog;main;work_c 1\n").unwrap()
    }

    #[test]
    fn svg_has_titles_and_options() {
        let graph = GraphOptions {
            title: Some("My <Title>".into()),
            inverted: true,
            ..GraphOptions::default()
        };
        let mut out = Vec::new();
        render(&sample(), &graph, OutputFormat::Svg, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.contains("My &lt;Title&gt;"), "title escaped in SVG");
        assert!(svg.contains("work_a (6 samples, 60.00%)"));
        assert!(svg.contains("inverted = true") || svg.contains("Icicle"));
    }

    #[test]
    fn off_cpu_graph_in_ms_with_marker_colours() {
        let graph = GraphOptions {
            time_in_us: true,
            ..GraphOptions::default()
        };
        let folded = Folded::parse("p;main;wait;[off-cpu] 150000\np;main;work 50000\n").unwrap();
        let mut out = Vec::new();
        render(&folded, &graph, OutputFormat::Svg, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.contains("[off-cpu] (150 ms, 75.00%)"), "{svg}");
        assert!(svg.contains("rgb(60,110,220)"), "[off-cpu] in blue");
    }

    #[test]
    fn post_process_through_sed() {
        let f = post_process(&sample(), "sed 's/work_a/renamed/'").unwrap();
        assert!(f.to_text().contains("prog;main;renamed 6"));
        let err = post_process(&sample(), "false").unwrap_err().to_string();
        assert!(err.contains("exited with"), "{err}");
        let err = post_process(&sample(), "/nonexistent/cmd")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot start"), "{err}");
    }
}
