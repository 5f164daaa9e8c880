//! Compact, copyable unwind rules for one code address, and how to apply them to a frame.
//!
//! A [`FrameRule`] is what the rule cache keeps: the CFA rule, the return-address rule and the
//! rules of every tracked register the row names (up to [`MAX_SAVED`]), converted from a
//! `gimli::UnwindTableRow` once. DWARF expressions are kept as a range of their CFI section and
//! evaluated against the stack snapshot when applied.
//!
//! A saved register whose slot lies below the frame's stack pointer keeps its current value: in
//! an epilogue, after `pop %rbx`, GCC's CFI still says "rbx at CFA-N", but the register already
//! holds the caller's value again (and the kernel never copies memory below `sp`).

use gimli::{
    CfaRule as GimliCfa, EndianSlice, Evaluation, EvaluationResult, EvaluationStorage,
    LittleEndian, Location, Piece, Reader, Register, RegisterRule as GimliRule, UnwindExpression,
    UnwindTableRow, Value,
};

use super::arch::{Arch, RegFile, MAX_REGS};
use super::{ReadError, StackSnapshot, UnwindEnd};

/// Which CFI section an expression lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CfiSection {
    EhFrame,
    DebugFrame,
}

/// A DWARF expression, as a byte range of a module's CFI section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Expr {
    pub section: CfiSection,
    pub offset: u32,
    pub len: u32,
}

/// How to compute the canonical frame address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CfaRule {
    RegOffset { reg: u16, offset: i64 },
    Expr(Expr),
}

/// How to recover one register of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RegRule {
    /// No rule in the CFI: the architecture's default applies.
    Unspecified,
    Undefined,
    SameValue,
    Offset(i64),
    ValOffset(i64),
    Register(u16),
    Expr(Expr),
    ValExpr(Expr),
    Constant(u64),
    Unsupported,
}

/// The most register rules (besides sp and the return address) one [`FrameRule`] keeps:
/// aarch64 saves at most x19 to x29, x86_64 rbx, rbp and r12 to r15; signal frames name more.
pub(crate) const MAX_SAVED: usize = 12;

/// Rules of the tracked registers a CFI row names, other than sp and the return-address column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SavedRules {
    regs: [u8; MAX_SAVED],
    rules: [RegRule; MAX_SAVED],
    len: u8,
    /// Registers with a rule that did not fit: unknown in the caller.
    lost: u32,
    /// Registers with a rule here (bit `n` for register `n`).
    ruled: u32,
    /// Whether a rule reads other registers (register and expression rules): the caller's
    /// values must then be computed before any is written.
    reads_registers: bool,
}

impl Default for SavedRules {
    fn default() -> Self {
        SavedRules {
            regs: [0; MAX_SAVED],
            rules: [RegRule::Unspecified; MAX_SAVED],
            len: 0,
            lost: 0,
            ruled: 0,
            reads_registers: false,
        }
    }
}

impl SavedRules {
    /// Adds the rule of DWARF register `reg` (below [`super::arch::MAX_REGS`]).
    pub fn push(&mut self, reg: u16, rule: RegRule) {
        let i = usize::from(self.len);
        match u8::try_from(reg) {
            Ok(r) if i < MAX_SAVED => {
                self.regs[i] = r;
                self.rules[i] = rule;
                self.len += 1;
                self.ruled |= 1u32.checked_shl(u32::from(reg)).unwrap_or(0);
                self.reads_registers |= matches!(
                    rule,
                    RegRule::Register(_) | RegRule::Expr(_) | RegRule::ValExpr(_)
                );
            }
            _ => self.lost |= 1u32.checked_shl(u32::from(reg)).unwrap_or(0),
        }
    }

    /// Rules from `(register, rule)` pairs (tests).
    #[cfg(test)]
    pub fn of(pairs: &[(u16, RegRule)]) -> Self {
        let mut saved = SavedRules::default();
        for &(reg, rule) in pairs {
            saved.push(reg, rule);
        }
        saved
    }

    /// `(register, rule)` pairs.
    fn iter(&self) -> impl Iterator<Item = (u16, RegRule)> + '_ {
        let n = usize::from(self.len);
        self.regs[..n]
            .iter()
            .zip(&self.rules[..n])
            .map(|(&r, &rule)| (u16::from(r), rule))
    }
}

