//! Symbolization: addresses → function names (object + addr2line, kallsyms, perf maps).
