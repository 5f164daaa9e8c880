//! The events a recording can sample (`-e/--event`), by name, independent of the OS: the
//! native recorder maps them to `perf_event_attr` type and config (`record/native/sys.rs`), the
//! perf-cli backend passes the name to `perf record -e`.
//!
//! Time events (`cpu-clock`, `task-clock`) weigh samples in nanoseconds; every other event
//! weighs them in occurrences of the event (period × samples), named after it.

use std::fmt;

/// A sampled event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Event {
    /// A per-CPU timer: where the CPU time goes (the default).
    #[default]
    CpuClock,
    /// A per-task timer: CPU time of the profiled threads.
    TaskClock,
    /// Page faults, minor and major (`faults`).
    PageFaults,
    /// Page faults served without I/O.
    MinorFaults,
    /// Page faults that needed I/O.
    MajorFaults,
    /// Context switches (`cs`): counted in the kernel, so it needs kernel access.
    ContextSwitches,
    /// Migrations to another CPU (`migrations`): counted in the kernel, needs kernel access.
    CpuMigrations,
    /// Hardware: CPU cycles.
    Cycles,
    /// Hardware: retired instructions.
    Instructions,
    /// Hardware: cache misses (usually last-level).
    CacheMisses,
    /// Hardware: cache accesses (usually last-level).
    CacheReferences,
    /// Hardware: mispredicted branches.
    BranchMisses,
    /// Hardware: retired branch instructions.
    BranchInstructions,
    /// Hardware: a raw PMU event (`rNNNN`, hex), as the CPU's manual numbers it.
    Raw(u64),
}

/// How often an event is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// About this many samples per second; the kernel adjusts the period.
    Frequency(u32),
    /// One sample every this many events (nanoseconds for time events).
    Period(u64),
}

/// Names and aliases, in the order the help lists them.
const NAMED: &[(&str, Event)] = &[
    ("cpu-clock", Event::CpuClock),
    ("task-clock", Event::TaskClock),
    ("page-faults", Event::PageFaults),
    ("faults", Event::PageFaults),
    ("minor-faults", Event::MinorFaults),
    ("major-faults", Event::MajorFaults),
    ("context-switches", Event::ContextSwitches),
    ("cs", Event::ContextSwitches),
    ("cpu-migrations", Event::CpuMigrations),
    ("migrations", Event::CpuMigrations),
    ("cycles", Event::Cycles),
    ("cpu-cycles", Event::Cycles),
    ("instructions", Event::Instructions),
    ("cache-misses", Event::CacheMisses),
    ("cache-references", Event::CacheReferences),
    ("branch-misses", Event::BranchMisses),
    ("branch-instructions", Event::BranchInstructions),
    ("branches", Event::BranchInstructions),
];

/// A name that is no event we know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "-e {0}: unknown event; choose one of cpu-clock (the default), task-clock, page-faults \
     (faults), minor-faults, major-faults, context-switches (cs), cpu-migrations (migrations), \
     cycles, instructions, cache-misses, cache-references, branch-misses, branch-instructions, \
     or rNNNN (a raw hardware event, hex)"
)]
pub struct UnknownEvent(pub String);

impl Event {
    /// The event named `name` (perf's names and aliases; `rNNNN` for a raw event; a `:u`
    /// modifier is accepted, user space being what is sampled without kernel access anyway).
    pub fn parse(name: &str) -> Result<Event, UnknownEvent> {
        let unknown = || UnknownEvent(name.to_owned());
        let base = name.strip_suffix(":u").unwrap_or(name);
        if let Some((_, event)) = NAMED.iter().find(|(n, _)| *n == base) {
            return Ok(*event);
        }
        let hex = base.strip_prefix('r').ok_or_else(unknown)?;
        if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unknown());
        }
        u64::from_str_radix(hex, 16)
            .map(Event::Raw)
            .map_err(|_| unknown())
    }

    /// The canonical name (perf's): what graphs, folded counts and summaries are labelled with.
    pub fn name(self) -> String {
        match self {
            Event::Raw(config) => format!("r{config:x}"),
            other => NAMED
                .iter()
                .find(|(_, e)| *e == other)
                .map_or_else(String::new, |(n, _)| (*n).to_owned()),
        }
    }

    /// Whether the period counts nanoseconds (`cpu-clock`, `task-clock`), not occurrences.
    pub fn is_time(self) -> bool {
        matches!(self, Event::CpuClock | Event::TaskClock)
    }

    /// Whether the CPU's performance monitoring unit counts it (absent on most virtual machines).
    pub fn is_hardware(self) -> bool {
        matches!(
            self,
            Event::Cycles
                | Event::Instructions
                | Event::CacheMisses
                | Event::CacheReferences
                | Event::BranchMisses
                | Event::BranchInstructions
                | Event::Raw(_)
        )
    }

    /// Whether it only fires in kernel mode, so that it never fires when the kernel is
    /// excluded (`perf_event_paranoid` 2 without privileges).
    pub fn is_kernel_only(self) -> bool {
        matches!(self, Event::ContextSwitches | Event::CpuMigrations)
    }

    /// How it is sampled when neither a frequency nor a period is given: time and hardware
    /// events at `frequency` Hz; software count events (faults, switches, migrations) at every
    /// occurrence. Those are rare next to instructions or nanoseconds, and a frequency would
    /// turn their exact counts into estimates (and miss a program's few major faults); a
    /// program that faults too often to follow loses samples, and the note about them says to
    /// raise --period.
    pub fn default_sampling(self, frequency: u32) -> Sampling {
        if self.is_time() || self.is_hardware() {
            Sampling::Frequency(frequency)
        } else {
            Sampling::Period(1)
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_and_raw_events() {
        assert_eq!(Event::parse("faults"), Ok(Event::PageFaults));
        assert_eq!(Event::parse("page-faults:u"), Ok(Event::PageFaults));
        assert_eq!(Event::parse("r01c2"), Ok(Event::Raw(0x1c2)));
        assert_eq!(Event::Raw(0x1c2).name(), "r1c2");
        assert_eq!(Event::PageFaults.name(), "page-faults");
        assert_eq!(Event::ContextSwitches.to_string(), "context-switches");
        for bad in [
            "",
            "r",
            "rxyz",
            "r11112222333344445",
            "sched:sched_switch",
            "Cycles",
        ] {
            let err = Event::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("unknown event") && !err.contains('\n'),
                "{err}"
            );
        }
        for (name, event) in NAMED {
            assert_eq!(Event::parse(&event.name()), Ok(*event), "{name}");
        }
    }

    #[test]
    fn default_sampling_by_kind() {
        assert_eq!(
            Event::CpuClock.default_sampling(997),
            Sampling::Frequency(997)
        );
        assert_eq!(
            Event::Cycles.default_sampling(997),
            Sampling::Frequency(997)
        );
        assert_eq!(
            Event::MajorFaults.default_sampling(997),
            Sampling::Period(1)
        );
    }
}
