//! The terminal summary printed on stderr after a run: what was recorded, the top functions by
//! self and by total share, and where the outputs went. It fits 100 columns; colour (bold
//! headers) only when the caller says stderr is a terminal.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::RecordingInfo;
use crate::options::OutputTarget;
use crate::profile::Profile;

/// Characters of a function name in a table column; longer names are cut with `…`.
const NAME_WIDTH: usize = 40;

/// The summary of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// How long recording lasted, if known.
    pub duration: Option<Duration>,
    /// The sampled event.
    pub event: String,
    /// Sample records.
    pub samples: u64,
    /// Occurrences of the event, when the profile counts events (`-e page-faults`): period ×
    /// samples.
    pub events: Option<u64>,
    /// Samples the kernel dropped.
    pub lost: u64,
    /// Stacks cut short.
    pub truncated: u64,
    /// Top functions by self share (leaf of the stack), as (name, share in 0..=1).
    pub by_self: Vec<(String, f64)>,
    /// Top functions by total share (anywhere in the stack).
    pub by_total: Vec<(String, f64)>,
    /// The outputs written: (where, format name).
    pub outputs: Vec<(String, &'static str)>,
}

impl Summary {
    /// Summarizes `profile` with `rows` functions per table, for the given outputs.
    pub fn new(
        profile: &Profile,
        info: &RecordingInfo,
        rows: usize,
        outputs: &[OutputTarget],
    ) -> Self {
        let measure = profile.measure;
        let total = profile.total(measure).max(1) as f64;
        // Weights per function name, found through the frames' name ids (frames of one name,
        // such as a function inlined in several places, count once per stack): no hashing of
        // names per sample frame.
        let mut name_ids: HashMap<&str, usize> = HashMap::new();
        let frame_name: Vec<usize> = (profile.frames.iter())
            .map(|f| {
                let next = name_ids.len();
                *name_ids.entry(&f.function).or_insert(next)
            })
            .collect();
        let mut self_by_name: Vec<Option<u64>> = vec![None; name_ids.len()];
        let mut total_by_name: Vec<Option<u64>> = vec![None; name_ids.len()];
        // The last sample (index + 1) that counted each name.
        let mut counted = vec![0usize; name_ids.len()];
        for (i, sample) in profile.samples.iter().enumerate() {
            let value = sample.value(measure);
            let frames = &profile.stacks[sample.stack.0 as usize].frames;
            if let Some(leaf) = frames.last() {
                *self_by_name[frame_name[leaf.0 as usize]].get_or_insert(0) += value;
            }
            for f in frames.iter() {
                let name = frame_name[f.0 as usize];
                if counted[name] != i + 1 {
                    counted[name] = i + 1;
                    *total_by_name[name].get_or_insert(0) += value;
                }
            }
        }
        let by_name = |weights: &[Option<u64>]| -> HashMap<&str, u64> {
            (name_ids.iter())
                .filter_map(|(&name, &id)| Some((name, weights[id]?)))
                .collect()
        };
        let (self_w, total_w) = (by_name(&self_by_name), by_name(&total_by_name));
        let top = |map: HashMap<&str, u64>| {
            let mut v: Vec<(String, f64)> = map
                .into_iter()
                .map(|(n, w)| (n.to_owned(), w as f64 / total))
                .collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(rows);
            v
        };
        Summary {
            duration: info.duration,
            event: profile.event.clone(),
            samples: profile.sample_count(),
            events: matches!(profile.weight_unit, crate::profile::WeightUnit::Events(_))
                .then(|| profile.total(crate::profile::Measure::Weight)),
            lost: info.lost,
            truncated: info.truncated,
            by_self: top(self_w),
            by_total: top(total_w),
            outputs: outputs
                .iter()
                .map(|o| {
                    let place = if crate::sink::is_stdout(&o.path) {
                        "standard output".to_owned()
                    } else {
                        o.path.display().to_string()
                    };
                    (place, o.format.name())
                })
                .collect(),
        }
    }

    /// The summary as lines for stderr; bold headers when `color`.
    pub fn render(&self, color: bool) -> String {
        let (bold, reset) = if color {
            ("\x1b[1m", "\x1b[0m")
        } else {
            ("", "")
        };
        let mut out = String::new();
        let duration = self
            .duration
            .map(|d| format!("{:.2} s of ", d.as_secs_f64()))
            .unwrap_or_default();
        let what = if self.event.is_empty() {
            // Folded input: no event, no duration.
            "flamegraph: read".to_owned()
        } else {
            format!("flamegraph: recorded {duration}{}:", self.event)
        };
        let events = self
            .events
            .map(|n| format!(" ({n} {})", self.event))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{what} {} samples{events}, {} lost, {} truncated",
            self.samples, self.lost, self.truncated
        );
        let rows = self.by_self.len().max(self.by_total.len());
        if rows > 0 {
            let header = format!(
                "{:>7}  {:<NAME_WIDTH$}  {:>7}  function",
                "self", "function", "total"
            );
            let _ = writeln!(out, "{bold}{header}{reset}");
        }
        for i in 0..rows {
            let cell = |v: &[(String, f64)]| match v.get(i) {
                Some((name, share)) => (format!("{:.1}%", share * 100.0), cut(name)),
                None => (String::new(), String::new()),
            };
            let (s, sn) = cell(&self.by_self);
            let (t, tn) = cell(&self.by_total);
            let line = format!("{s:>7}  {sn:<NAME_WIDTH$}  {t:>7}  {tn}");
            let _ = writeln!(out, "{}", line.trim_end());
        }
        for (place, format) in &self.outputs {
            let _ = writeln!(out, "flamegraph: wrote {place} ({format})");
        }
        out
    }
}

/// `name` cut to [`NAME_WIDTH`] characters.
fn cut(name: &str) -> String {
    if name.chars().count() <= NAME_WIDTH {
        return name.to_owned();
    }
    let mut s: String = name.chars().take(NAME_WIDTH - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold::Folded;

    #[test]
    fn tables_fit_100_columns() {
        let long = "x".repeat(300);
        let text = format!("p;main;work_a 6\np;main;work_b 3\np;main;{long} 1\n");
        let profile = Profile::from_folded(&Folded::parse(&text).unwrap(), false);
        let s = Summary::new(&profile, &RecordingInfo::default(), 10, &[]);
        assert_eq!(s.by_self[0], ("work_a".into(), 0.6));
        assert_eq!(s.by_total[0], ("main".into(), 1.0));
        let text = s.render(false);
        assert!(text.contains("60.0%  work_a"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        assert!(!text.contains('\x1b'));
    }

    /// A name counts once per stack in the total (recursion, or two frames of one name: a
    /// kernel and a user `f`), and its self share adds up over the stacks it ends.
    #[test]
    fn names_count_once_per_stack() {
        let text = "p;main;f;g;f 2\np;main;f;f_[k] 3\np;main;g 5\n";
        let profile = Profile::from_folded(&Folded::parse(text).unwrap(), false);
        let s = Summary::new(&profile, &RecordingInfo::default(), 10, &[]);
        let share = |v: &[(String, f64)], n: &str| v.iter().find(|(m, _)| m == n).map(|x| x.1);
        assert_eq!(share(&s.by_total, "main"), Some(1.0));
        assert_eq!(share(&s.by_total, "g"), Some(0.7));
        assert_eq!(share(&s.by_self, "g"), Some(0.5));
        assert_eq!(share(&s.by_total, "f"), Some(0.5));
        assert_eq!(share(&s.by_self, "f"), Some(0.5));
    }
}
