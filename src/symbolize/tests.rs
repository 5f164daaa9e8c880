//! Tests against real binaries: small C programs built with gcc in a temporary directory, this
//! test binary itself, the running kernel's kallsyms and this process's vdso.

use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSection, ObjectSymbol};

use super::*;
use crate::elf::SegmentMap;

const PROGRAM: &str = r#"
#include <stdio.h>
static inline __attribute__((always_inline)) int square(int x) {
    return x * x + (x >> 3);
}
__attribute__((noinline)) int compute(int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += square(i ^ s);
    return s;
}
int main(int argc, char **argv) {
    (void)argv;
    printf("%d\n", compute(argc * 1000));
    return 0;
}
"#;

const LIBRARY: &str = r#"
int exported_function(int x) { return x * 3 + 1; }
const char exported_table[4096] = "data after the code";
"#;

/// Compiles `source` (C) with gcc and `args` into `dir/name`.
fn gcc(dir: &Path, name: &str, source: &str, args: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let status = Command::new("gcc")
        .args(args)
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "gcc {args:?} failed");
    out
}

fn run(program: &str, args: &[&OsStrLike]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?} failed");
}

type OsStrLike = std::ffi::OsStr;

/// The SVMA and size of `symbol`, from `.symtab` or else `.dynsym`; or of a GCC clone of it
/// (`symbol.isra.0`).
fn symbol(path: &Path, symbol: &str) -> (u64, u64) {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let clone = format!("{symbol}.");
    file.symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.name().is_ok_and(|n| n == symbol || n.starts_with(&clone)))
        .map(|s| (s.address(), s.size()))
        .unwrap_or_else(|| panic!("no {symbol} in {}", path.display()))
}

/// The file offset of `svma` in the binary at `path`.
fn file_offset(path: &Path, svma: u64) -> u64 {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    SegmentMap::from_object(&file)
        .file_offset_for_svma(svma)
        .unwrap()
}

fn names(symbolizer: &mut Symbolizer, path: &Path, offset: u64) -> Vec<String> {
    let mut out = Vec::new();
    symbolizer.symbolize_file(path, offset, &mut out);
    out
}

/// The frames at every byte of `function`, with inline frames on and off.
fn frames_over(path: &Path, function: &str) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let (start, size) = symbol(path, function);
    assert!(size > 0);
    let base = file_offset(path, start);
    let mut inline = Symbolizer::new(SymbolizeOptions::default());
    let mut no_inline = Symbolizer::new(SymbolizeOptions::new(false, true));
    (0..size)
        .map(|i| {
            (
                names(&mut inline, path, base + i),
                names(&mut no_inline, path, base + i),
            )
        })
        .unzip()
}

/// Every address of `compute` names `compute` outermost; some name `square` inlined into it, and
/// without inline frames only `compute` remains.
fn assert_inline_frames(path: &Path) {
    let (inline, no_inline) = frames_over(path, "compute");
    for frames in &inline {
        assert_eq!(frames[0], "compute", "{frames:?}");
        assert!(frames.len() <= 2, "{frames:?}");
    }
    assert!(
        inline.iter().any(|f| f == &["compute", "square"]),
        "no inlined square in {inline:?}"
    );
    for frames in &no_inline {
        assert_eq!(frames, &["compute"]);
    }
}

#[test]
fn dwarf_inline_frames_in_a_pie() {
    let dir = tempfile::tempdir().unwrap();
    let exe = gcc(dir.path(), "pie", PROGRAM, &["-O2", "-g", "-fPIE", "-pie"]);
    assert_inline_frames(&exe);
}

/// With lines: the same names as without, `square` at its own line and `compute` at the line
/// of the inlined call (`PROGRAM`'s lines 4 and 8); no locations without debug info.
#[test]
fn source_lines_with_inline_call_sites() {
    let dir = tempfile::tempdir().unwrap();
    let exe = gcc(dir.path(), "lines", PROGRAM, &["-O2", "-g"]);
    let (start, size) = symbol(&exe, "compute");
    let base = file_offset(&exe, start);
    for inline in [true, false] {
        let mut symbolizer = Symbolizer::new(SymbolizeOptions::new(inline, true));
        let mut inlined_seen = false;
        for offset in base..base + size {
            let mut frames = Vec::new();
            symbolizer.symbolize_file_with_lines(&exe, offset, &mut frames);
            let plain = names(&mut symbolizer, &exe, offset);
            let got: Vec<_> = frames.iter().map(|f| f.name.clone()).collect();
            assert_eq!(got, plain);
            for frame in &frames {
                let location = frame.location.as_ref().expect("a location");
                assert!(location.file.ends_with("/lines.c"), "{location:?}");
            }
            if plain.len() == 2 {
                inlined_seen = true;
                assert_eq!(frames[0].location.as_ref().unwrap().line, 8, "{frames:?}");
                assert_eq!(frames[1].location.as_ref().unwrap().line, 4, "{frames:?}");
            }
        }
        assert_eq!(inlined_seen, inline);
    }
    let bare = gcc(dir.path(), "bare", PROGRAM, &["-O2"]);
    let (start, _) = symbol(&bare, "compute");
    let mut frames = Vec::new();
    Symbolizer::default().symbolize_file_with_lines(&bare, file_offset(&bare, start), &mut frames);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].location, None);
}

