//! Progress on stderr: a spinner with a count while a long post-processing step runs (a large
//! `--perfdata` file, symbolizing), and a one-line live status while recording.
//!
//! Shown only when stderr is a terminal, and only once the work has lasted
//! [`THRESHOLD`]; short runs and pipes see nothing. `FLAMEGRAPH_PROGRESS=always` drops the
//! threshold (for tests, under a pseudo-terminal), `FLAMEGRAPH_PROGRESS=never` turns it off.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long work runs before its progress is shown.
pub const THRESHOLD: Duration = Duration::from_millis(300);

/// The environment variable that forces progress on (`always`) or off (`never`).
pub const ENV: &str = "FLAMEGRAPH_PROGRESS";

/// A progress line that appears only when the work lasts.
pub struct Progress {
    start: Instant,
    threshold: Option<Duration>,
    what: &'static str,
    bar: Option<ProgressBar>,
    calls: u32,
    count: u64,
}

impl Progress {
    /// Progress of `what` (e.g. "reading perf.data"), counted in samples.
    pub fn new(what: &'static str) -> Self {
        let forced = std::env::var(ENV).ok();
        let threshold = match forced.as_deref() {
            Some("never") => None,
            _ if !std::io::stderr().is_terminal() => None,
            Some("always") => Some(Duration::ZERO),
            _ => Some(THRESHOLD),
        };
        Progress {
            start: Instant::now(),
            threshold,
            what,
            bar: None,
            calls: 0,
            count: 0,
        }
    }

    /// Counts `n` more samples; redraws at most every 1024 calls.
    pub fn add(&mut self, n: u64) {
        self.count += n;
        self.calls = self.calls.wrapping_add(1);
        if self.calls % 1024 == 1 {
            self.refresh();
        }
    }

    /// Names the current phase (e.g. "symbolizing").
    pub fn phase(&mut self, what: &'static str) {
        self.what = what;
        self.refresh();
    }

    fn refresh(&mut self) {
        let Some(threshold) = self.threshold else {
            return;
        };
        if self.bar.is_none() && self.start.elapsed() >= threshold {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} flamegraph: {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            // Keeps the spinner and the elapsed time moving through steps that report nothing
            // (symbolizing).
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}: {} samples", self.what, self.count));
            bar.tick();
        }
    }

    /// Removes the line.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
