//! Micro-benchmarks of the native pipeline's hot parts, on real data from this process:
//!
//! - `parse`: `parse_record` on sample records carrying real stack copies of up to 32 KiB
//!   (bytes/s; parsing borrows the stack copy, so the cost is per record, not per byte);
//! - `unwind`: DWARF unwinding of real stack copies of this process, caches warm (samples/s);
//! - `collect`: `StackCollector::on_record` on sample records: parse + unwind + aggregate
//!   (samples/s), the per-sample cost of recording;
//! - `symbolize`: unique addresses of this binary's functions, with a fresh symbolizer (cold:
//!   debug info parsed in the loop) and a reused one (warm) (addresses/s);
//! - `fold`: `Folded::from_counts` + `to_text` on synthetic stacks (stacks/s).
//!
//! Stacks are captured like `src/unwind/tests/real.rs` does: registers by inline assembly, then a
//! copy of the thread's stack from the stack pointer up. x86_64 Linux only.
//!
//! `cargo bench --bench pipeline` (each group measures for about a second).

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod linux {
    use std::hint::black_box;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use criterion::{BatchSize, Criterion, Throughput};
    use flamegraph::collect::{CollectOptions, StackCollector};
    use flamegraph::elf::MappingRange;
    use flamegraph::fold::Folded;
    use flamegraph::perf::records::{Comm, Mmap2, MmapFileId, Record, SampleFormat};
    use flamegraph::perf::{
        callchain as cc, misc, parse_record, record_kind, regs_abi, regs_x86_64, sample_type as st,
    };
    use flamegraph::unwind::{
        ModuleLookup, ModuleRef, StackSnapshot, Unwinder, X86_64Regs, X86_64,
    };
    use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

    /// The executable file mappings of this process.
    struct SelfMaps {
        maps: Vec<(MappingRange, PathBuf)>,
        all: Vec<(u64, u64)>,
    }

    impl SelfMaps {
        fn read() -> SelfMaps {
            let text = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
            let mut maps = Vec::new();
            let mut all = Vec::new();
            for line in text.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let Some((start, end)) = fields[0].split_once('-') else {
                    continue;
                };
                let start = u64::from_str_radix(start, 16).unwrap_or(0);
                let end = u64::from_str_radix(end, 16).unwrap_or(0);
                all.push((start, end));
                let path = fields.get(5).copied().unwrap_or("");
                if fields[1].contains('x') && path.starts_with('/') {
                    let pgoff = u64::from_str_radix(fields[2], 16).unwrap_or(0);
                    maps.push((MappingRange { start, end, pgoff }, PathBuf::from(path)));
                }
            }
            SelfMaps { maps, all }
        }

        fn end_of_mapping(&self, addr: u64) -> u64 {
            self.all
                .iter()
                .find(|(s, e)| (*s..*e).contains(&addr))
                .map_or(addr, |(_, e)| *e)
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

    /// Registers and stack copy of the calling thread.
    struct Capture {
        regs: X86_64Regs,
        /// The registers as a sample's REGS_USER carries them (`regs_x86_64::UNWIND_MASK`).
        perf_regs: [u64; 17],
        bytes: Vec<u8>,
    }

    #[inline(never)]
    fn capture_stack(maps: &SelfMaps) -> Capture {
        let (ip, sp, bp, bx): (u64, u64, u64, u64);
        let (r12, r13, r14, r15): (u64, u64, u64, u64);
        // SAFETY: reads rip (of the local label) and the callee-saved registers into registers;
        // touches no memory.
        unsafe {
            std::arch::asm!(
                "lea 2f(%rip), {ip}",
                "2:",
                "mov %rsp, {sp}",
                "mov %rbp, {bp}",
                "mov %rbx, {bx}",
                "mov %r12, {r12}",
                "mov %r13, {r13}",
                "mov %r14, {r14}",
                "mov %r15, {r15}",
                ip = out(reg) ip,
                sp = out(reg) sp,
                bp = out(reg) bp,
                bx = out(reg) bx,
                r12 = out(reg) r12,
                r13 = out(reg) r13,
                r14 = out(reg) r14,
                r15 = out(reg) r15,
                options(att_syntax, nostack, nomem, preserves_flags),
            );
        }
        // Like the kernel: at most 32 KiB (the native default), a multiple of 8.
        let len = ((maps.end_of_mapping(sp) - sp).min(32768) & !7) as usize;
        let mut bytes = vec![0u8; len];
        // SAFETY: [sp, sp + len) lies in this thread's mapped stack (checked against
        // /proc/self/maps) and above the current stack pointer, so it is readable.
        unsafe { std::ptr::copy_nonoverlapping(sp as *const u8, bytes.as_mut_ptr(), len) };
        // REGS_USER in perf order (ax bx cx dx si di bp sp ip r8..r15); unsampled ones 0.
        let perf_regs = [
            0, bx, 0, 0, 0, 0, bp, sp, ip, 0, 0, 0, 0, r12, r13, r14, r15,
        ];
        let mut regs = X86_64Regs::new(ip, sp, bp);
        for (dwarf, value) in [(3, bx), (12, r12), (13, r13), (14, r14), (15, r15)] {
            regs.file.set(dwarf, Some(value));
        }
        Capture {
            regs,
            perf_regs,
            bytes,
        }
    }

    /// Captures the stack `depth` frames below here, so captures differ in depth.
    #[inline(never)]
    fn nested(maps: &SelfMaps, depth: u32) -> Capture {
        if depth == 0 {
            return black_box(capture_stack(black_box(maps)));
        }
        let c = nested(black_box(maps), depth - 1);
        black_box(c)
    }

    fn format() -> SampleFormat {
        SampleFormat {
            sample_type: st::IP
                | st::TID
                | st::TIME
                | st::CPU
                | st::PERIOD
                | st::CALLCHAIN
                | st::REGS_USER
                | st::STACK_USER,
            sample_regs_user: regs_x86_64::UNWIND_MASK,
            read_format: 0,
            branch_sample_type: 0,
            sample_id_all: true,
        }
    }

    fn words(body: &mut Vec<u8>, values: &[u64]) {
        body.extend(values.iter().flat_map(|v| v.to_ne_bytes()));
    }

    /// A sample record body as the native recorder gets it: a short kernel callchain, the user
    /// registers and the stack copy.
    fn sample_body(c: &Capture, time: u64) -> Vec<u8> {
        let pid = u64::from(std::process::id());
        let mut body = Vec::with_capacity(c.bytes.len() + 200);
        words(&mut body, &[c.regs.ip, pid | pid << 32, time, 0, 1_003_009]);
        words(
            &mut body,
            &[
                3,
                cc::CONTEXT_KERNEL,
                0xffff_ffff_8100_1000,
                0xffff_ffff_8100_2000,
            ],
        );
        words(&mut body, &[regs_abi::ABI_64]);
        words(&mut body, &c.perf_regs);
        words(&mut body, &[c.bytes.len() as u64]);
        body.extend_from_slice(&c.bytes);
        words(&mut body, &[c.bytes.len() as u64]);
        body
    }

    struct Fixture {
        maps: SelfMaps,
        captures: Vec<Capture>,
        bodies: Vec<Vec<u8>>,
    }

    fn fixture() -> Fixture {
        let maps = SelfMaps::read();
        let captures: Vec<Capture> = (0..8).map(|d| nested(&maps, d * 3)).collect();
        let bodies = captures
            .iter()
            .enumerate()
            .map(|(i, c)| sample_body(c, i as u64))
            .collect();
        Fixture {
            maps,
            captures,
            bodies,
        }
    }

    fn bench_parse(c: &mut Criterion, f: &Fixture) {
        let mut group = c.benchmark_group("parse");
        let bytes: usize = f.bodies.iter().map(Vec::len).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function("sample_records", |b| {
            b.iter(|| {
                for body in &f.bodies {
                    let r = parse_record(&format(), record_kind::SAMPLE, misc::USER, body);
                    black_box(r.is_ok());
                }
            })
        });
        group.finish();
    }

    fn bench_unwind(c: &mut Criterion, f: &Fixture) {
        let mut group = c.benchmark_group("unwind");
        group.throughput(Throughput::Elements(f.captures.len() as u64));
        let mut unwinder = Unwinder::<X86_64>::new();
        let mut out = Vec::with_capacity(256);
        group.bench_function("dwarf_warm", |b| {
            b.iter(|| {
                for capture in &f.captures {
                    out.clear();
                    let stack = StackSnapshot::new(capture.regs.file.sp, &capture.bytes);
                    black_box(unwinder.unwind(&capture.regs, &stack, &f.maps, &mut out));
                }
            })
        });
        group.finish();
    }

    /// A collector that knows this process: its name and executable mappings.
    fn collector(f: &Fixture) -> StackCollector {
        let mut collector = StackCollector::new(CollectOptions::new(true));
        let pid = std::process::id();
        let fmt = format();
        collector.on_record(
            &fmt,
            Record::Comm(Comm {
                pid,
                tid: pid,
                name: b"pipeline",
                exec: true,
            }),
        );
        for (range, path) in &f.maps.maps {
            let filename = path.as_os_str().as_encoded_bytes();
            let mmap = Mmap2 {
                pid,
                tid: pid,
                address: range.start,
                length: range.end - range.start,
                pgoff: range.pgoff,
                file_id: MmapFileId::Inode {
                    major: 0,
                    minor: 0,
                    inode: 0,
                    generation: 0,
                },
                prot: 5,
                flags: 2,
                filename,
                misc: misc::USER,
            };
            collector.on_record(&fmt, Record::Mmap2(mmap));
        }
        collector
    }

    fn bench_collect(c: &mut Criterion, f: &Fixture) {
        let mut group = c.benchmark_group("collect");
        group.throughput(Throughput::Elements(f.bodies.len() as u64));
        let mut collector = collector(f);
        let fmt = format();
        group.bench_function("parse_unwind_aggregate", |b| {
            b.iter(|| {
                for body in &f.bodies {
                    if let Ok(r) = parse_record(&fmt, record_kind::SAMPLE, misc::USER, body) {
                        collector.on_record(&fmt, r);
                    }
                }
            })
        });
        group.finish();
    }

    /// File offsets of the middle of up to `n` functions of this executable, spread over it.
    fn function_offsets(exe: &Path, n: usize) -> Vec<u64> {
        let Ok(data) = std::fs::read(exe) else {
            return Vec::new();
        };
        let Ok(file) = object::File::parse(&*data) else {
            return Vec::new();
        };
        let segments: Vec<(u64, u64, u64)> = file
            .segments()
            .map(|s| (s.address(), s.size(), s.file_range().0))
            .collect();
        let svmas: Vec<u64> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
            .map(|s| s.address() + s.size() / 2)
            .collect();
        let step = (svmas.len() / n).max(1);
        svmas
            .iter()
            .step_by(step)
            .take(n)
            .filter_map(|&a| {
                let (vaddr, _, offset) = segments
                    .iter()
                    .find(|(v, size, _)| (*v..v + size).contains(&a))?;
                Some(a - vaddr + offset)
            })
            .collect()
    }

    fn bench_symbolize(c: &mut Criterion) {
        let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
            return;
        };
        let offsets = function_offsets(&exe, 2000);
        let mut group = c.benchmark_group("symbolize");
        group.throughput(Throughput::Elements(offsets.len() as u64));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(2));
        let mut out = Vec::new();
        group.bench_function("cold_inline", |b| {
            b.iter_batched(
                || flamegraph::collect::symbolizer(true),
                |mut symbolizer| {
                    for &offset in &offsets {
                        out.clear();
                        symbolizer.symbolize_file(&exe, offset, &mut out);
                    }
                    symbolizer
                },
                BatchSize::PerIteration,
            )
        });
        let mut warm = flamegraph::collect::symbolizer(true);
        group.bench_function("warm_inline", |b| {
            b.iter(|| {
                for &offset in &offsets {
                    out.clear();
                    warm.symbolize_file(&exe, offset, &mut out);
                }
            })
        });
        group.finish();
    }

    /// `n` synthetic stacks of a program: 20-60 frames drawn from 500 function names.
    fn synthetic_stacks(n: usize) -> Vec<(String, u64)> {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        (0..n)
            .map(|_| {
                let depth = 20 + next() % 40;
                let mut stack = String::from("rustload");
                for _ in 0..depth {
                    let f = next() % 500;
                    stack.push_str(&format!(";crate::module{}::function_{f}", f % 17));
                }
                (stack, 1 + next() % 100)
            })
            .collect()
    }

    fn bench_fold(c: &mut Criterion) {
        let stacks = synthetic_stacks(10_000);
        let mut group = c.benchmark_group("fold");
        group.throughput(Throughput::Elements(stacks.len() as u64));
        group.sample_size(10);
        group.bench_function("from_counts_to_text", |b| {
            b.iter_batched(
                || stacks.clone(),
                |s| Folded::from_counts(s).to_text(),
                BatchSize::LargeInput,
            )
        });
        group.finish();
    }

    pub fn benches(c: &mut Criterion) {
        let f = fixture();
        bench_parse(c, &f);
        bench_unwind(c, &f);
        bench_collect(c, &f);
        bench_symbolize(c);
        bench_fold(c);
    }

    pub fn config() -> Criterion {
        Criterion::default()
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1))
            .sample_size(20)
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
criterion::criterion_group! {
    name = benches;
    config = linux::config();
    targets = linux::benches
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
criterion::criterion_main!(benches);

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn main() {}
