//! Tests of the unwinder: hand-built rules (any arch), synthetic modules assembled with gcc and
//! walked over hand-built stacks, and a real walk of the test process's own stack (x86_64).

use super::rule::{apply_rule, Applied, CfaRule, CfiSection, FrameRule, RegRule, SavedRules};
use super::*;

/// Where fake stacks start.
const SP: u64 = 0x7ffd_0000_1000;

/// A stack image built word by word; `bytes()` is the copy starting at [`SP`].
struct FakeStack {
    bytes: Vec<u8>,
}

impl FakeStack {
    fn new(len: usize) -> Self {
        FakeStack {
            bytes: vec![0xcc; len],
        }
    }

    fn set(&mut self, offset: u64, value: u64) -> &mut Self {
        let o = offset as usize;
        self.bytes[o..o + 8].copy_from_slice(&value.to_le_bytes());
        self
    }

    fn snapshot(&self, len: usize) -> StackSnapshot<'_> {
        StackSnapshot::new(SP, &self.bytes[..len])
    }
}

/// A process with no file-backed mappings (all code is JIT code).
struct NoModules;

impl ModuleLookup for NoModules {
    fn find(&self, _: u64) -> Option<ModuleRef<'_>> {
        None
    }
}

#[test]
fn snapshot_reads_distinguish_truncated_from_invalid() {
    let mut s = FakeStack::new(16);
    s.set(8, 0x1122_3344_5566_7788);
    let snap = s.snapshot(16);
    assert_eq!(snap.read_u64(SP + 8), Ok(0x1122_3344_5566_7788));
    assert_eq!(snap.read_sized(SP + 8, 2), Ok(0x7788));
    assert_eq!(snap.read_u64(SP + 9), Err(ReadError::Truncated));
    assert_eq!(snap.read_u64(SP - 8), Err(ReadError::Invalid));
    assert_eq!(snap.read_u64(SP + (1 << 40)), Err(ReadError::Invalid));
}

#[test]
fn frame_pointer_chain_without_modules() {
    let mut s = FakeStack::new(64);
    s.set(16, SP + 48).set(24, 0x5000_0020);
    s.set(48, 0).set(56, 0); // outermost: return address 0
    let regs = X86_64Regs::new(0x5000_0010, SP, SP + 16);
    let mut out = Vec::new();
    let end = Unwinder::<X86_64>::new().unwind(&regs, &s.snapshot(64), &NoModules, &mut out);
    assert_eq!(
        out,
        [
            CodeAddress::InstructionPointer(0x5000_0010),
            CodeAddress::ReturnAddress(0x5000_0020)
        ]
    );
    assert_eq!(end, UnwindEnd::Complete);

    // The same chain cut before the second record is truncated, not complete.
    out.clear();
    let end = Unwinder::<X86_64>::new().unwind(&regs, &s.snapshot(40), &NoModules, &mut out);
    assert_eq!(end, UnwindEnd::Truncated);
    assert_eq!(out.len(), 2);
}

#[test]
fn frame_pointer_pointing_down_stops() {
    let mut s = FakeStack::new(64);
    // The second record's saved fp points below the caller's sp.
    s.set(16, SP + 8).set(24, 0x5000_0020);
    let regs = X86_64Regs::new(0x5000_0010, SP, SP + 16);
    let mut out = Vec::new();
    let end = Unwinder::<X86_64>::new().unwind(&regs, &s.snapshot(64), &NoModules, &mut out);
    assert_eq!(end, UnwindEnd::Stopped);
    assert_eq!(out.len(), 2);
}