#[test]
fn dwarf_inline_frames_in_a_non_pie() {
    let dir = tempfile::tempdir().unwrap();
    let exe = gcc(
        dir.path(),
        "nopie",
        PROGRAM,
        &["-O2", "-g", "-fno-PIE", "-no-pie"],
    );
    let (start, _) = symbol(&exe, "compute");
    assert_ne!(
        file_offset(&exe, start),
        start,
        "non-PIE text should be biased"
    );
    assert_inline_frames(&exe);
}

#[test]
fn compressed_debug_sections() {
    let dir = tempfile::tempdir().unwrap();
    let exe = gcc(dir.path(), "gz", PROGRAM, &["-O2", "-g", "-gz=zlib"]);
    assert_inline_frames(&exe);
}

#[test]
fn symtab_fallback_without_debug_info() {
    let dir = tempfile::tempdir().unwrap();
    let exe = gcc(dir.path(), "nodebug", PROGRAM, &["-O2", "-g0"]);
    run("strip", &["--strip-debug".as_ref(), exe.as_os_str()]);
    let (inline, no_inline) = frames_over(&exe, "compute");
    for frames in inline.iter().chain(&no_inline) {
        assert_eq!(frames, &["compute"]);
    }
}

#[test]
fn dynsym_fallback_and_module_offset_in_a_stripped_library() {
    let dir = tempfile::tempdir().unwrap();
    let lib = gcc(
        dir.path(),
        "libstripped.so",
        LIBRARY,
        &["-O2", "-shared", "-fPIC", "-s"],
    );
    let (start, _) = symbol(&lib, "exported_function");
    let mut symbolizer = Symbolizer::default();
    let offset = file_offset(&lib, start);
    assert_eq!(
        names(&mut symbolizer, &lib, offset + 1),
        ["exported_function"]
    );
    // Read-only data after the last function is no function: module + offset.
    let (table, _) = symbol(&lib, "exported_table");
    let table_offset = file_offset(&lib, table) + 16;
    assert_eq!(
        names(&mut symbolizer, &lib, table_offset),
        [format!("libstripped.so+{table_offset:#x}")]
    );
}

#[test]
fn missing_and_garbage_files_fall_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut symbolizer = Symbolizer::default();
    let missing = dir.path().join("libmissing.so");
    assert_eq!(
        names(&mut symbolizer, &missing, 0x1234),
        ["libmissing.so+0x1234"]
    );
    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, b"\x7fELF this is not really an ELF file").unwrap();
    assert_eq!(names(&mut symbolizer, &garbage, 0x10), ["garbage.bin+0x10"]);
    assert_eq!(symbolizer.failed_files().count(), 2);
    // The failure is cached: a valid binary appearing later at the same path is not read.
    let exe = gcc(dir.path(), "valid", PROGRAM, &["-O2", "-g"]);
    std::fs::copy(&exe, &garbage).unwrap();
    let (start, _) = symbol(&garbage, "compute");
    let offset = file_offset(&garbage, start);
    assert_eq!(
        names(&mut symbolizer, &garbage, offset),
        [format!("garbage.bin+{offset:#x}")]
    );
    assert_eq!(
        names(&mut Symbolizer::default(), &garbage, offset),
        ["compute"]
    );
}

/// Builds `PROGRAM` with debug info, moves the DWARF into `debug_path` and links it back.
fn split_debug(dir: &Path, debug_path: &Path) -> PathBuf {
    let exe = gcc(dir, "split", PROGRAM, &["-O2", "-g", "-Wl,--build-id=none"]);
    run(
        "objcopy",
        &[
            "--only-keep-debug".as_ref(),
            exe.as_os_str(),
            debug_path.as_os_str(),
        ],
    );
    run("strip", &["--strip-debug".as_ref(), exe.as_os_str()]);
    let link = format!("--add-gnu-debuglink={}", debug_path.display());
    run("objcopy", &[link.as_ref(), exe.as_os_str()]);
    exe
}

#[test]
fn debuglink_next_to_the_binary_and_in_dot_debug() {
    let dir = tempfile::tempdir().unwrap();
    let exe = split_debug(dir.path(), &dir.path().join("split.debug"));
    assert_inline_frames(&exe);

    let dir = tempfile::tempdir().unwrap();
    let debug_dir = dir.path().join(".debug");
    std::fs::create_dir(&debug_dir).unwrap();
    let exe = split_debug(dir.path(), &debug_dir.join("split.debug"));
    assert_inline_frames(&exe);
}

