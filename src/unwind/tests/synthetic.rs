//! Walks over hand-built stacks against `synth.s` assembled into a shared library with gcc, with
//! the CFI in `.eh_frame` (with and without `.eh_frame_hdr`) or in `.debug_frame`, or none.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSymbol};

use super::{FakeStack, SP};
use crate::elf::MappingRange;
use crate::frame::CodeAddress;
use crate::frame::CodeAddress::{InstructionPointer as Ip, ReturnAddress as Ra};
use crate::unwind::{ModuleLookup, ModuleRef, UnwindEnd, Unwinder, X86_64Regs, X86_64};

const SOURCE: &str = include_str!("synth.s");

/// Where the synthetic library is "mapped".
const BASE: u64 = 0x7f12_3400_0000;

/// A shared library assembled from `synth.s`, and its symbols (SVMAs).
struct Synth {
    _dir: tempfile::TempDir,
    path: PathBuf,
    syms: HashMap<String, u64>,
}

impl Synth {
    /// Assembles `synth.s` preceded by `prelude`, then runs `objcopy` with `objcopy_args` if any.
    fn build(prelude: &str, objcopy_args: &[&str]) -> Synth {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("synth.s");
        std::fs::write(&src, format!("{prelude}\n{SOURCE}")).unwrap();
        let path = dir.path().join("libsynth.so");
        run(Command::new("gcc")
            .args(["-shared", "-nostdlib", "-o"])
            .arg(&path)
            .arg(&src));
        if !objcopy_args.is_empty() {
            run(Command::new("objcopy").args(objcopy_args).arg(&path));
        }
        let data = std::fs::read(&path).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let syms = file
            .symbols()
            .filter_map(|s| Some((s.name().ok()?.to_string(), s.address())))
            .collect();
        Synth {
            _dir: dir,
            path,
            syms,
        }
    }

    /// The AVMA of a symbol.
    fn at(&self, name: &str) -> u64 {
        BASE + self.syms[name]
    }

    /// The whole file mapped at `BASE`.
    fn lookup(&self) -> OneModule<'_> {
        OneModule {
            range: MappingRange {
                start: BASE,
                end: BASE + 0x10000,
                pgoff: 0,
            },
            path: &self.path,
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct OneModule<'a> {
    range: MappingRange,
    path: &'a Path,
}

impl ModuleLookup for OneModule<'_> {
    fn find(&self, avma: u64) -> Option<ModuleRef<'_>> {
        self.range.contains(avma).then_some(ModuleRef {
            range: self.range,
            path: self.path,
            key: None,
        })
    }
}

fn walk(
    unwinder: &mut Unwinder<X86_64>,
    modules: &dyn ModuleLookup,
    regs: X86_64Regs,
    stack: &FakeStack,
    len: usize,
) -> (Vec<CodeAddress>, UnwindEnd) {
    let mut out = Vec::new();
    let end = unwinder.unwind(&regs, &stack.snapshot(len), modules, &mut out);
    (out, end)
}

/// leaf ← f_sized ← f_frame (rbp-based) ← f_outer (rip undefined), 128 bytes of stack.
fn basic_stack(lib: &Synth) -> (X86_64Regs, FakeStack) {
    let mut s = FakeStack::new(128);
    s.set(0, lib.at("f_sized_ret")); // f_leaf: CFA = SP+8
    s.set(48, lib.at("f_frame_ret")); // f_sized: CFA = SP+56
    s.set(88, 0x1234).set(96, lib.at("f_outer_ret")); // f_frame: rbp = SP+88, CFA = SP+104
    let regs = X86_64Regs::new(lib.at("f_leaf_ip"), SP, SP + 88);
    (regs, s)
}

fn basic_expected(lib: &Synth) -> Vec<CodeAddress> {
    vec![
        Ip(lib.at("f_leaf_ip")),
        Ra(lib.at("f_sized_ret")),
        Ra(lib.at("f_frame_ret")),
        Ra(lib.at("f_outer_ret")),
    ]
}

fn check_basic_walk(lib: &Synth) {
    let (regs, s) = basic_stack(lib);
    let mut u = Unwinder::new();
    let got = walk(&mut u, &lib.lookup(), regs, &s, 128);
    assert_eq!(got, (basic_expected(lib), UnwindEnd::Complete));
    // Steady state: the same walk from the rule cache.
    let again = walk(&mut u, &lib.lookup(), regs, &s, 128);
    assert_eq!(again, got);
}

#[test]
fn cfi_walk_through_eh_frame_hdr() {
    check_basic_walk(&Synth::build("", &[]));
}

#[test]
fn cfi_walk_with_own_index_when_eh_frame_hdr_is_missing() {
    let lib = Synth::build("", &["--remove-section", ".eh_frame_hdr"]);
    check_basic_walk(&lib);
}