/// The unwind rules that apply at one code address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FrameRule {
    pub cfa: CfaRule,
    /// The rule of the return-address column.
    pub ra: RegRule,
    /// The DWARF number of the return-address column.
    pub ra_column: u16,
    pub sp: RegRule,
    /// The rules of the other tracked registers (frame pointer, callee-saved registers, and
    /// every register of a signal frame).
    pub saved: SavedRules,
    /// Whether this frame is a signal trampoline (CIE augmentation `S`): the caller's address is
    /// then the exact interrupted instruction, not a return address.
    pub signal: bool,
    /// Whether this frame's function switches stacks: its caller cannot be found from here.
    pub stack_switch: bool,
}

impl FrameRule {
    /// The rule of a function that switches stacks: applying it ends the walk.
    pub fn stack_switch<A: Arch>() -> Self {
        FrameRule {
            cfa: CfaRule::RegOffset {
                reg: A::SP,
                offset: 0,
            },
            ra: RegRule::Undefined,
            ra_column: 0,
            sp: RegRule::Unspecified,
            saved: SavedRules::default(),
            signal: false,
            stack_switch: true,
        }
    }

    /// Converts a gimli row; `ra_column` comes from the CIE.
    pub fn from_row<A: Arch>(
        row: &UnwindTableRow<usize>,
        ra_column: Register,
        signal: bool,
        section: CfiSection,
    ) -> Self {
        let cfa = match row.cfa() {
            GimliCfa::RegisterAndOffset { register, offset } => CfaRule::RegOffset {
                reg: register.0,
                offset: *offset,
            },
            GimliCfa::Expression(e) => CfaRule::Expr(expr(section, e)),
        };
        let rule = |reg: u16| convert(row.register(Register(reg)), section);
        // Callee-saved registers first: when a row names more registers than fit (a signal
        // frame restores all of them), the ones a caller may need are kept.
        let mut saved = SavedRules::default();
        for callee_saved in [true, false] {
            for (reg, r) in row.registers() {
                let reg = reg.0;
                let tracked = usize::from(reg) < MAX_REGS && reg != A::SP && reg != ra_column.0;
                if tracked && (A::CALLEE_SAVED & (1 << reg) != 0) == callee_saved {
                    saved.push(reg, convert(Some(r.clone()), section));
                }
            }
        }
        FrameRule {
            cfa,
            ra: rule(ra_column.0),
            ra_column: ra_column.0,
            sp: rule(A::SP),
            saved,
            signal,
            stack_switch: false,
        }
    }
}

fn expr(section: CfiSection, e: &UnwindExpression<usize>) -> Expr {
    // Offsets past 4 GiB cannot occur in a CFI section we read (files are mapped whole);
    // saturate so such an expression fails to resolve instead of aliasing another one.
    Expr {
        section,
        offset: u32::try_from(e.offset).unwrap_or(u32::MAX),
        len: u32::try_from(e.length).unwrap_or(0),
    }
}

fn convert(rule: Option<GimliRule<usize>>, section: CfiSection) -> RegRule {
    match rule {
        None => RegRule::Unspecified,
        Some(GimliRule::Undefined) => RegRule::Undefined,
        Some(GimliRule::SameValue) => RegRule::SameValue,
        Some(GimliRule::Offset(n)) => RegRule::Offset(n),
        Some(GimliRule::ValOffset(n)) => RegRule::ValOffset(n),
        Some(GimliRule::Register(r)) => RegRule::Register(r.0),
        Some(GimliRule::Expression(e)) => RegRule::Expr(expr(section, &e)),
        Some(GimliRule::ValExpression(e)) => RegRule::ValExpr(expr(section, &e)),
        Some(GimliRule::Constant(c)) => RegRule::Constant(c),
        Some(_) => RegRule::Unsupported,
    }
}

/// Gives the bytes of a DWARF expression referenced by a rule.
pub(crate) trait ExprSource {
    fn expression(&self, e: Expr) -> Option<&[u8]>;
}

/// No expressions available (frames without a module).
impl ExprSource for () {
    fn expression(&self, _: Expr) -> Option<&[u8]> {
        None
    }
}

/// The caller's frame, as computed from a callee frame (its registers are updated in place).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    /// The caller's code address (a return address unless `signal`).
    pub pc: u64,
    /// The callee was a signal frame: `pc` is an exact instruction pointer.
    pub signal: bool,
}

/// A step with the caller's registers (tests).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Applied {
    pub pc: u64,
    pub regs: RegFile,
    pub signal: bool,
}

