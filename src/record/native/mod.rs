//! The built-in Linux sampler: perf_event_open, ring buffers, launch and attach.