#[test]
fn cfi_walk_through_debug_frame() {
    check_basic_walk(&Synth::build("\t.cfi_sections .debug_frame", &[]));
}

#[test]
fn mapping_of_the_text_segment_only_uses_its_file_offset() {
    let lib = Synth::build("", &[]);
    let text_offset = 0x1000; // synth.s's text segment: file offset 0x1000 at SVMA 0x1000
    let modules = OneModule {
        range: MappingRange {
            start: BASE + text_offset,
            end: BASE + text_offset + 0x1000,
            pgoff: text_offset,
        },
        path: &lib.path,
    };
    let (regs, s) = basic_stack(&lib);
    let got = walk(&mut Unwinder::new(), &modules, regs, &s, 128);
    assert_eq!(got, (basic_expected(&lib), UnwindEnd::Complete));
}

#[test]
fn cut_stack_is_truncated() {
    let lib = Synth::build("", &[]);
    let (regs, s) = basic_stack(&lib);
    // f_sized's return address is at SP+48: past a 40-byte copy.
    let (frames, end) = walk(&mut Unwinder::new(), &lib.lookup(), regs, &s, 40);
    assert_eq!(end, UnwindEnd::Truncated);
    assert_eq!(frames, basic_expected(&lib)[..2]);
}

#[test]
fn signal_frame_gives_an_exact_instruction_pointer() {
    let lib = Synth::build("", &[]);
    let mut s = FakeStack::new(320);
    s.set(0, lib.at("f_sigtramp_ret")); // the handler (leaf) returns into the trampoline
    s.set(16, lib.at("f_sized_body")); // saved rip: f_sized right after its prologue
    s.set(24, SP + 200); // saved rsp = CFA of the trampoline
    s.set(32, SP + 280); // saved rbp (f_frame's)
    s.set(240, lib.at("f_frame_ret")); // f_sized: CFA = SP+248
    s.set(280, 0x1234).set(288, lib.at("f_outer_ret"));
    let regs = X86_64Regs::new(lib.at("f_leaf_ip"), SP, 0xdead);
    let got = walk(&mut Unwinder::new(), &lib.lookup(), regs, &s, 320);
    // f_sized_body is looked up as is: at f_sized_body - 1 the CFA would be rsp + 8.
    let expected = vec![
        Ip(lib.at("f_leaf_ip")),
        Ra(lib.at("f_sigtramp_ret")),
        Ip(lib.at("f_sized_body")),
        Ra(lib.at("f_frame_ret")),
        Ra(lib.at("f_outer_ret")),
    ];
    assert_eq!(got, (expected, UnwindEnd::Complete));
}

#[test]
fn plt_cfa_expression_uses_rip_and_rsp() {
    let lib = Synth::build("", &[]);
    let plt = lib.at("f_plt");
    let mut u = Unwinder::new();
    for (ip, ra_offset) in [(plt + 2, 0), (plt + 12, 8)] {
        let mut s = FakeStack::new(64);
        s.set(ra_offset, lib.at("f_outer_ret"));
        let regs = X86_64Regs::new(ip, SP, 0);
        let got = walk(&mut u, &lib.lookup(), regs, &s, 64);
        let expected = vec![Ip(ip), Ra(lib.at("f_outer_ret"))];
        assert_eq!(
            got,
            (expected, UnwindEnd::Complete),
            "ip = f_plt + {}",
            ip - plt
        );
    }
}

#[test]
fn code_without_cfi_falls_back_to_frame_pointers() {
    let lib = Synth::build("", &[]);
    let mut s = FakeStack::new(96);
    s.set(0, lib.at("f_nocfi_ret")); // f_leaf (CFI): CFA = SP+8
    s.set(8, SP + 56).set(16, lib.at("f_frame_ret")); // f_nocfi: rbp = SP+8
    s.set(56, 0x1234).set(64, lib.at("f_outer_ret")); // f_frame: rbp = SP+56
    let regs = X86_64Regs::new(lib.at("f_leaf_ip"), SP, SP + 8);
    let got = walk(&mut Unwinder::new(), &lib.lookup(), regs, &s, 96);
    let expected = vec![
        Ip(lib.at("f_leaf_ip")),
        Ra(lib.at("f_nocfi_ret")),
        Ra(lib.at("f_frame_ret")),
        Ra(lib.at("f_outer_ret")),
    ];
    assert_eq!(got, (expected, UnwindEnd::Complete));
}

