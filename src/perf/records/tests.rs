//! Tests of the record parser on hand-built records.

use super::*;
use crate::perf::{
    callchain as cc, misc, record_kind as kind, regs_abi, regs_x86_64, sample_type as st,
};

fn words(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

fn pid_tid(pid: u32, tid: u32) -> u64 {
    u64::from_ne_bytes(
        [pid.to_ne_bytes(), tid.to_ne_bytes()]
            .concat()
            .try_into()
            .unwrap(),
    )
}

fn full_format() -> SampleFormat {
    SampleFormat {
        sample_type: st::IP
            | st::TID
            | st::TIME
            | st::CPU
            | st::PERIOD
            | st::CALLCHAIN
            | st::REGS_USER
            | st::STACK_USER,
        // bp, sp and ip only: three registers.
        sample_regs_user: (1 << regs_x86_64::BP) | (1 << regs_x86_64::SP) | (1 << regs_x86_64::IP),
        read_format: 0,
        branch_sample_type: 0,
        sample_id_all: true,
    }
}

/// A sample with a kernel+user callchain, three registers and a 32-byte stack of which 16 are used.
fn sample_body() -> Vec<u8> {
    let mut body = words(&[0xffff_ffff_8100_0000, pid_tid(10, 11), 5000, 1, 250_000]);
    body.extend(words(&[
        5,
        cc::CONTEXT_KERNEL,
        0xffff_ffff_8100_0000,
        cc::CONTEXT_USER,
        0x401000,
        0x401234,
    ]));
    body.extend(words(&[regs_abi::ABI_64, 0x7ff0, 0x7fe0, 0x401000])); // bp, sp, ip
    body.extend(words(&[32, 1, 2, 3, 4, 16]));
    body
}

#[test]
fn parses_a_full_sample() {
    let body = sample_body();
    let Record::Sample(s) =
        parse_record(&full_format(), kind::SAMPLE, misc::KERNEL, &body).unwrap()
    else {
        panic!("not a sample")
    };
    assert_eq!(
        (s.pid, s.tid, s.time, s.cpu, s.period),
        (10, 11, 5000, 1, 250_000)
    );
    assert_eq!(s.callchain.len(), 5);
    assert_eq!(
        s.callchain.kernel().collect::<Vec<_>>(),
        [0xffff_ffff_8100_0000]
    );
    assert_eq!(s.callchain.user().collect::<Vec<_>>(), [0x401000, 0x401234]);
    let regs = s.user_regs.unwrap();
    assert_eq!(regs.get(regs_x86_64::SP), Some(0x7fe0));
    assert_eq!(regs.get(regs_x86_64::IP), Some(0x401000));
    assert_eq!(regs.get(regs_x86_64::BP), Some(0x7ff0));
    assert_eq!(regs.get(0), None);
    assert_eq!(regs.iter().count(), 3);
    assert_eq!(s.user_stack, &words(&[1, 2])[..]);
    assert_eq!(record_time(&full_format(), kind::SAMPLE, &body), Some(5000));
}

#[test]
fn sample_of_kernel_thread_has_no_regs_or_stack() {
    let mut body = words(&[0xffff_ffff_8100_0000, pid_tid(0, 0), 7, 0, 1, 0]);
    body.extend(words(&[regs_abi::NONE, 0]));
    let Record::Sample(s) =
        parse_record(&full_format(), kind::SAMPLE, misc::KERNEL, &body).unwrap()
    else {
        panic!()
    };
    assert!(s.user_regs.is_none());
    assert!(s.user_stack.is_empty());
    assert!(s.callchain.is_empty());
}

#[test]
fn guest_and_unknown_markers_are_skipped() {
    let chain = words(&[
        cc::CONTEXT_HV,
        0x1,
        cc::CONTEXT_USER,
        0x2,
        cc::CONTEXT_MAX,
        0x3,
        cc::CONTEXT_GUEST_USER,
        0x4,
        cc::CONTEXT_KERNEL,
        0x5,
    ]);
    // A kernel part never follows the user part: that PERF_CONTEXT_KERNEL is a junk user entry
    // and 0x5 stays in the (dropped) guest context before it.
    let frames: Vec<_> = CallChain::from_bytes(&chain).frames().collect();
    assert_eq!(frames, [(Space::User, 0x2)]);
}

#[test]
fn mmap2_comm_and_trailer_time() {
    let format = full_format();
    let mut body = words(&[pid_tid(3, 4), 0x400000, 0x1000, 0x2000]);
    body.extend(8u32.to_ne_bytes());
    body.extend(1u32.to_ne_bytes());
    body.extend(words(&[99, 0]));
    body.extend(5u32.to_ne_bytes());
    body.extend(2u32.to_ne_bytes());
    body.extend(b"/bin/true\0\0\0\0\0\0\0");
    body.extend(words(&[pid_tid(3, 4), 777, 0])); // trailer: tid, time, cpu
    let Record::Mmap2(m) = parse_record(&format, kind::MMAP2, misc::USER, &body).unwrap() else {
        panic!()
    };
    assert_eq!(
        (m.pid, m.address, m.length, m.pgoff, m.prot),
        (3, 0x400000, 0x1000, 0x2000, 5)
    );
    assert_eq!(m.filename, b"/bin/true");
    assert_eq!(
        m.file_id,
        MmapFileId::Inode {
            major: 8,
            minor: 1,
            inode: 99,
            generation: 0
        }
    );
    assert_eq!(record_time(&format, kind::MMAP2, &body), Some(777));

    let mut comm = words(&[pid_tid(3, 3)]);
    comm.extend(b"sh\0\0\0\0\0\0");
    comm.extend(words(&[pid_tid(3, 3), 888, 1]));
    let Record::Comm(c) = parse_record(&format, kind::COMM, misc::COMM_EXEC, &comm).unwrap() else {
        panic!()
    };
    assert_eq!((c.pid, c.name, c.exec), (3, &b"sh"[..], true));
    assert_eq!(record_time(&format, kind::COMM, &comm), Some(888));
}

#[test]
fn old_mmap_and_fork() {
    let format = SampleFormat::default();
    let mut body = words(&[pid_tid(1, 1), 0x1000, 0x100, 0]);
    body.extend(b"[vdso]\0\0");
    let Record::Mmap2(m) = parse_record(&format, kind::MMAP, misc::USER, &body).unwrap() else {
        panic!()
    };
    assert_eq!(
        (m.filename, m.file_id, m.prot),
        (&b"[vdso]"[..], MmapFileId::None, 5)
    );
    let fork = words(&[pid_tid(5, 1), pid_tid(5, 1), 1234]);
    assert_eq!(
        parse_record(&format, kind::FORK, 0, &fork).unwrap(),
        Record::Fork(Fork {
            pid: 5,
            ppid: 1,
            tid: 5,
            ptid: 1,
            time: 1234
        })
    );
    assert_eq!(record_time(&format, kind::FORK, &fork), Some(1234));
    assert_eq!(
        parse_record(&format, 99, 0, &[]).unwrap(),
        Record::Other { kind: 99 }
    );
}

#[test]
fn truncation_reports_field_and_offset() {
    let body = sample_body();
    let err = parse_record(&full_format(), kind::SAMPLE, 0, &body[..50]).unwrap_err();
    assert_eq!(err.field, "callchain");
    assert_eq!(err.offset, 48);
    assert!(err.to_string().contains("callchain at byte 48"), "{err}");
}

#[test]
fn never_panics_on_garbage() {
    let formats = [
        full_format(),
        SampleFormat {
            sample_type: u64::MAX,
            sample_regs_user: u64::MAX,
            read_format: 0xff,
            branch_sample_type: u64::MAX,
            sample_id_all: true,
        },
        SampleFormat::default(),
    ];
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid = sample_body();
    for round in 0..4000 {
        let len = (next() % 200) as usize;
        let mut body: Vec<u8> = if round % 2 == 0 {
            valid[..len.min(valid.len())].to_vec()
        } else {
            (0..len).map(|_| next() as u8).collect()
        };
        if round % 3 == 0 && body.len() >= 8 {
            // A huge count somewhere.
            let at = (next() as usize % (body.len() / 8)) * 8;
            body[at..at + 8].copy_from_slice(&u64::MAX.to_ne_bytes());
        }
        for format in &formats {
            for kind in [1, 2, 3, 4, 5, 6, 7, 9, 10, 13, 68, 200] {
                let misc = next() as u16;
                if let Ok(Record::Sample(s)) = parse_record(format, kind, misc, &body) {
                    let _ = s.callchain.frames().count();
                    if let Some(regs) = s.user_regs {
                        let _ = regs.iter().count();
                    }
                }
                let _ = record_time(format, kind, &body);
            }
        }
    }
}

#[test]
fn switch_records_with_the_sample_id_trailer() {
    // The sample-id trailer of these fields: pid/tid, time, cpu.
    let format = SampleFormat {
        sample_type: st::TID | st::TIME | st::CPU,
        sample_id_all: true,
        ..Default::default()
    };
    let trailer = words(&[pid_tid(10, 11), 5000, 1]);
    let out = misc::SWITCH_OUT | misc::SWITCH_OUT_PREEMPT;
    let Record::Switch(s) = parse_record(&format, kind::SWITCH, out, &trailer).unwrap() else {
        panic!("not a switch");
    };
    assert_eq!(
        (s.pid, s.tid, s.time, s.out, s.preempt),
        (10, 11, 5000, true, true)
    );
    // CPU-wide: next/prev pid and tid first; a switch-in is never a preemption.
    let mut body = words(&[pid_tid(20, 21)]);
    body.extend(&trailer);
    let switch_in = misc::SWITCH_OUT_PREEMPT;
    let Record::Switch(s) = parse_record(&format, kind::SWITCH_CPU_WIDE, switch_in, &body).unwrap()
    else {
        panic!("not a switch");
    };
    assert_eq!((s.tid, s.out, s.preempt), (11, false, false));
    // Too short for its trailer: nothing known, but no error.
    let Record::Switch(s) = parse_record(&format, kind::SWITCH, 0, &[0; 4]).unwrap() else {
        panic!("not a switch");
    };
    assert_eq!((s.pid, s.time), (0, 0));
}

#[test]
fn a_junk_user_return_address_is_not_a_context_marker() {
    // The kernel's frame-pointer walk of user code without frame pointers can store -128
    // (PERF_CONTEXT_KERNEL) as a "return address": it must not turn user addresses into kernel
    // ones.
    let kernel = super::super::callchain::CONTEXT_KERNEL;
    let user = super::super::callchain::CONTEXT_USER;
    let entries = [kernel, 0xffff_ffff_8100_0000, user, 0x1000, kernel, 0x2000];
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_ne_bytes()).collect();
    let chain = CallChain::from_bytes(&bytes);
    assert_eq!(chain.kernel().collect::<Vec<_>>(), [0xffff_ffff_8100_0000]);
    assert_eq!(chain.user().collect::<Vec<_>>(), [0x1000, 0x2000]);
}