#[test]
fn debuglink_with_a_wrong_crc_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let debug = dir.path().join("split.debug");
    let exe = split_debug(dir.path(), &debug);
    let mut content = std::fs::read(&debug).unwrap();
    content.extend_from_slice(b"changed");
    std::fs::write(&debug, content).unwrap();
    let (inline, _) = frames_over(&exe, "compute");
    for frames in &inline {
        assert_eq!(
            frames,
            &["compute"],
            "DWARF of a mismatched debug file was used"
        );
    }
}

#[inline(never)]
fn marker_function_for_symbolization() -> u64 {
    std::hint::black_box(42)
}

/// The mapping of this process that holds `avma`: (path, file offset).
fn own_mapping(avma: u64) -> (PathBuf, u64) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (start, end) = fields[0].split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        if (start..end).contains(&avma) {
            let pgoff = u64::from_str_radix(fields[2], 16).unwrap();
            return (PathBuf::from(fields[5]), avma - start + pgoff);
        }
    }
    panic!("{avma:#x} is not mapped");
}

#[test]
fn rust_function_of_this_binary_is_demangled_without_hash() {
    let avma = marker_function_for_symbolization as *const () as usize as u64 + 1;
    assert_eq!(marker_function_for_symbolization(), 42);
    let (path, offset) = own_mapping(avma);
    let expected = "flamegraph::symbolize::tests::marker_function_for_symbolization";
    let mut no_inline = Symbolizer::new(SymbolizeOptions::new(false, true));
    assert_eq!(names(&mut no_inline, &path, offset), [expected]);
    // With optimizations `black_box` is inlined there, and shows as an inline frame below.
    let mut inline = Symbolizer::new(SymbolizeOptions::new(true, true));
    let with_inline = names(&mut inline, &path, offset);
    assert_eq!(with_inline[0], expected);
    assert!(
        with_inline[1..].iter().all(|n| n.starts_with("black_box")),
        "{with_inline:?}"
    );
    let mut raw = Symbolizer::new(SymbolizeOptions::new(false, false));
    let mangled = names(&mut raw, &path, offset);
    assert!(
        mangled[0].starts_with("_ZN") || mangled[0].starts_with("_R"),
        "{mangled:?}"
    );
}

/// Every 64 lookups a binary's mapped pages are dropped from memory (`MADV_DONTNEED`): the
/// symbol table, the DWARF index and the units parsed before point into them and must read the
/// same bytes again afterwards.
#[test]
fn lookups_stay_right_after_mapped_pages_are_released() {
    let avma = marker_function_for_symbolization as *const () as usize as u64 + 1;
    let (path, offset) = own_mapping(avma);
    let mut symbolizer = Symbolizer::new(SymbolizeOptions::default());
    let first = names(&mut symbolizer, &path, offset);
    assert_eq!(
        first[0],
        "flamegraph::symbolize::tests::marker_function_for_symbolization"
    );
    for _ in 0..200 {
        assert_eq!(names(&mut symbolizer, &path, offset), first);
    }
}

/// Aliases at one address of the same binding: the fewest leading underscores wins, as perf
/// chooses (`malloc`, not glibc's `__libc_malloc`), whether the names come from libc's `.dynsym`
/// or its debug file's `.symtab`.
#[test]
fn alias_with_fewest_underscores_names_the_function() {
    let avma = libc::malloc as *const () as usize as u64 + 4;
    let (path, offset) = own_mapping(avma);
    let mut symbolizer = Symbolizer::new(SymbolizeOptions::new(false, true));
    assert_eq!(names(&mut symbolizer, &path, offset), ["malloc"]);
}

