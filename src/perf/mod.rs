//! The perf_event record format, shared by live ring buffers and perf.data files (OS-independent).
