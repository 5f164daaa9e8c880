//! Compact, copyable unwind rules for one code address, and how to apply them to a frame.
//!
//! A [`FrameRule`] is what the rule cache keeps: the CFA rule and the rules of the few registers
//! the walk needs (sp, fp, the link register and the return-address column), converted from a
//! `gimli::UnwindTableRow` once. DWARF expressions are kept as a range of their CFI section and
//! evaluated against the stack snapshot when applied.

use gimli::{
    CfaRule as GimliCfa, EndianSlice, Evaluation, EvaluationResult, EvaluationStorage,
    LittleEndian, Location, Piece, Reader, Register, RegisterRule as GimliRule, UnwindExpression,
    UnwindTableRow, Value,
};

use super::arch::{Arch, RegFile};
use super::{ReadError, StackSnapshot, UnwindEnd};

/// Which CFI section an expression lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CfiSection {
    EhFrame,
    DebugFrame,
}

/// A DWARF expression, as a byte range of a module's CFI section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expr {
    pub section: CfiSection,
    pub offset: usize,
    pub len: usize,
}

/// How to compute the canonical frame address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CfaRule {
    RegOffset { reg: u16, offset: i64 },
    Expr(Expr),
}

/// How to recover one register of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// The unwind rules that apply at one code address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameRule {
    pub cfa: CfaRule,
    /// The rule of the return-address column.
    pub ra: RegRule,
    /// The DWARF number of the return-address column.
    pub ra_column: u16,
    pub sp: RegRule,
    pub fp: RegRule,
    /// Whether this frame is a signal trampoline (CIE augmentation `S`): the caller's address is
    /// then the exact interrupted instruction, not a return address.
    pub signal: bool,
}

impl FrameRule {
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
        FrameRule {
            cfa,
            ra: rule(ra_column.0),
            ra_column: ra_column.0,
            sp: rule(A::SP),
            fp: rule(A::FP),
            signal,
        }
    }
}

fn expr(section: CfiSection, e: &UnwindExpression<usize>) -> Expr {
    Expr {
        section,
        offset: e.offset,
        len: e.length,
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

/// The caller's frame, as computed from a callee frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    /// The caller's code address (a return address unless `signal`).
    pub pc: u64,
    pub regs: RegFile,
    /// The callee was a signal frame: `pc` is an exact instruction pointer.
    pub signal: bool,
}

impl From<ReadError> for UnwindEnd {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Truncated => UnwindEnd::Truncated,
            ReadError::Invalid => UnwindEnd::Stopped,
        }
    }
}

/// Applies `rule` to the frame (`pc`, `regs`), giving the caller's frame.
///
/// Ends with `Complete` when the return address is undefined (the outermost frame), `Truncated`
/// when a needed read is past the copied stack, `Stopped` for anything unrecoverable.
pub(crate) fn apply_rule<A: Arch>(
    rule: &FrameRule,
    pc: u64,
    regs: &RegFile,
    stack: &StackSnapshot,
    exprs: &dyn ExprSource,
) -> Result<Step, UnwindEnd> {
    let ctx = EvalCtx::<A> {
        pc,
        regs,
        stack,
        exprs,
        _arch: std::marker::PhantomData,
    };
    let cfa = match rule.cfa {
        CfaRule::RegOffset { reg, offset } => A::register(regs, pc, reg)
            .ok_or(UnwindEnd::Stopped)?
            .wrapping_add(offset as u64),
        CfaRule::Expr(e) => ctx.evaluate(e, None)?,
    };
    // Unspecified or same-value return address: only meaningful for a link register.
    let ra_now = if Some(rule.ra_column) == A::LR {
        regs.lr
    } else {
        None
    };
    let ra = match rule.ra {
        RegRule::Undefined => return Err(UnwindEnd::Complete),
        r => ctx.recover(r, cfa, ra_now)?.ok_or(UnwindEnd::Stopped)?,
    };
    let sp = match rule.sp {
        RegRule::Unspecified => cfa,
        r => ctx
            .recover(r, cfa, Some(regs.sp))?
            .ok_or(UnwindEnd::Stopped)?,
    };
    let fp = ctx.recover(rule.fp, cfa, regs.fp)?;
    let ra = A::strip_code_address(ra);
    Ok(Step {
        pc: ra,
        regs: RegFile {
            sp,
            fp,
            lr: A::LR.map(|_| ra),
        },
        signal: rule.signal,
    })
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