/// glibc calls its own IFUNCs (`memcpy`, `strlen`, … from `qsort`, `printf`) through PLT stubs
/// whose GOT slots carry an IRELATIVE relocation and no symbol. Each such stub is named after
/// the IFUNC its resolver address belongs to, never left to the bare `[libc.so.6]`.
#[test]
fn ifunc_plt_stubs_of_glibc_are_named_after_their_ifunc() {
    let (path, _) = own_mapping(libc::malloc as *const () as usize as u64);
    let data = std::fs::read(&path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let Some(plt) = file.section_by_name(".plt") else {
        return;
    };
    // Imports (JUMP_SLOT stubs) have no address; IFUNCs have their resolver's.
    let stub_name = |s: object::Symbol| s.name().ok().map(|n| format!("{n}@plt"));
    let dynamic: std::collections::HashSet<String> =
        file.dynamic_symbols().filter_map(stub_name).collect();
    let ifuncs: std::collections::HashSet<String> = file
        .dynamic_symbols()
        .filter(|s| s.address() != 0)
        .filter_map(stub_name)
        .collect();
    let mut symbolizer = Symbolizer::new(SymbolizeOptions::new(false, true));
    let mut named = 0;
    // The 16-byte header, then 16-byte stubs.
    for stub in (plt.address() + 16..plt.address() + plt.size()).step_by(16) {
        let found = names(&mut symbolizer, &path, file_offset(&path, stub));
        assert!(
            found.len() == 1 && dynamic.contains(&found[0]),
            "the stub at {stub:#x} of {} is {found:?}",
            path.display()
        );
        named += usize::from(ifuncs.contains(&found[0]));
    }
    assert!(named > 0, "no stub of {} named an IFUNC", path.display());
}

#[test]
fn kernel_address_from_kallsyms() {
    let content = std::fs::read_to_string("/proc/kallsyms").unwrap();
    let table = kallsyms::Kallsyms::parse(&content);
    let mut symbolizer = Symbolizer::default();
    let mut out = Vec::new();
    let known = content.lines().find_map(|line| {
        let mut parts = line.split(' ');
        let address = u64::from_str_radix(parts.next()?, 16).ok()?;
        let name = parts.nth(1)?;
        (name == "do_sys_openat2" && address != 0).then_some(address)
    });
    match known {
        Some(address) => {
            assert_eq!(table.lookup(address + 4), Some("do_sys_openat2"));
            symbolizer.symbolize_kernel(address + 4, &mut out);
            assert_eq!(out, ["do_sys_openat2_[k]"]);
        }
        None => {
            // Addresses hidden by kptr_restrict: everything is unresolved.
            symbolizer.symbolize_kernel(0xffff_ffff_8100_0004, &mut out);
            assert_eq!(out, ["[kernel.kallsyms]+0xffffffff81000004_[k]"]);
        }
    }
    out.clear();
    symbolizer.symbolize_kernel(0x10, &mut out);
    assert_eq!(out, ["[kernel.kallsyms]+0x10_[k]"]);
}

#[test]
fn jit_names_from_a_perf_map() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("perf-4242.map"),
        "7f0000001000 40 LazyCompile:~foo script.js:1\n7f0000002000 10 _ZN3foo3barEi\n",
    )
    .unwrap();
    let mut symbolizer = Symbolizer::default().with_perf_map_dir(dir.path());
    let mut out = Vec::new();
    assert!(symbolizer.symbolize_jit(4242, 0x7f0000001004, &mut out));
    assert!(symbolizer.symbolize_jit(4242, 0x7f0000002004, &mut out));
    assert!(!symbolizer.symbolize_jit(4242, 0x7f0000003000, &mut out));
    assert!(!symbolizer.symbolize_jit(4243, 0x7f0000001004, &mut out));
    assert_eq!(out, ["LazyCompile:~foo script.js:1", "foo::bar"]);
}

#[test]
fn vdso_clock_gettime() {
    let image = crate::elf::vdso::read_own_image().expect("this process has a vdso");
    let file = object::File::parse(&*image).unwrap();
    let sym = file
        .dynamic_symbols()
        .find(|s| s.name() == Ok("__vdso_clock_gettime"))
        .expect("__vdso_clock_gettime in the vdso");
    let offset = SegmentMap::from_object(&file)
        .file_offset_for_svma(sym.address())
        .unwrap();
    let mut symbolizer = Symbolizer::default();
    let mut out = Vec::new();
    symbolizer.symbolize_vdso(offset + 1, &mut out);
    assert_eq!(out, ["__vdso_clock_gettime"]);
    out.clear();
    symbolizer.symbolize_vdso(0, &mut out);
    assert_eq!(out, ["[vdso]+0x0"]);
}