/// [`apply_rule_in_place`] on a copy of `regs` (tests).
#[cfg(test)]
pub(crate) fn apply_rule<A: Arch>(
    rule: &FrameRule,
    pc: u64,
    regs: &RegFile,
    stack: &StackSnapshot,
    exprs: &dyn ExprSource,
) -> Result<Applied, UnwindEnd> {
    let mut regs = *regs;
    let step = apply_rule_in_place::<A>(rule, pc, &mut regs, stack, exprs)?;
    Ok(Applied {
        pc: step.pc,
        regs,
        signal: step.signal,
    })
}

impl From<ReadError> for UnwindEnd {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Truncated => UnwindEnd::Truncated,
            ReadError::Invalid => UnwindEnd::Stopped,
        }
    }
}

/// Applies `rule` to the frame (`pc`, `regs`): gives the caller's code address and turns `regs`
/// into the caller's registers (in place: a register file is a few hundred bytes, copied for
/// no frame). On error `regs` is unchanged.
///
/// Ends with `Complete` when the return address is undefined (the outermost frame), `Truncated`
/// when a needed read is past the copied stack, `StackSwitch` in a stack-switching function,
/// `Stopped` for anything unrecoverable.
pub(crate) fn apply_rule_in_place<A: Arch>(
    rule: &FrameRule,
    pc: u64,
    regs: &mut RegFile,
    stack: &StackSnapshot,
    exprs: &dyn ExprSource,
) -> Result<Step, UnwindEnd> {
    if rule.stack_switch {
        return Err(UnwindEnd::StackSwitch);
    }
    let ctx = EvalCtx::<A> {
        pc,
        regs,
        stack,
        exprs,
        _arch: std::marker::PhantomData,
    };
    let cfa = match rule.cfa {
        CfaRule::RegOffset { reg, offset } => A::register(ctx.regs, pc, reg)
            .ok_or(UnwindEnd::Stopped)?
            .wrapping_add(offset as u64),
        CfaRule::Expr(e) => ctx.evaluate(e, None)?,
    };
    // Unspecified or same-value return address: only meaningful for a link register.
    let ra_now = A::LR
        .filter(|&lr| lr == rule.ra_column)
        .and_then(|lr| ctx.regs.get(lr));
    let ra = match rule.ra {
        RegRule::Undefined => return Err(UnwindEnd::Complete),
        r => ctx.recover(r, cfa, ra_now)?.ok_or(UnwindEnd::Stopped)?,
    };
    let sp = match rule.sp {
        RegRule::Unspecified => cfa,
        r => ctx
            .recover(r, cfa, Some(ctx.regs.sp))?
            .ok_or(UnwindEnd::Stopped)?,
    };
    if rule.saved.reads_registers {
        // Rules read the callee's registers: stage the caller's values, then write them.
        let mut staged = [(0u16, None); MAX_SAVED];
        let mut n = 0;
        for (reg, r) in rule.saved.iter() {
            staged[n] = (reg, ctx.recover_saved(r, cfa, ctx.regs.get(reg)));
            n += 1;
        }
        for &(reg, value) in &staged[..n] {
            regs.set(reg, value);
        }
    } else {
        // Save slots, same values, undefined: each rule reads only its own register.
        for (reg, r) in rule.saved.iter() {
            let value = recover_slot(r, cfa, regs.sp, stack, regs.get(reg));
            regs.set(reg, value);
        }
    }
    regs.sp = sp;
    // Registers a call does not preserve are unknown in the caller unless a rule says otherwise.
    regs.retain((A::CALLEE_SAVED & !rule.saved.lost) | rule.saved.ruled);
    let ra = A::strip_code_address(ra);
    if let Some(lr) = A::LR {
        regs.set(lr, Some(ra));
    }
    Ok(Step {
        pc: ra,
        signal: rule.signal,
    })
}

/// The caller's value of a saved register (current value `now`) whose rule reads no other
/// register: see [`EvalCtx::recover_saved`]. `sp` is the frame's stack pointer.
#[inline]
fn recover_slot(
    rule: RegRule,
    cfa: u64,
    sp: u64,
    stack: &StackSnapshot,
    now: Option<u64>,
) -> Option<u64> {
    match rule {
        RegRule::Offset(n) => read_slot(cfa.wrapping_add(n as u64), sp, stack, now),
        RegRule::Unspecified | RegRule::SameValue => now,
        RegRule::ValOffset(n) => Some(cfa.wrapping_add(n as u64)),
        RegRule::Constant(c) => Some(c),
        // Undefined, unsupported, and rules that read registers (not handled here).
        _ => None,
    }
}

