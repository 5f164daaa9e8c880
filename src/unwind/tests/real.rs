//! A real walk: the test captures its own registers and copies its own stack, then unwinds it
//! against the modules of `/proc/self/maps` and symbolizes the frames with the symbol tables.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;

use object::{Object, ObjectSymbol};

use crate::elf::{MappingRange, SegmentMap};
use crate::frame::CodeAddress;
use crate::unwind::{
    ModuleLookup, ModuleRef, StackSnapshot, UnwindEnd, Unwinder, WalkMemo, X86_64Regs, X86_64,
};

/// The executable file mappings of this process.
struct SelfMaps {
    maps: Vec<(MappingRange, PathBuf)>,
    /// `[start, end)` of every mapping, for the stack's top.
    all: Vec<(u64, u64)>,
}

impl SelfMaps {
    fn read() -> SelfMaps {
        let text = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mut maps = Vec::new();
        let mut all = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (start, end) = fields[0].split_once('-').unwrap();
            let start = u64::from_str_radix(start, 16).unwrap();
            let end = u64::from_str_radix(end, 16).unwrap();
            all.push((start, end));
            let path = fields.get(5).copied().unwrap_or("");
            if fields[1].contains('x') && path.starts_with('/') {
                let pgoff = u64::from_str_radix(fields[2], 16).unwrap();
                maps.push((MappingRange { start, end, pgoff }, PathBuf::from(path)));
            }
        }
        SelfMaps { maps, all }
    }

    fn end_of_mapping(&self, addr: u64) -> u64 {
        let (_, end) = self
            .all
            .iter()
            .find(|(s, e)| (*s..*e).contains(&addr))
            .unwrap();
        *end
    }
}

impl ModuleLookup for SelfMaps {
    fn find(&self, avma: u64) -> Option<ModuleRef<'_>> {
        let (range, path) = self.maps.iter().find(|(r, _)| r.contains(avma))?;
        Some(ModuleRef {
            range: *range,
            path,
            key: None,
        })
    }
}

/// Registers and stack copy of the calling thread, taken inside this function.
struct Capture {
    regs: X86_64Regs,
    bytes: Vec<u8>,
}

#[inline(never)]
fn capture_stack(maps: &SelfMaps) -> Capture {
    let (ip, sp, bp): (u64, u64, u64);
    // SAFETY: reads rip (of the local label), rsp and rbp into registers; touches no memory.
    unsafe {
        std::arch::asm!(
            "lea 2f(%rip), {ip}",
            "2:",
            "mov %rsp, {sp}",
            "mov %rbp, {bp}",
            ip = out(reg) ip,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(att_syntax, nostack, nomem, preserves_flags),
        );
    }
    let len = (maps.end_of_mapping(sp) - sp).min(65528) as usize;
    let mut bytes = vec![0u8; len];
    // SAFETY: [sp, sp + len) lies in this thread's mapped stack (checked against /proc/self/maps)
    // and above the current stack pointer, so it is readable; the copy is a plain byte copy.
    unsafe { std::ptr::copy_nonoverlapping(sp as *const u8, bytes.as_mut_ptr(), len) };
    Capture {
        regs: X86_64Regs::new(ip, sp, bp),
        bytes,
    }
}

#[inline(never)]
fn e2e_level_two(maps: &SelfMaps) -> Capture {
    let c = capture_stack(black_box(maps));
    black_box(c)
}

#[inline(never)]
fn e2e_level_one(maps: &SelfMaps) -> Capture {
    let c = e2e_level_two(black_box(maps));
    black_box(c)
}

/// A file's segment map and its symbols as (SVMA, size, name).
type SymbolTable = (SegmentMap, Vec<(u64, u64, String)>);

/// Names frames with the symbol tables of their files.
struct Symbols {
    files: HashMap<PathBuf, SymbolTable>,
}