#[test]
fn aarch64_leaf_rule_takes_the_link_register() {
    // A leaf without a frame: CFA = sp, return address still in x30 (no rule for it).
    let rule = FrameRule {
        cfa: CfaRule::RegOffset { reg: 31, offset: 0 },
        ra: RegRule::Unspecified,
        ra_column: 30,
        sp: RegRule::Unspecified,
        saved: SavedRules::default(),
        signal: false,
        stack_switch: false,
    };
    // The link register is signed with a PAC in the high bits.
    let regs = RegFile::new(SP)
        .with(29, SP + 32)
        .with(30, 0xffff_0000_0040_1234);
    let s = FakeStack::new(64);
    let step = apply_rule::<Aarch64>(&rule, 0x40_1000, &regs, &s.snapshot(64), &()).unwrap();
    assert_eq!(step.pc, 0x40_1234);
    assert_eq!(step.regs.sp, SP);
    assert_eq!(step.regs.get(29), Some(SP + 32));

    // A framed function: stp x29, x30, [sp, #-16]!; mov x29, sp  → CFA = x29 + 16,
    // x29 at CFA-16, x30 at CFA-8.
    let rule = FrameRule {
        cfa: CfaRule::RegOffset {
            reg: 29,
            offset: 16,
        },
        ra: RegRule::Offset(-8),
        ra_column: 30,
        sp: RegRule::Unspecified,
        saved: SavedRules::of(&[(29, RegRule::Offset(-16))]),
        signal: false,
        stack_switch: false,
    };
    let mut s = FakeStack::new(64);
    s.set(32, SP + 48).set(40, 0x40_2000);
    let step: Applied =
        apply_rule::<Aarch64>(&rule, 0x40_1000, &regs, &s.snapshot(64), &()).unwrap();
    assert_eq!(step.pc, 0x40_2000);
    assert_eq!(step.regs.sp, SP + 48);
    assert_eq!(step.regs.get(29), Some(SP + 48));
    assert_eq!(step.regs.get(30), Some(0x40_2000));

    // An undefined return address ends the walk.
    let outer = FrameRule {
        ra: RegRule::Undefined,
        ..rule
    };
    let end = apply_rule::<Aarch64>(&outer, 0x40_1000, &regs, &s.snapshot(64), &());
    assert_eq!(end, Err(UnwindEnd::Complete));

    // An expression rule without expression bytes stops instead of panicking.
    let expr = FrameRule {
        cfa: CfaRule::Expr(rule::Expr {
            section: CfiSection::EhFrame,
            offset: 0,
            len: 4,
        }),
        ..rule
    };
    let end = apply_rule::<Aarch64>(&expr, 0x40_1000, &regs, &s.snapshot(64), &());
    assert_eq!(end, Err(UnwindEnd::Stopped));
}