/// Throughput over every function of a binary, cold (first lookups parse DWARF units) and warm
/// (same state, addresses a few bytes further). Run with `--ignored --nocapture`, in release.
#[test]
#[ignore]
fn throughput() {
    let path = std::env::var_os("SYMBOLIZE_BENCH_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_exe().unwrap());
    let data = std::fs::read(&path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let map = SegmentMap::from_object(&file);
    let mut offsets: Vec<u64> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 8)
        .filter_map(|s| map.file_offset_for_svma(s.address()))
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    for inline in [true, false] {
        let mut symbolizer = Symbolizer::new(SymbolizeOptions::new(inline, true));
        let mut out = Vec::new();
        for pass in [1u64, 5] {
            let start = std::time::Instant::now();
            for &offset in &offsets {
                out.clear();
                symbolizer.symbolize_file(&path, offset + pass, &mut out);
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "inline={inline} pass={pass}: {} addresses in {secs:.3}s = {:.0}/s",
                offsets.len(),
                offsets.len() as f64 / secs
            );
        }
    }
}

/// Prints the frames at a few offsets of a file: `SYMBOLIZE_FILE=path SYMBOLIZE_OFFSETS=0x1,0x2`.
#[test]
#[ignore]
fn print_frames() {
    let path = PathBuf::from(std::env::var_os("SYMBOLIZE_FILE").unwrap());
    let offsets = std::env::var("SYMBOLIZE_OFFSETS").unwrap();
    let mut symbolizer = Symbolizer::default();
    for offset in offsets.split(',') {
        let offset = u64::from_str_radix(offset.trim_start_matches("0x"), 16).unwrap();
        println!("{offset:#x}: {:?}", names(&mut symbolizer, &path, offset));
    }
}

const CPP_PROGRAM: &str = r#"
#include <cstdio>
namespace shapes {
struct Widget {
    int scale;
    __attribute__((noinline)) int compute(int n) const;
};
int Widget::compute(int n) const {
    int s = 0;
    for (int i = 0; i < n; i++) s += (i ^ s) * scale;
    return s;
}
}
int main(int argc, char **) {
    shapes::Widget w{argc};
    std::printf("%d\n", w.compute(argc * 1000));
    return 0;
}
"#;

#[test]
fn cpp_names_are_demangled_without_signature() {
    let dir = tempfile::tempdir().unwrap();
    let exe = gxx(dir.path(), "widget", CPP_PROGRAM);
    let (start, _) = symbol(&exe, "_ZNK6shapes6Widget7computeEi");
    let offset = file_offset(&exe, start) + 1;
    for inline in [true, false] {
        let mut symbolizer = Symbolizer::new(SymbolizeOptions::new(inline, true));
        assert_eq!(
            names(&mut symbolizer, &exe, offset),
            ["shapes::Widget::compute"]
        );
    }
    let mut raw = Symbolizer::new(SymbolizeOptions::new(true, false));
    assert_eq!(
        names(&mut raw, &exe, offset),
        ["_ZNK6shapes6Widget7computeEi"]
    );
}

#[test]
fn symbolizer_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Symbolizer>();
}

#[test]
fn build_id_debug_file_of_a_fully_stripped_binary() {
    let dir = tempfile::tempdir().unwrap();
    let exe = gcc(
        dir.path(),
        "byid",
        PROGRAM,
        &["-O2", "-g", "-Wl,--build-id"],
    );
    let build_id: Vec<u8> = {
        let data = std::fs::read(&exe).unwrap();
        let file = object::File::parse(&*data).unwrap();
        file.build_id().unwrap().unwrap().to_vec()
    };
    let (start, size) = symbol(&exe, "compute");
    let base = file_offset(&exe, start);
    let root = dir.path().join("debug-root");
    let id_dir = root.join(".build-id").join(format!("{:02x}", build_id[0]));
    std::fs::create_dir_all(&id_dir).unwrap();
    let rest: String = build_id[1..].iter().map(|b| format!("{b:02x}")).collect();
    let debug = id_dir.join(format!("{rest}.debug"));
    run(
        "objcopy",
        &[
            "--only-keep-debug".as_ref(),
            exe.as_os_str(),
            debug.as_os_str(),
        ],
    );
    // No .symtab, no DWARF, no debuglink left: names can only come from the debug file.
    run("strip", &["--strip-all".as_ref(), exe.as_os_str()]);

    let mut without = Symbolizer::default();
    assert_eq!(names(&mut without, &exe, base), [format!("byid+{base:#x}")]);
    let mut with = Symbolizer::default().with_debug_root(&root);
    let frames: Vec<Vec<String>> = (0..size)
        .map(|i| names(&mut with, &exe, base + i))
        .collect();
    assert!(frames.iter().all(|f| f[0] == "compute"), "{frames:?}");
    assert!(
        frames.iter().any(|f| f == &["compute", "square"]),
        "{frames:?}"
    );
}