/// A saved register's value from its save `slot`: `now` when the slot is below the frame's `sp`
/// (already restored, or not saved yet) or unreadable, unknown past the copied stack.
#[inline]
fn read_slot(slot: u64, sp: u64, stack: &StackSnapshot, now: Option<u64>) -> Option<u64> {
    if slot < sp {
        return now;
    }
    match stack.read_u64(slot) {
        Ok(v) => Some(v),
        Err(ReadError::Invalid) => now,
        Err(ReadError::Truncated) => None,
    }
}

/// Everything an expression or register rule may need.
struct EvalCtx<'a, A: Arch> {
    pc: u64,
    regs: &'a RegFile,
    stack: &'a StackSnapshot<'a>,
    exprs: &'a dyn ExprSource,
    _arch: std::marker::PhantomData<A>,
}

/// Fixed-size evaluation storage: CFI expressions are tiny, and this keeps evaluation free of
/// heap allocation.
struct SmallStore;

impl<R: Reader> EvaluationStorage<R> for SmallStore {
    type Stack = [Value; 16];
    type ExpressionStack = [(R, R); 1];
    type Result = [Piece<R>; 1];
}

const CFI_ENCODING: gimli::Encoding = gimli::Encoding {
    address_size: 8,
    format: gimli::Format::Dwarf32,
    version: 4,
};

impl<A: Arch> EvalCtx<'_, A> {
    /// The caller's value of a register whose current value is `now`. `Ok(None)`: unknown.
    fn recover(&self, rule: RegRule, cfa: u64, now: Option<u64>) -> Result<Option<u64>, UnwindEnd> {
        let value = match rule {
            RegRule::Unspecified | RegRule::SameValue => return Ok(now),
            RegRule::Undefined | RegRule::Unsupported => return Ok(None),
            RegRule::Offset(n) => self.stack.read_u64(cfa.wrapping_add(n as u64))?,
            RegRule::ValOffset(n) => cfa.wrapping_add(n as u64),
            RegRule::Register(r) => return Ok(A::register(self.regs, self.pc, r)),
            RegRule::Expr(e) => self.stack.read_u64(self.evaluate(e, Some(cfa))?)?,
            RegRule::ValExpr(e) => self.evaluate(e, Some(cfa))?,
            RegRule::Constant(c) => c,
        };
        Ok(Some(value))
    }

    /// The caller's value of a saved register whose current value is `now`. A slot below the
    /// frame's `sp` (an epilogue that already restored the register, or a prologue that has not
    /// saved it yet) or one that cannot be read keeps `now`; a slot past the copied stack makes
    /// the register unknown; so does an expression that cannot be evaluated.
    fn recover_saved(&self, rule: RegRule, cfa: u64, now: Option<u64>) -> Option<u64> {
        match rule {
            RegRule::Expr(e) => {
                let slot = self.evaluate(e, Some(cfa)).ok()?;
                read_slot(slot, self.regs.sp, self.stack, now)
            }
            RegRule::Register(_) | RegRule::ValExpr(_) => {
                self.recover(rule, cfa, now).ok().flatten()
            }
            r => recover_slot(r, cfa, self.regs.sp, self.stack, now),
        }
    }

    /// Evaluates a DWARF expression; register rules start with the CFA pushed.
    fn evaluate(&self, e: Expr, initial: Option<u64>) -> Result<u64, UnwindEnd> {
        let bytes = self.exprs.expression(e).ok_or(UnwindEnd::Stopped)?;
        let reader = EndianSlice::new(bytes, LittleEndian);
        let mut eval = Evaluation::<_, SmallStore>::new_in(reader, CFI_ENCODING);
        if let Some(v) = initial {
            eval.set_initial_value(v);
        }
        eval.set_max_iterations(256);
        let stop = |_| UnwindEnd::Stopped;
        let mut state = eval.evaluate().map_err(stop)?;
        loop {
            state = match state {
                EvaluationResult::Complete => break,
                EvaluationResult::RequiresMemory { address, size, .. } => {
                    let v = self.stack.read_sized(address, size)?;
                    eval.resume_with_memory(Value::Generic(v)).map_err(stop)?
                }
                EvaluationResult::RequiresRegister { register, .. } => {
                    let v =
                        A::register(self.regs, self.pc, register.0).ok_or(UnwindEnd::Stopped)?;
                    eval.resume_with_register(Value::Generic(v)).map_err(stop)?
                }
                _ => return Err(UnwindEnd::Stopped),
            };
        }
        match eval.as_result() {
            [Piece {
                location: Location::Address { address },
                ..
            }] => Ok(*address),
            [Piece {
                location: Location::Value { value },
                ..
            }] => value.to_u64(!0).map_err(stop),
            _ => Err(UnwindEnd::Stopped),
        }
    }
}