impl Symbols {
    fn name(&mut self, maps: &SelfMaps, addr: CodeAddress) -> String {
        let avma = addr.lookup_address();
        let Some(m) = maps.find(avma) else {
            return format!("{avma:#x} (no module)");
        };
        let (seg_map, syms) = self.files.entry(m.path.to_path_buf()).or_insert_with(|| {
            let data = std::fs::read(m.path).unwrap();
            let file = object::File::parse(&*data).unwrap();
            let syms = file
                .symbols()
                .chain(file.dynamic_symbols())
                .filter(|s| s.size() > 0)
                .map(|s| (s.address(), s.size(), s.name().unwrap_or("").to_string()))
                .collect();
            (SegmentMap::from_object(&file), syms)
        });
        let svma = seg_map
            .svma_for_file_offset(m.range.file_offset(avma))
            .unwrap();
        syms.iter()
            .find(|(a, size, _)| (*a..a + size).contains(&svma))
            .map(|(_, _, n)| format!("{:#}", rustc_demangle::demangle(n)))
            .unwrap_or_else(|| format!("{svma:#x} in {}", m.path.display()))
    }
}

#[test]
fn real_stack_unwinds_through_the_test_functions() {
    let maps = SelfMaps::read();
    let capture = e2e_level_one(&maps);
    let snapshot = StackSnapshot::new(capture.regs.file.sp, &capture.bytes);
    let mut unwinder = Unwinder::<X86_64>::new();
    let mut frames = Vec::new();
    let end = unwinder.unwind(&capture.regs, &snapshot, &maps, &mut frames);
    let mut symbols = Symbols {
        files: HashMap::new(),
    };
    let names: Vec<String> = frames.iter().map(|f| symbols.name(&maps, *f)).collect();
    let listing = names.join("\n");
    let position = |needle: &str| {
        names
            .iter()
            .position(|n| n.contains(needle))
            .unwrap_or_else(|| panic!("no frame {needle} in:\n{listing}"))
    };
    assert!(position("capture_stack") == 0, "{listing}");
    let two = position("e2e_level_two");
    let one = position("e2e_level_one");
    let test = position("real_stack_unwinds_through_the_test_functions");
    assert!(0 < two && two < one && one < test, "{listing}");
    assert_eq!(end, UnwindEnd::Complete, "{listing}");
    // The test harness runs us from a thread (or main): the walk reaches past it.
    assert!(names.len() > test + 3, "{listing}");

    // Cut to a few hundred bytes: the walk stops early, marked truncated, on the same frames.
    let cut = StackSnapshot::new(capture.regs.file.sp, &capture.bytes[..300]);
    let mut short = Vec::new();
    let end = unwinder.unwind(&capture.regs, &cut, &maps, &mut short);
    assert_eq!(end, UnwindEnd::Truncated);
    assert!(
        short.len() < frames.len() && frames.starts_with(&short),
        "{short:?}"
    );

    // Steady state: all rules cached, so this measures the walk itself.
    let rounds = 2000;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        short.clear();
        let again = unwinder.unwind(&capture.regs, &snapshot, &maps, &mut short);
        assert_eq!((again, &short), (UnwindEnd::Complete, &frames));
    }
    let per_walk = start.elapsed() / rounds;
    eprintln!("{} frames, {per_walk:?} per walk:\n{listing}", frames.len());
}