#[test]
fn dwz_supplementary_file() {
    if Command::new("dwz").arg("--version").output().is_err() {
        eprintln!("dwz is not installed: test skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = gcc(dir.path(), "a", PROGRAM, &["-O2", "-g"]);
    let b = gcc(dir.path(), "b", PROGRAM, &["-O2", "-g", "-DOTHER"]);
    let (start, size) = symbol(&a, "compute");
    let base = file_offset(&a, start);
    let status = Command::new("dwz")
        .args(["-m", "common.debug", "-M", "common.debug"])
        .arg(&a)
        .arg(&b)
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    // Drop .symtab so that `compute` can only be named by DWARF, whose string now lives in the
    // supplementary file.
    run(
        "objcopy",
        &[
            "--strip-all".as_ref(),
            "--keep-section=.debug_*".as_ref(),
            "--keep-section=.gnu_debugaltlink".as_ref(),
            a.as_os_str(),
        ],
    );
    let mut symbolizer = Symbolizer::default();
    let frames: Vec<Vec<String>> = (0..size)
        .map(|i| names(&mut symbolizer, &a, base + i))
        .collect();
    assert!(frames.iter().all(|f| f[0] == "compute"), "{frames:?}");
    assert!(
        frames.iter().any(|f| f == &["compute", "square"]),
        "{frames:?}"
    );
}

/// Loads the DWARF of the file at `path` (decompressed sections leaked: test only).
pub(super) fn leaked_dwarf(
    path: &Path,
) -> gimli::Dwarf<gimli::EndianSlice<'static, gimli::RunTimeEndian>> {
    let data: &'static [u8] = Box::leak(std::fs::read(path).unwrap().into_boxed_slice());
    let file = object::File::parse(data).unwrap();
    gimli::Dwarf::load(|id| -> Result<_, gimli::Error> {
        use object::ObjectSection;
        let bytes: &'static [u8] = match file.section_by_name(id.name()) {
            Some(section) => match section.uncompressed_data().unwrap() {
                std::borrow::Cow::Borrowed(b) => b,
                std::borrow::Cow::Owned(v) => Box::leak(v.into_boxed_slice()),
            },
            None => &[],
        };
        Ok(gimli::EndianSlice::new(bytes, gimli::RunTimeEndian::Little))
    })
    .unwrap()
}

/// Compares our lazy DWARF names with `addr2line` (the reference implementation) at up to 8
/// addresses in each function symbol of `path`; returns (probes, mismatches, examples).
/// Our name index of `path` with its `.debug_info` decompressed as lookups read it (the section
/// must be zlib-compressed), and the decompression, to see how far it went.
fn lazy_names(
    path: &Path,
) -> (
    dwarf::DwarfNames<gimli::EndianSlice<'static, gimli::RunTimeEndian>>,
    std::sync::Arc<std::sync::Mutex<inflate::Inflating>>,
) {
    let data: &'static [u8] = Box::leak(std::fs::read(path).unwrap().into_boxed_slice());
    let file = object::File::parse(data).unwrap();
    let section = file.section_by_name(".debug_info").unwrap();
    let compressed = section.compressed_data().unwrap();
    assert_eq!(compressed.format, object::CompressionFormat::Zlib);
    let inflating = inflate::Inflating::new(compressed.data, compressed.uncompressed_size as usize);
    let mut dwarf = leaked_dwarf(path);
    dwarf.debug_info = gimli::DebugInfo::from(gimli::EndianSlice::new(
        &[][..],
        gimli::RunTimeEndian::Little,
    ));
    let shared = std::sync::Arc::clone(&inflating);
    let grow = Box::new(move |end| {
        let prefix = shared.lock().unwrap().grow(end);
        gimli::EndianSlice::new(prefix, gimli::RunTimeEndian::Little)
    });
    (
        dwarf::DwarfNames::new_lazy(dwarf, grow, &mut || {}),
        inflating,
    )
}

/// Looks `address` up as `Binary` does: a lazy index reads everything when no unit it knows
/// covers the address.
fn frames_at(
    names: &mut dwarf::DwarfNames<gimli::EndianSlice<'static, gimli::RunTimeEndian>>,
    address: u64,
    out: &mut Vec<dwarf::FrameName<gimli::EndianSlice<'static, gimli::RunTimeEndian>>>,
) {
    out.clear();
    if !names.frames(address, true, out)
        && !names.covers(address)
        && names.index_everything(&mut || {})
    {
        names.frames(address, true, out);
    }
}

fn compare_with_addr2line(path: &Path, max_probes: usize) -> (usize, usize, Vec<String>) {
    compare_with_addr2line_as(path, max_probes, false)
}

/// [`compare_with_addr2line`], with our index reading a compressed `.debug_info` lazily if
/// `lazy`.
fn compare_with_addr2line_as(
    path: &Path,
    max_probes: usize,
    lazy: bool,
) -> (usize, usize, Vec<String>) {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let mut probes = Vec::new();
    for sym in file.symbols() {
        if sym.kind() != object::SymbolKind::Text || sym.size() == 0 {
            continue;
        }
        let step = (sym.size() / 8).max(1);
        probes.extend(
            (0..sym.size())
                .step_by(step as usize)
                .map(|d| sym.address() + d),
        );
    }
    probes.sort_unstable();
    probes.dedup();
    let keep = probes.len().div_ceil(max_probes).max(1);
    let probes: Vec<u64> = probes.into_iter().step_by(keep).collect();

    let reference = addr2line::Context::from_dwarf(leaked_dwarf(path)).unwrap();
    let mut ours = match lazy {
        true => lazy_names(path).0,
        false => dwarf::DwarfNames::new(leaked_dwarf(path), &mut || {}),
    };
    let (mut mismatches, mut examples) = (0, Vec::new());
    let mut found = Vec::new();
    for &probe in &probes {
        let mut expected = Vec::new();
        let mut frames = reference.find_frames(probe).skip_all_loads().unwrap();
        while let Ok(Some(frame)) = frames.next() {
            if let Some(function) = frame.function {
                expected.push(function.raw_name().unwrap().into_owned());
            }
        }
        expected.reverse();
        frames_at(&mut ours, probe, &mut found);
        let actual: Vec<String> = found
            .iter()
            .map(|f| f.name.to_string_lossy().into_owned())
            .collect();
        if actual != expected {
            mismatches += 1;
            if examples.len() < 10 {
                examples.push(format!(
                    "{probe:#x}: ours {actual:?} addr2line {expected:?}"
                ));
            }
        }
    }
    (probes.len(), mismatches, examples)
}