#[test]
fn aarch64_frame_pointer_walk() {
    let mut s = FakeStack::new(64);
    s.set(16, SP + 32).set(24, 0xff00_0000_0040_2000);
    s.set(32, 0).set(40, 0);
    let regs = Aarch64Regs::new(0x40_1000, SP, 0x40_3000, SP + 16);
    let mut out = Vec::new();
    let end = Unwinder::<Aarch64>::new().unwind(&regs, &s.snapshot(64), &NoModules, &mut out);
    assert_eq!(end, UnwindEnd::Complete);
    assert_eq!(
        out,
        [
            CodeAddress::InstructionPointer(0x40_1000),
            CodeAddress::ReturnAddress(0x40_2000)
        ]
    );
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod synthetic;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod real;

#[cfg(target_os = "linux")]
#[test]
fn vdso_is_read_from_this_process() {
    use object::{Object, ObjectSymbol};
    let info = super::module::ModuleInfo::load(std::path::Path::new("[vdso]")).unwrap();
    assert!(info.has_cfi());
    let image = crate::elf::vdso::read_own_image().unwrap();
    let file = object::File::parse(&*image).unwrap();
    let gettime = file
        .dynamic_symbols()
        .find(|s| s.name().is_ok_and(|n| n.ends_with("clock_gettime")))
        .unwrap();
    let mut ctx = gimli::UnwindContext::new();
    let rule = info.find_rule::<NativeArch>(gettime.address() + 1, &mut ctx);
    assert!(rule.is_some(), "no CFI for {:?}", gettime.name());
}

/// An x86_64 rule: CFA = `reg` + `offset`, return address at CFA-8, `saved` register rules.
fn x86_rule(reg: u16, offset: i64, saved: &[(u16, RegRule)]) -> FrameRule {
    FrameRule {
        cfa: CfaRule::RegOffset { reg, offset },
        ra: RegRule::Offset(-8),
        ra_column: 16,
        sp: RegRule::Unspecified,
        saved: SavedRules::of(saved),
        signal: false,
        stack_switch: false,
    }
}

#[test]
fn epilogue_slot_below_sp_keeps_the_register() {
    // After `pop %rbx; pop %rbp`: CFA = rsp + 8, yet the CFI still says rbx at CFA-24 and rbp
    // at CFA-16, slots now below sp. Both registers already hold the caller's values.
    let rule = x86_rule(
        7,
        8,
        &[(3, RegRule::Offset(-24)), (6, RegRule::Offset(-16))],
    );
    let mut s = FakeStack::new(64);
    s.set(0, 0x5000_0100);
    let regs = RegFile::new(SP).with(3, 0x33).with(6, 0x66);
    let step = apply_rule::<X86_64>(&rule, 0x5000_0010, &regs, &s.snapshot(64), &()).unwrap();
    assert_eq!(step.pc, 0x5000_0100);
    assert_eq!(step.regs.sp, SP + 8);
    assert_eq!(
        (step.regs.get(3), step.regs.get(6)),
        (Some(0x33), Some(0x66))
    );

    // In the body, the same slots are above sp: the saved values are read.
    let rule = x86_rule(
        7,
        32,
        &[(3, RegRule::Offset(-24)), (6, RegRule::Offset(-16))],
    );
    s.set(8, 0x333).set(16, 0x666).set(24, 0x5000_0200);
    let step = apply_rule::<X86_64>(&rule, 0x5000_0010, &regs, &s.snapshot(64), &()).unwrap();
    assert_eq!(
        (step.regs.get(3), step.regs.get(6)),
        (Some(0x333), Some(0x666))
    );
    assert_eq!((step.pc, step.regs.sp), (0x5000_0200, SP + 32));

    // A slot past the copied bytes: the register is unknown, the walk goes on.
    let rule = x86_rule(7, 8, &[(3, RegRule::Offset(64))]);
    let step = apply_rule::<X86_64>(&rule, 0x5000_0010, &regs, &s.snapshot(64), &()).unwrap();
    assert_eq!(step.regs.get(3), None);
}

#[test]
fn cfa_from_rbx_and_caller_saved_registers() {
    // `_dl_runtime_resolve_xsavec`: push %rbx; mov %rsp, %rbx; CFA = rbx + 16, rbx at CFA-16.
    let rule = x86_rule(3, 16, &[(3, RegRule::Offset(-16))]);
    let mut s = FakeStack::new(4096);
    s.set(2048, 0xb0b0).set(2056, 0x5000_0300);
    let regs = RegFile::new(SP)
        .with(3, SP + 2048)
        .with(0, 0xaa)
        .with(12, 0x12);
    let step = apply_rule::<X86_64>(&rule, 0x5000_0010, &regs, &s.snapshot(4096), &()).unwrap();
    assert_eq!((step.pc, step.regs.sp), (0x5000_0300, SP + 2064));
    assert_eq!(step.regs.get(3), Some(0xb0b0));
    // r12 is callee-saved without a rule: unchanged; rax is not preserved by a call: unknown.
    assert_eq!((step.regs.get(12), step.regs.get(0)), (Some(0x12), None));

    // Without rbx sampled, the CFA cannot be computed.
    let end = apply_rule::<X86_64>(
        &rule,
        0x5000_0010,
        &RegFile::new(SP),
        &s.snapshot(4096),
        &(),
    );
    assert_eq!(end, Err(UnwindEnd::Stopped));
}

#[test]
fn stack_switch_rule_ends_the_walk() {
    let rule = FrameRule::stack_switch::<X86_64>();
    let s = FakeStack::new(64);
    let end = apply_rule::<X86_64>(&rule, 0x5000_0010, &RegFile::new(SP), &s.snapshot(64), &());
    assert_eq!(end, Err(UnwindEnd::StackSwitch));
}

/// A process whose only executable memory is `[0x5000_0000, 0x5001_0000)`, without files.
struct OneAnonymousMapping;

impl ModuleLookup for OneAnonymousMapping {
    fn find(&self, _: u64) -> Option<ModuleRef<'_>> {
        None
    }
    fn is_code(&self, avma: u64) -> bool {
        (0x5000_0000..0x5001_0000).contains(&avma)
    }
}

