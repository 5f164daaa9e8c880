//! speedscope export: speedscope's JSON file format
//! (<https://www.speedscope.app/file-format-schema.json>), opened at <https://www.speedscope.app>.
//!
//! Frames are shared between profiles; each thread is one "sampled" profile whose samples are
//! stacks of frame indices, root first, with a weight each. When the recording kept time order
//! (native recording and perf.data files, which the run asks for when a speedscope output is
//! requested) the samples are in time order, so speedscope's time order view is a timeline;
//! otherwise they are aggregated stacks. A sampled profile has no timestamps: gaps between
//! samples (the thread sleeping) are not shown.
//!
//! Weights are in the recording's unit: nanoseconds of cpu-clock (or off-CPU time), else
//! `none` (sample or event counts).

use std::io::Write;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::profile::{Profile, WeightUnit};

/// The schema URL speedscope requires in `$schema`.
pub const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

#[derive(Serialize)]
struct File<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    shared: Shared<'a>,
    profiles: Vec<Sampled>,
    name: String,
    #[serde(rename = "activeProfileIndex")]
    active_profile_index: usize,
    exporter: String,
}

#[derive(Serialize)]
struct Shared<'a> {
    frames: Vec<FrameOut<'a>>,
}

#[derive(Serialize)]
struct FrameOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
}

#[derive(Serialize)]
struct Sampled {
    #[serde(rename = "type")]
    ty: &'static str,
    name: String,
    unit: &'static str,
    #[serde(rename = "startValue")]
    start_value: u64,
    #[serde(rename = "endValue")]
    end_value: u64,
    samples: Vec<Vec<u32>>,
    weights: Vec<u64>,
}

/// Writes `profile` in speedscope's file format.
pub fn write(profile: &Profile, writer: &mut dyn Write) -> Result<()> {
    serde_json::to_writer(writer, &file(profile))
        .map_err(|e| Error::io("writing the speedscope profile", e.into()))
}

fn file(profile: &Profile) -> File<'_> {
    let frames = profile
        .frames
        .iter()
        .map(|f| FrameOut {
            name: &f.function,
            file: f.file.as_deref(),
            line: f.line,
        })
        .collect();
    let (unit, nanoseconds) = match profile.weight_unit {
        WeightUnit::Nanoseconds => ("nanoseconds", true),
        WeightUnit::Microseconds => ("microseconds", true),
        _ => ("none", false),
    };
    let mut profiles: Vec<Sampled> = profile
        .threads
        .iter()
        .map(|t| Sampled {
            ty: "sampled",
            name: crate::profile::fold::root_name(t, crate::profile::fold::Roots::PerThread),
            unit,
            start_value: 0,
            end_value: 0,
            samples: Vec::new(),
            weights: Vec::new(),
        })
        .collect();
    for sample in &profile.samples {
        let out = &mut profiles[sample.thread.0 as usize];
        let stack = &profile.stacks[sample.stack.0 as usize].frames;
        out.samples.push(stack.iter().map(|f| f.0).collect());
        let weight = if nanoseconds || profile.measure == crate::profile::Measure::Weight {
            sample.weight
        } else {
            sample.count
        };
        out.weights.push(weight);
        out.end_value += weight;
    }
    profiles.retain(|p| !p.samples.is_empty());
    // The busiest thread first: speedscope opens the active profile.
    profiles.sort_by_key(|p| std::cmp::Reverse(p.end_value));
    File {
        schema: SCHEMA,
        shared: Shared { frames },
        profiles,
        name: profile.event.clone(),
        active_profile_index: 0,
        exporter: format!("flamegraph {}", env!("CARGO_PKG_VERSION")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold::Folded;

    #[test]
    fn one_profile_per_thread_root_first() {
        let folded = Folded::parse("a;main;f 2\nb;main;g 1\n").unwrap();
        let profile = Profile::from_folded(&folded, false);
        let mut out = Vec::new();
        write(&profile, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["$schema"], SCHEMA);
        assert_eq!(v["profiles"].as_array().unwrap().len(), 2);
        let first = &v["profiles"][0];
        assert_eq!(first["name"], "a");
        assert_eq!(first["unit"], "none");
        assert_eq!(first["weights"][0], 2);
        let frames = &v["shared"]["frames"];
        let stack: Vec<&str> = first["samples"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                frames[i.as_u64().unwrap() as usize]["name"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(stack, ["main", "f"]);
    }
}