#[test]
fn lazy_dwarf_names_agree_with_addr2line_on_this_binary() {
    let exe = std::env::current_exe().unwrap();
    let (probes, mismatches, examples) = compare_with_addr2line(&exe, 20_000);
    assert!(probes > 5_000, "{probes} probes");
    assert!(
        mismatches * 1000 <= probes,
        "{mismatches} of {probes} differ: {examples:#?}"
    );
}

/// glibc's separate debug file (from libc6-dbg), the case the lazy parsing is for: thousands of
/// units, each with its own abbreviation table. Skipped where it is not installed.
#[test]
fn lazy_dwarf_names_agree_with_addr2line_on_glibc_debug_info() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let Some(libc) = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libc.so"))
    else {
        return;
    };
    let data = std::fs::read(libc).unwrap();
    let object = object::File::parse(&*data).unwrap();
    let Some((debug, _)) = debugfile::find(
        Path::new(libc),
        &object,
        Path::new(crate::elf::DEFAULT_DEBUG_ROOT),
    ) else {
        eprintln!("no debug file for {libc}: skipped");
        return;
    };
    let (probes, mismatches, examples) = compare_with_addr2line(&debug, 20_000);
    assert!(probes > 5_000, "{probes} probes");
    assert!(
        mismatches * 1000 <= probes,
        "{mismatches} of {probes} differ: {examples:#?}"
    );
}

/// A g++ program with what GCC's C++ DWARF nests: namespaces, class templates, lambdas, and a
/// class local to a function, whose member's code is described inside the class (the one case
/// where `read_functions` must read a type's children).
pub(super) const CPP_SCOPES_PROGRAM: &str = r#"
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>
namespace outer { namespace {
template <typename T> struct Box {
    std::map<std::string, T> items;
    __attribute__((noinline)) T sum() const {
        T s{};
        for (auto &kv : items) s += kv.second + T(kv.first.size());
        return s;
    }
};
} // namespace
struct Base {
    virtual int twice(int) const = 0;
    virtual ~Base() {}
};
__attribute__((noinline)) int call(const Base &b, int x) { return b.twice(x); }
int run(int n) {
    struct Local : Base {
        int k;
        explicit Local(int k) : k(k) {}
        int twice(int x) const override { return 2 * x + k; }
    };
    Local local(n);
    std::vector<int> v;
    for (int i = 0; i < n * 100; i++) v.push_back(call(local, i) % 97);
    std::sort(v.begin(), v.end(), [n](int a, int b) { return (a ^ n) < (b ^ n); });
    Box<long> box;
    for (int x : v) box.items[std::to_string(x)] += x;
    return int(box.sum());
}
} // namespace outer
int main(int argc, char **) { std::printf("%d\n", outer::run(argc)); }
"#;

/// Compiles `source` (C++) with g++ `-O2 -g` into `dir/name`.
fn gxx(dir: &Path, name: &str, source: &str) -> PathBuf {
    gxx_with(dir, name, &[source], &[])
}

/// Builds the translation units `sources` (in that order) into one program with extra `flags`.
fn gxx_with(dir: &Path, name: &str, sources: &[&str], flags: &[&str]) -> PathBuf {
    let mut files = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let src = dir.join(format!("{name}{i}.cpp"));
        std::fs::write(&src, source).unwrap();
        files.push(src);
    }
    let exe = dir.join(name);
    let status = Command::new("g++")
        .args(["-O2", "-g"])
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .args(&files)
        .status()
        .unwrap();
    assert!(status.success(), "g++ failed");
    exe
}

/// Builds [`CPP_SCOPES_PROGRAM`] into `dir`.
pub(super) fn cpp_scopes_program(dir: &Path) -> PathBuf {
    gxx(dir, "scopes", CPP_SCOPES_PROGRAM)
}