#[test]
fn return_address_outside_every_mapping_is_a_bad_address() {
    let mut s = FakeStack::new(64);
    s.set(16, SP + 32).set(24, 0x5000_0020); // in the mapping
    s.set(32, SP + 48).set(40, 0x7777_0000); // in no mapping
    let regs = X86_64Regs::new(0x5000_0010, SP, SP + 16);
    let mut out = Vec::new();
    let end =
        Unwinder::<X86_64>::new().unwind(&regs, &s.snapshot(64), &OneAnonymousMapping, &mut out);
    assert_eq!(end, UnwindEnd::BadAddress);
    assert_eq!(
        out,
        [
            CodeAddress::InstructionPointer(0x5000_0010),
            CodeAddress::ReturnAddress(0x5000_0020)
        ]
    );
}

#[test]
fn rules_that_do_not_fit_make_their_registers_unknown() {
    // More rules than a FrameRule keeps: the registers past the limit are unknown in the caller,
    // never left at the callee's value.
    let pairs: Vec<(u16, RegRule)> = (0..16)
        .filter(|&r| r != 7)
        .map(|r| (r, RegRule::ValOffset(i64::from(r))))
        .collect();
    let rule = FrameRule {
        saved: SavedRules::of(&pairs),
        ..x86_rule(7, 8, &[])
    };
    let mut regs = RegFile::new(SP);
    for r in 0..16 {
        regs.set(r, Some(0x1000 + u64::from(r)));
    }
    let mut s = FakeStack::new(64);
    s.set(0, 0x5000_0100);
    let step = apply_rule::<X86_64>(&rule, 0x5000_0010, &regs, &s.snapshot(64), &()).unwrap();
    assert_eq!(step.regs.get(3), Some(SP + 8 + 3)); // kept: the rule's value
    assert_eq!(step.regs.get(15), None); // did not fit
}

#[test]
fn stack_switch_continues_with_the_kernel_callchain() {
    // The DWARF walk: leaf, then a return address into runtime.systemstack, where it stopped.
    let walk = [
        CodeAddress::InstructionPointer(0x5000_0010),
        CodeAddress::ReturnAddress(0x5000_0020),
    ];
    // The kernel's frame-pointer walk: same leaf and return address, then the goroutine's
    // callers, then garbage past the outermost frame.
    let chain = [
        0x5000_0010,
        0x5000_0020,
        0x5000_0030,
        0x5000_0040,
        0x7777_0000,
        0x5000_0050,
    ];
    let mut out = walk.to_vec();
    assert!(continue_with_callchain(
        &mut out,
        chain.into_iter(),
        &OneAnonymousMapping
    ));
    assert_eq!(
        out[2..],
        [
            CodeAddress::ReturnAddress(0x5000_0030),
            CodeAddress::ReturnAddress(0x5000_0040)
        ]
    );
    // A callchain without the walk's last address leaves the walk alone.
    let mut out = walk.to_vec();
    assert!(!continue_with_callchain(
        &mut out,
        [0x5000_0010, 0x5000_0060].into_iter(),
        &OneAnonymousMapping
    ));
    assert_eq!(out, walk);
}

/// A frame-pointer chain of `n` frames starting at [`SP`] (frame `k`'s record at
/// `SP + 16 + 32 k`, returning to `0x5000_0000 + 16 (k + 1)`), the outermost returning to 0.
fn fp_chain(n: usize) -> FakeStack {
    let mut s = FakeStack::new(32 * n + 32);
    for k in 0..n as u64 {
        let fp = 16 + 32 * k;
        let last = k + 1 == n as u64;
        s.set(fp, if last { 0 } else { SP + fp + 32 });
        s.set(fp + 8, if last { 0 } else { 0x5000_0000 + 16 * (k + 1) });
    }
    s
}

/// One memoized walk and one fresh walk of the same stack give the same frames, stack pointers
/// and end; returns how many frames the memoized one reused.
fn memoized_equals_fresh(
    memoized: &mut Unwinder<X86_64>,
    memo: &mut WalkMemo,
    version: u64,
    regs: &X86_64Regs,
    stack: &StackSnapshot,
    lookup: &dyn ModuleLookup,
) -> usize {
    let mut a = Vec::new();
    let end_a = memoized.unwind_memoized(regs, stack, lookup, version, memo, &mut a);
    let mut fresh = Unwinder::<X86_64>::new();
    let mut b = Vec::new();
    let end_b = fresh.unwind(regs, stack, lookup, &mut b);
    assert_eq!(end_a, end_b);
    assert_eq!(a, b);
    assert_eq!(memoized.frame_sps(), fresh.frame_sps());
    memoized.reused_frames()
}

