//! Outputs: one file per format, each a pass over the recording's [`Profile`].
//!
//! - [`svg`]: inferno's interactive flame graph (and [`diff`] for differential graphs against a
//!   baseline);
//! - [`folded`]: folded stacks, the text every flame graph tool reads (and `--post-process`);
//! - [`pprof`]: gzip'ed protobuf for `go tool pprof` and continuous profilers;
//! - [`speedscope`]: speedscope's JSON file format, one sampled profile per thread;
//! - [`summary`]: the terminal summary printed after every run.
//!
//! The format of each `-o` file comes from its extension ([`Format::from_extension`]), else from
//! `--format`, else it is an SVG.

pub mod diff;
pub mod folded;
pub mod pprof;
pub mod speedscope;
pub mod summary;
pub mod svg;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fold::Folded;
use crate::options::{GraphOptions, OutputTarget};
use crate::profile::Profile;

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An interactive SVG flame graph.
    Svg,
    /// Folded stacks, one `frame;frame;frame count` per line, readable by `inferno-flamegraph`.
    Folded,
    /// A gzip'ed pprof `Profile` protobuf.
    Pprof,
    /// speedscope's JSON file format.
    Speedscope,
}

impl Format {
    /// The format a file name's extension names: `.svg`, `.folded`/`.collapsed`,
    /// `.pb.gz`/`.pprof`, `.speedscope.json`; `None` for any other name (and `-`).
    pub fn from_extension(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let formats = [
            (".speedscope.json", Format::Speedscope),
            (".pb.gz", Format::Pprof),
            (".pprof", Format::Pprof),
            (".folded", Format::Folded),
            (".collapsed", Format::Folded),
            (".svg", Format::Svg),
        ];
        formats
            .into_iter()
            .find(|(ext, _)| name.ends_with(ext) && name.len() > ext.len())
            .map(|(_, format)| format)
    }

    /// The format of `path`: its extension's, else `fallback` (`--format`), else SVG.
    pub fn resolve(path: &Path, fallback: Option<Format>) -> Format {
        Format::from_extension(path)
            .or(fallback)
            .unwrap_or(Format::Svg)
    }

    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Svg => "svg",
            Format::Folded => "folded",
            Format::Pprof => "pprof",
            Format::Speedscope => "speedscope",
        }
    }

    /// Whether the output is drawn from folded stacks, which `--post-process` can edit.
    pub fn takes_post_process(self) -> bool {
        matches!(self, Format::Svg | Format::Folded)
    }

    /// Whether the output needs threads kept apart by pid and tid (pprof's labels, speedscope's
    /// profile per thread).
    pub fn needs_threads(self) -> bool {
        matches!(self, Format::Pprof | Format::Speedscope)
    }

    /// Whether the output needs every sample in time order (speedscope's sampled profiles).
    pub fn needs_time(self) -> bool {
        self == Format::Speedscope
    }
}

/// What the recorder knows about the recording beyond its samples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordingInfo {
    /// How long recording lasted (wall clock when we ran it; first to last sample of a file).
    pub duration: Option<Duration>,
    /// Samples (or events) the kernel dropped.
    pub lost: u64,
    /// Stacks cut short (marked `[truncated]`).
    pub truncated: u64,
}

/// Everything an output is drawn from.
pub struct View<'a> {
    /// The recording.
    pub profile: &'a Profile,
    /// What else is known about it.
    pub info: &'a RecordingInfo,
    /// Its folded stacks, with the chosen roots, `--skip-after` and `--post-process` applied
    /// (mutable only so that the SVG renderer may write its weights in place: see
    /// [`Folded::with_lines`]; it leaves them as they were).
    pub folded: &'a mut Folded,
    /// The comparison with a baseline, for differential graphs.
    pub diff: Option<&'a diff::Baseline>,
    /// Graph options (titles, palette, ...).
    pub graph: &'a GraphOptions,
}

/// Writes one output through [`crate::sink::Sink`] (a regular file atomically: a failure never
/// leaves half an output nor a temporary file).
pub fn write(view: &mut View<'_>, target: &OutputTarget) -> Result<()> {
    let mut sink = crate::sink::Sink::create(&target.path)?;
    {
        let mut writer = std::io::BufWriter::new(&mut sink);
        write_to(view, target.format, &mut writer)?;
        writer
            .flush()
            .map_err(|e| Error::io("writing the output", e))?;
    }
    sink.commit()?;
    Ok(())
}

/// Renders `view` in `format` into `writer`.
pub fn write_to(view: &mut View<'_>, format: Format, writer: &mut dyn Write) -> Result<()> {
    match (format, view.diff) {
        (Format::Svg, None) => {
            svg::write(view.folded, view.graph, &svg::units(view.profile), writer)
        }
        (Format::Svg, Some(base)) => diff::write_svg(base, view, writer),
        (Format::Folded, None) => folded::write(view.folded, writer),
        (Format::Folded, Some(base)) => diff::write_folded(base, view.folded, writer),
        (Format::Pprof, _) => pprof::write(view.profile, view.info, writer),
        (Format::Speedscope, _) => speedscope::write(view.profile, writer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension() {
        let f = |p: &str| Format::from_extension(Path::new(p));
        assert_eq!(f("a.svg"), Some(Format::Svg));
        assert_eq!(f("dir/a.FOLDED"), Some(Format::Folded));
        assert_eq!(f("a.collapsed"), Some(Format::Folded));
        assert_eq!(f("profile.pb.gz"), Some(Format::Pprof));
        assert_eq!(f("cpu.pprof"), Some(Format::Pprof));
        assert_eq!(f("p.speedscope.json"), Some(Format::Speedscope));
        assert_eq!(f("p.json"), None);
        assert_eq!(f("-"), None);
        assert_eq!(f(".svg"), None);
        assert_eq!(
            Format::resolve(Path::new("-"), Some(Format::Pprof)),
            Format::Pprof
        );
        assert_eq!(
            Format::resolve(Path::new("x.svg"), Some(Format::Pprof)),
            Format::Svg
        );
        assert_eq!(Format::resolve(Path::new("graph"), None), Format::Svg);
    }
}