/// GCC's C++ DWARF: most entries are types, stepped over by their sibling links, and a local
/// class holds its member's code.
#[test]
fn lazy_dwarf_names_agree_with_addr2line_on_gcc_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let exe = cpp_scopes_program(dir.path());
    let (probes, mismatches, examples) = compare_with_addr2line(&exe, 20_000);
    assert!(probes > 100, "{probes} probes");
    assert_eq!(
        mismatches, 0,
        "{mismatches} of {probes} differ: {examples:#?}"
    );
    let (start, _) = symbol(&exe, "_ZZN5outer3runEiENK5Local5twiceEi");
    let offset = file_offset(&exe, start) + 1;
    let mut symbolizer = Symbolizer::new(SymbolizeOptions::new(true, true));
    let found = names(&mut symbolizer, &exe, offset);
    // Named by the symbol table, GCC's clone suffix (`.isra.0`) and all, as perf does.
    assert!(
        found.len() == 1 && found[0].starts_with("outer::run(int)::Local::twice"),
        "{found:?}"
    );
}

/// A zlib-compressed `.debug_info` (as distributions ship debug files) is decompressed only as
/// far as lookups read it, and names the same as addr2line reading it whole.
#[test]
fn compressed_debug_info_is_read_only_as_far_as_lookups_go() {
    let dir = tempfile::tempdir().unwrap();
    // A second unit with much debug info, after the one holding `main`.
    let mut big = String::new();
    for i in 0..1500 {
        big.push_str(&format!(
            "struct S{i} {{ int a{i}; long b{i}; double c{i}; char d{i}[3]; short e{i}; }};\n\
             __attribute__((noinline)) long f{i}(S{i} *s) {{ return s->a{i} + s->b{i} + (long)s->c{i}; }}\n"
        ));
    }
    let first = "long f0(struct S0 *); int main() { return 0; }\n";
    let exe = gxx_with(dir.path(), "gz", &[first, &big], &["-gz=zlib"]);
    let (mut index, inflating) = lazy_names(&exe);
    let size = {
        let data = std::fs::read(&exe).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let section = file.section_by_name(".debug_info").unwrap();
        section.compressed_data().unwrap().uncompressed_size as usize
    };
    let (main, _) = symbol(&exe, "main");
    let mut found = Vec::new();
    frames_at(&mut index, main, &mut found);
    let names_of = |found: &[dwarf::FrameName<_>]| -> Vec<String> {
        found
            .iter()
            .map(
                |f: &dwarf::FrameName<gimli::EndianSlice<'static, gimli::RunTimeEndian>>| {
                    f.name.to_string_lossy().into_owned()
                },
            )
            .collect()
    };
    assert_eq!(names_of(&found), ["main"]);
    let read = inflating.lock().unwrap().grow(0).len();
    assert!(
        read < size / 2,
        "{read} of {size} bytes decompressed for main"
    );
    let (last, _) = symbol(&exe, "_Z5f1499P5S1499");
    frames_at(&mut index, last + 1, &mut found);
    assert_eq!(names_of(&found), ["_Z5f1499P5S1499"]);
    let (probes, mismatches, examples) = compare_with_addr2line_as(&exe, 20_000, true);
    assert!(probes > 1500, "{probes} probes");
    assert_eq!(
        mismatches, 0,
        "{mismatches} of {probes} differ: {examples:#?}"
    );
    // Through the symbolizer: the same names as without compression.
    let mut symbolizer = Symbolizer::new(SymbolizeOptions::new(true, true));
    let offset = file_offset(&exe, last) + 1;
    assert_eq!(names(&mut symbolizer, &exe, offset), ["f1499"]);
}

/// The same comparison on any binary, for checking naming changes on real programs by hand:
/// `FLAMEGRAPH_ADDR2LINE_CHECK=/path/to/binary cargo test --release --lib -- --ignored
/// agree_with_addr2line_on_a_given_binary --nocapture`.
#[test]
#[ignore = "needs FLAMEGRAPH_ADDR2LINE_CHECK=BINARY"]
fn lazy_dwarf_names_agree_with_addr2line_on_a_given_binary() {
    let path = std::env::var_os("FLAMEGRAPH_ADDR2LINE_CHECK").expect("FLAMEGRAPH_ADDR2LINE_CHECK");
    // A compressed `.debug_info` (a distribution's debug file) is read as the symbolizer reads it.
    let lazy = std::fs::read(&path).ok().is_some_and(|data| {
        object::File::parse(&*data).ok().is_some_and(|file| {
            file.section_by_name(".debug_info")
                .and_then(|s| s.compressed_data().ok())
                .is_some_and(|c| c.format == object::CompressionFormat::Zlib)
        })
    });
    let (probes, mismatches, examples) = compare_with_addr2line_as(Path::new(&path), 200_000, lazy);
    eprintln!("{probes} probes, {mismatches} differ: {examples:#?}");
    assert!(
        mismatches * 1000 <= probes,
        "{mismatches} of {probes} differ: {examples:#?}"
    );
}