#[test]
fn memoized_walk_reuses_the_callers_only_while_every_read_agrees() {
    let mut s = fp_chain(50);
    let regs = X86_64Regs::new(0x5000_0008, SP, SP + 16);
    let (mut unwinder, mut memo) = (Unwinder::<X86_64>::new(), WalkMemo::default());
    let len = s.bytes.len();
    let walk = |u: &mut Unwinder<X86_64>, m: &mut WalkMemo, s: &FakeStack, version, regs| {
        memoized_equals_fresh(u, m, version, regs, &s.snapshot(len), &NoModules)
    };
    assert_eq!(walk(&mut unwinder, &mut memo, &s, 1, &regs), 0);
    // The same stack again: everything past the leaf is taken from the memo.
    assert_eq!(walk(&mut unwinder, &mut memo, &s, 1, &regs), 49);
    // Another leaf in the same caller: still.
    let other_leaf = X86_64Regs::new(0x5000_0004, SP, SP + 16);
    assert_eq!(walk(&mut unwinder, &mut memo, &s, 1, &other_leaf), 49);
    // Other maps (another version): walked again.
    assert_eq!(walk(&mut unwinder, &mut memo, &s, 2, &regs), 0);
    // A return address changed deep down (read stepping frame 30): frames 1 to 31 are walked
    // again; frame 32 is back in the remembered state, and from there every read agrees.
    s.set(16 + 32 * 30 + 8, 0x5000_0999);
    assert_eq!(walk(&mut unwinder, &mut memo, &s, 2, &regs), 50 - 32);
    // A saved frame pointer changed to end the chain at frame 41: what the memo had past it
    // is not reused (frame 41's frame pointer differs), then the shorter walk is.
    s.set(16 + 32 * 40, 0);
    assert_eq!(walk(&mut unwinder, &mut memo, &s, 2, &regs), 0);
    assert_eq!(walk(&mut unwinder, &mut memo, &s, 2, &regs), 41);
    // A cut copy: the truncated walk is not completed from the memo's longer one...
    let cut = 16 + 32 * 20;
    let short = memoized_equals_fresh(
        &mut unwinder,
        &mut memo,
        2,
        &regs,
        &s.snapshot(cut),
        &NoModules,
    );
    assert_eq!(short, 0);
    // ...and the whole copy again is not cut short by the memo of the cut one.
    assert_eq!(walk(&mut unwinder, &mut memo, &s, 2, &regs), 0);
}

#[test]
fn memoized_walk_stops_at_the_depth_limit_like_a_fresh_one() {
    let deep = MAX_DEPTH - 10;
    let s = fp_chain(deep + 200);
    let len = s.bytes.len();
    let (mut unwinder, mut memo) = (Unwinder::<X86_64>::new(), WalkMemo::default());
    // A walk from frame 200 on: under the limit, remembered.
    let at = |k: u64| X86_64Regs::new(0x5000_0000 + 16 * k, SP + 32 * k, SP + 16 + 32 * k);
    let from_200 = s.snapshot(len);
    let n = memoized_equals_fresh(&mut unwinder, &mut memo, 1, &at(200), &from_200, &NoModules);
    assert_eq!(n, 0);
    // From frame 0: the memo's callers would make the walk longer than the limit.
    let n = memoized_equals_fresh(&mut unwinder, &mut memo, 1, &at(0), &from_200, &NoModules);
    assert_eq!(n, 0);
    // The memo now holds a walk cut by the limit: not reused by a shorter walk.
    let n = memoized_equals_fresh(&mut unwinder, &mut memo, 1, &at(200), &from_200, &NoModules);
    assert_eq!(n, 0);
    let n = memoized_equals_fresh(&mut unwinder, &mut memo, 1, &at(200), &from_200, &NoModules);
    assert!(n > deep - 10, "{n}");
}