#[test]
fn module_stripped_of_cfi_unwinds_with_frame_pointers() {
    let lib = Synth::build(
        "",
        &[
            "--remove-section",
            ".eh_frame_hdr",
            "--remove-section",
            ".eh_frame",
        ],
    );
    // Only the frame-pointer chain is usable: f_nocfi's record, then a record with ra 0.
    let mut s = FakeStack::new(64);
    s.set(8, SP + 32).set(16, lib.at("f_frame_ret"));
    s.set(32, 0).set(40, 0);
    let regs = X86_64Regs::new(lib.at("f_nocfi_ret"), SP + 8, SP + 8);
    let stack = FakeStack {
        bytes: s.bytes[8..].to_vec(),
    };
    let mut out = Vec::new();
    let snapshot = crate::unwind::StackSnapshot::new(SP + 8, &stack.bytes);
    let end = Unwinder::<X86_64>::new().unwind(&regs, &snapshot, &lib.lookup(), &mut out);
    assert_eq!(end, UnwindEnd::Complete);
    assert_eq!(out, [Ip(lib.at("f_nocfi_ret")), Ra(lib.at("f_frame_ret"))]);
}

#[test]
fn garbage_or_missing_file_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.so");
    std::fs::write(&garbage, b"\x7fELF this is not an ELF file at all").unwrap();
    let missing = dir.path().join("missing.so");
    for path in [&garbage, &missing] {
        let modules = OneModule {
            range: MappingRange {
                start: BASE,
                end: BASE + 0x10000,
                pgoff: 0,
            },
            path,
        };
        let mut s = FakeStack::new(64);
        s.set(16, SP + 48).set(24, BASE + 0x20);
        s.set(48, 0).set(56, 0);
        let regs = X86_64Regs::new(BASE + 0x10, SP, SP + 16);
        let got = walk(&mut Unwinder::new(), &modules, regs, &s, 64);
        let expected = vec![Ip(BASE + 0x10), Ra(BASE + 0x20)];
        assert_eq!(got, (expected, UnwindEnd::Complete), "{}", path.display());
    }
}

#[test]
fn return_address_is_looked_up_one_byte_before() {
    let lib = Synth::build("", &[]);
    let mut s = FakeStack::new(64);
    s.set(0, lib.at("f_after")); // f_noreturn's call returns to f_after's first byte
    s.set(32, lib.at("f_outer_ret")); // f_noreturn: CFA = SP+40
    let regs = X86_64Regs::new(lib.at("f_leaf_ip"), SP, 0);
    let got = walk(&mut Unwinder::new(), &lib.lookup(), regs, &s, 64);
    let expected = vec![
        Ip(lib.at("f_leaf_ip")),
        Ra(lib.at("f_after")),
        Ra(lib.at("f_outer_ret")),
    ];
    assert_eq!(got, (expected, UnwindEnd::Complete));
}

#[test]
fn stack_pointer_moving_down_stops() {
    let lib = Synth::build("", &[]);
    let mut s = FakeStack::new(64);
    s.set(0, lib.at("f_sigtramp_ret"));
    s.set(16, lib.at("f_sized_body"));
    s.set(24, SP); // the trampoline claims the interrupted sp is below its own
    let regs = X86_64Regs::new(lib.at("f_leaf_ip"), SP, 0);
    let (frames, end) = walk(&mut Unwinder::new(), &lib.lookup(), regs, &s, 64);
    assert_eq!(end, UnwindEnd::Stopped);
    assert_eq!(frames.len(), 2);
}

/// aarch64 walks through the rule cache: the x86_64 library only provides a module and its
/// segment map; the rules are hand-built aarch64 ones.
#[test]
fn aarch64_leaf_keeps_sp_only_in_the_first_frame() {
    use crate::unwind::rule::{CfaRule, FrameRule, RegRule, SavedRules};
    use crate::unwind::{Aarch64, Aarch64Regs};
    let lib = Synth::build("", &[]);
    let leaf = FrameRule {
        cfa: CfaRule::RegOffset { reg: 31, offset: 0 },
        ra: RegRule::Unspecified,
        ra_column: 30,
        sp: RegRule::Unspecified,
        saved: SavedRules::default(),
        signal: false,
        stack_switch: false,
    };
    let framed = FrameRule {
        cfa: CfaRule::RegOffset {
            reg: 29,
            offset: 16,
        },
        ra: RegRule::Offset(-8),
        saved: SavedRules::of(&[(29, RegRule::Offset(-16))]),
        ..leaf
    };
    let mut s = FakeStack::new(64);
    s.set(16, 0).set(24, 0); // the caller's frame record: the outermost frame
    let regs = Aarch64Regs::new(BASE + 0x1030, SP, BASE + 0x1010, SP + 16);
    for (caller_rule, expected_end) in [(framed, UnwindEnd::Complete), (leaf, UnwindEnd::Stopped)] {
        let mut u = Unwinder::<Aarch64>::new();
        u.insert_rule(&lib.path, 0x1030, Some(leaf));
        u.insert_rule(&lib.path, 0x100f, Some(caller_rule)); // lookup at ra - 1
        let mut out = Vec::new();
        let end = u.unwind(&regs, &s.snapshot(64), &lib.lookup(), &mut out);
        assert_eq!(end, expected_end);
        assert_eq!(out, [Ip(BASE + 0x1030), Ra(BASE + 0x1010)]);
    }
}