#[test]
fn memoized_walks_of_a_real_stack_equal_fresh_walks() {
    let maps = SelfMaps::read();
    let capture = e2e_level_one(&maps);
    let mut fresh = Unwinder::<X86_64>::new();
    let (mut memoized, mut memo) = (Unwinder::<X86_64>::new(), WalkMemo::default());
    let mut first = Vec::new();
    let snapshot = StackSnapshot::new(capture.regs.file.sp, &capture.bytes);
    fresh.unwind(&capture.regs, &snapshot, &maps, &mut first);
    // Copies of the stack with a few words changed (return addresses, saved registers, frame
    // pointers, anything), sometimes cut, sometimes left alone: whatever the memo holds from
    // the walks before, the memoized walk must give exactly what a fresh walk gives.
    let words = capture.bytes.len() / 8;
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut reused = 0;
    for round in 0..3000 {
        let mut bytes = capture.bytes.clone();
        for _ in 0..next() % 3 {
            let at = (next() as usize % words) * 8;
            let value = match next() % 3 {
                // Another word of the stack: a plausible stack or code address.
                0 => u64::from_le_bytes(
                    bytes[(next() as usize % words) * 8..][..8]
                        .try_into()
                        .unwrap(),
                ),
                1 => 0,
                _ => next(),
            };
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        let len = match next() % 8 {
            0 => next() as usize % bytes.len(),
            _ => bytes.len(),
        };
        let stack = StackSnapshot::new(capture.regs.file.sp, &bytes[..len]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let version = 1 + u64::from(round % 500 == 499);
        let end_a =
            memoized.unwind_memoized(&capture.regs, &stack, &maps, version, &mut memo, &mut a);
        let end_b = fresh.unwind(&capture.regs, &stack, &maps, &mut b);
        assert_eq!((end_a, &a), (end_b, &b), "round {round}");
        assert_eq!(memoized.frame_sps(), fresh.frame_sps(), "round {round}");
        reused += memoized.reused_frames();
    }
    // Most rounds change nothing the walk reads: their callers come from the memo.
    assert!(
        reused > 3000 * (first.len() - 1) / 2,
        "{reused} frames reused"
    );
}

/// What the signal handler captured.
static IN_HANDLER: std::sync::Mutex<Option<Capture>> = std::sync::Mutex::new(None);
/// The memory map the handler uses (read before raising: no file reads in the handler).
static MAPS: std::sync::OnceLock<SelfMaps> = std::sync::OnceLock::new();

extern "C" fn on_sigusr2(_: libc::c_int) {
    if let Some(maps) = MAPS.get() {
        let capture = capture_stack(maps);
        if let Ok(mut slot) = IN_HANDLER.lock() {
            *slot = Some(capture);
        }
    }
}

#[inline(never)]
fn raise_sigusr2() {
    // SAFETY: installs a handler for SIGUSR2, which nothing else in the tests uses, then raises
    // it synchronously on this thread; the handler only copies this thread's stack.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigusr2 as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()),
            0
        );
        assert_eq!(libc::raise(libc::SIGUSR2), 0);
    }
    black_box(());
}

#[test]
fn real_signal_frame_is_crossed() {
    let maps = MAPS.get_or_init(SelfMaps::read);
    raise_sigusr2();
    let capture = IN_HANDLER.lock().unwrap().take().unwrap();
    let snapshot = StackSnapshot::new(capture.regs.file.sp, &capture.bytes);
    let mut frames = Vec::new();
    let end = Unwinder::<X86_64>::new().unwind(&capture.regs, &snapshot, maps, &mut frames);
    let mut symbols = Symbols {
        files: HashMap::new(),
    };
    let names: Vec<String> = frames.iter().map(|f| symbols.name(maps, *f)).collect();
    let listing: Vec<String> = frames
        .iter()
        .zip(&names)
        .map(|(f, n)| format!("{f:x?} {n}"))
        .collect();
    let listing = listing.join("\n");
    let handler = names.iter().position(|n| n.contains("on_sigusr2"));
    let raiser = names.iter().position(|n| n.contains("raise_sigusr2"));
    let test = names
        .iter()
        .position(|n| n.contains("real_signal_frame_is_crossed"));
    // The frame right after the kernel's signal frame (glibc's __restore_rt, CIE augmentation S)
    // is the interrupted instruction itself.
    let interrupted = frames
        .iter()
        .skip(1)
        .position(|f| matches!(f, CodeAddress::InstructionPointer(_)))
        .map(|i| i + 1);
    assert!(handler.is_some() && interrupted.is_some(), "{listing}");
    assert!(
        handler < interrupted && interrupted <= raiser && raiser < test,
        "{listing}"
    );
    assert_eq!(end, UnwindEnd::Complete, "{listing}");
    eprintln!("{listing}");
}
