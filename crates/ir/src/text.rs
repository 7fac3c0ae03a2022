//! The IR's text form: what `-d op` prints and what IR test files are written in.
//!
//! ```text
//! block 0x80000000 insns=2 size=8            (` dispatch` after it: `Block::dispatch`)
//!     insn_start 0x80000000
//!     t0:i64 = ld_state 0x150
//!     t1:i64 = const 0x5
//!     t2:i64 = add t0, t1
//!     st_state 0x158, t2
//!     t3:i64 = load.4s t2
//!     store.8a t3, t2
//!     t4:i64 = call helper_name(t0, t1)
//! L0:
//!     brcond.ltu t0, t1, L0
//!     exit goto 0x80000008
//! ```
//! A temp's type is written where it is defined. Helpers are named; parsing
//! resolves names through a caller-supplied table.

use std::fmt;

use crate::{BinOp, Block, Cond, Exit, FpOp, Helper, Inst, IrError, Label, MemOp, MemSize, RmwOp, Temp, Ty, UnOp};

const BINOPS: &[(BinOp, &str)] = &[
    (BinOp::Add, "add"),
    (BinOp::Sub, "sub"),
    (BinOp::And, "and"),
    (BinOp::Or, "or"),
    (BinOp::Xor, "xor"),
    (BinOp::Shl, "shl"),
    (BinOp::Shr, "shr"),
    (BinOp::Sar, "sar"),
    (BinOp::Mul, "mul"),
    (BinOp::MulHs, "mulhs"),
    (BinOp::MulHu, "mulhu"),
    (BinOp::MulHsu, "mulhsu"),
    (BinOp::DivS, "divs"),
    (BinOp::DivU, "divu"),
    (BinOp::RemS, "rems"),
    (BinOp::RemU, "remu"),
    (BinOp::Rotl, "rotl"),
    (BinOp::Rotr, "rotr"),
    (BinOp::MinS, "mins"),
    (BinOp::MaxS, "maxs"),
    (BinOp::MinU, "minu"),
    (BinOp::MaxU, "maxu"),
];

const FPOPS: &[(FpOp, &str)] = &[
    (FpOp::Add, "add"),
    (FpOp::Sub, "sub"),
    (FpOp::Mul, "mul"),
    (FpOp::Div, "div"),
    (FpOp::Sqrt, "sqrt"),
    (FpOp::MulAdd, "muladd"),
];

const UNOPS: &[(UnOp, &str)] = &[
    (UnOp::Neg, "neg"),
    (UnOp::Not, "not"),
    (UnOp::Sext8, "sext8"),
    (UnOp::Sext16, "sext16"),
    (UnOp::Sext32, "sext32"),
    (UnOp::Zext8, "zext8"),
    (UnOp::Zext16, "zext16"),
    (UnOp::Zext32, "zext32"),
    (UnOp::Trunc, "trunc"),
    (UnOp::Clz, "clz"),
    (UnOp::Ctz, "ctz"),
    (UnOp::Popcnt, "popcnt"),
    (UnOp::Bswap, "bswap"),
];

const CONDS: &[(Cond, &str)] = &[
    (Cond::Eq, "eq"),
    (Cond::Ne, "ne"),
    (Cond::LtS, "lts"),
    (Cond::GeS, "ges"),
    (Cond::LtU, "ltu"),
    (Cond::GeU, "geu"),
    (Cond::LeS, "les"),
    (Cond::GtS, "gts"),
    (Cond::LeU, "leu"),
    (Cond::GtU, "gtu"),
];

const RMWOPS: &[(RmwOp, &str)] = &[
    (RmwOp::Xchg, "xchg"),
    (RmwOp::Add, "add"),
    (RmwOp::And, "and"),
    (RmwOp::Or, "or"),
    (RmwOp::Xor, "xor"),
    (RmwOp::MinS, "mins"),
    (RmwOp::MaxS, "maxs"),
    (RmwOp::MinU, "minu"),
    (RmwOp::MaxU, "maxu"),
    (RmwOp::Cas, "cas"),
];

fn name<T: PartialEq + Copy>(table: &[(T, &'static str)], v: T) -> &'static str {
    table.iter().find(|(k, _)| *k == v).map(|(_, n)| *n).unwrap_or("?")
}

fn lookup<T: Copy>(table: &[(T, &'static str)], s: &str) -> Option<T> {
    table.iter().find(|(_, n)| *n == s).map(|(k, _)| *k)
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ty::I32 => "i32",
            Ty::I64 => "i64",
        })
    }
}

impl fmt::Display for Temp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}", self.0)
    }
}

fn mop_suffix(m: MemOp) -> String {
    format!(
        "{}{}{}{}",
        m.size.bytes(),
        if m.signed { "s" } else { "" },
        if m.aligned { "a" } else { "" },
        if m.rmw { "w" } else { "" }
    )
}

impl Block {
    fn fmt_inst(&self, f: &mut fmt::Formatter<'_>, inst: &Inst) -> fmt::Result {
        let d = |t: &Temp| format!("{}:{} =", t, self.ty(*t));
        match inst {
            Inst::InsnStart { pc } => write!(f, "    insn_start {pc:#x}"),
            Inst::Const { dst, val } => write!(f, "    {} const {val:#x}", d(dst)),
            Inst::Mov { dst, src } => write!(f, "    mov {dst}, {src}"),
            Inst::LdState { dst, off } => write!(f, "    {} ld_state {off:#x}", d(dst)),
            Inst::StState { src, off } => write!(f, "    st_state {off:#x}, {src}"),
            Inst::Bin { op, dst, a, b } => write!(f, "    {} {} {a}, {b}", d(dst), name(BINOPS, *op)),
            Inst::Un { op, dst, src } => write!(f, "    {} {} {src}", d(dst), name(UNOPS, *op)),
            Inst::Fp { op, dst, a, b, c } => {
                let args = [a, b, c].iter().take(op.arity()).map(|t| t.to_string()).collect::<Vec<_>>();
                write!(f, "    {} fp.{} {}", d(dst), name(FPOPS, *op), args.join(", "))
            }
            Inst::Setcond { cond, dst, a, b } => {
                write!(f, "    {} setcond.{} {a}, {b}", d(dst), name(CONDS, *cond))
            }
            Inst::Select { dst, c, a, b } => write!(f, "    {} select {c}, {a}, {b}", d(dst)),
            Inst::Load { dst, addr, mop } => write!(f, "    {} load.{} {addr}", d(dst), mop_suffix(*mop)),
            Inst::Store { src, addr, mop } => write!(f, "    store.{} {src}, {addr}", mop_suffix(*mop)),
            Inst::Atomic { op: RmwOp::Cas, dst, addr, src, expected, mop } => {
                write!(f, "    {} atomic.cas.{} {addr}, {expected}, {src}", d(dst), mop_suffix(*mop))
            }
            Inst::Atomic { op, dst, addr, src, mop, .. } => {
                write!(f, "    {} atomic.{}.{} {addr}, {src}", d(dst), name(RMWOPS, *op), mop_suffix(*mop))
            }
            Inst::Call { helper, args, dst } => {
                let a: Vec<String> = args.iter().map(|t| t.to_string()).collect();
                match dst {
                    Some(t) => write!(f, "    {} call {}({})", d(t), helper.name, a.join(", ")),
                    None => write!(f, "    call {}({})", helper.name, a.join(", ")),
                }
            }
            Inst::SetLabel(l) => write!(f, "{l}:"),
            Inst::Br(l) => write!(f, "    br {l}"),
            Inst::BrCond { cond, a, b, target } => {
                write!(f, "    brcond.{} {a}, {b}, {target}", name(CONDS, *cond))
            }
            Inst::Exit(e) => match e {
                Exit::Goto(pc) => write!(f, "    exit goto {pc:#x}"),
                Exit::GotoNoChain(pc) => write!(f, "    exit goto_nochain {pc:#x}"),
                Exit::Indirect(t) => write!(f, "    exit indirect {t}"),
                Exit::Raise { cause, tval } => write!(f, "    exit raise {cause:#x}, {tval}"),
                Exit::Halt { next_pc } => write!(f, "    exit halt {next_pc:#x}"),
            },
        }
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {:#x} insns={} size={}", self.pc, self.ninsns, self.size)?;
        writeln!(f, "{}", if self.dispatch { " dispatch" } else { "" })?;
        for inst in &self.insts {
            self.fmt_inst(f, inst)?;
            writeln!(f)?;
        }
        Ok(())
    }
}

fn num(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else if let Some(n) = s.strip_prefix('-') {
        n.parse::<u64>().ok().map(|v| v.wrapping_neg())
    } else {
        s.parse().ok()
    }
}

struct Parser<'h> {
    temps: Vec<Option<Ty>>,
    nlabels: u32,
    helpers: &'h [&'static Helper],
    line: usize,
}

impl Parser<'_> {
    fn err(&self, msg: impl Into<String>) -> IrError {
        IrError::Parse { line: self.line, msg: msg.into() }
    }

    fn temp(&self, s: &str) -> Result<Temp, IrError> {
        let n: u32 = s
            .trim()
            .strip_prefix('t')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| self.err(format!("bad temp `{s}`")))?;
        match self.temps.get(n as usize) {
            Some(Some(_)) => Ok(Temp(n)),
            _ => Err(self.err(format!("temp t{n} used before definition"))),
        }
    }

    fn def(&mut self, s: &str) -> Result<Temp, IrError> {
        let (t, ty) = s.split_once(':').ok_or_else(|| self.err("definition needs `tN:type`"))?;
        let n: u32 = t
            .trim()
            .strip_prefix('t')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| self.err(format!("bad temp `{t}`")))?;
        let ty = match ty.trim() {
            "i32" => Ty::I32,
            "i64" => Ty::I64,
            other => return Err(self.err(format!("bad type `{other}`"))),
        };
        if self.temps.len() <= n as usize {
            self.temps.resize(n as usize + 1, None);
        }
        match self.temps[n as usize] {
            Some(old) if old != ty => return Err(self.err(format!("t{n} redefined with another type"))),
            _ => self.temps[n as usize] = Some(ty),
        }
        Ok(Temp(n))
    }

    fn label(&mut self, s: &str) -> Result<Label, IrError> {
        let n: u32 = s
            .trim()
            .strip_prefix('L')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| self.err(format!("bad label `{s}`")))?;
        self.nlabels = self.nlabels.max(n + 1);
        Ok(Label(n))
    }

    fn mop(&self, s: &str) -> Result<MemOp, IrError> {
        let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
        let rest = &s[digits.len()..];
        let size =
            digits.parse().ok().and_then(MemSize::from_bytes).ok_or_else(|| self.err(format!("bad memop `{s}`")))?;
        Ok(MemOp { size, signed: rest.contains('s'), aligned: rest.contains('a'), rmw: rest.contains('w') })
    }

    fn args<'a>(&self, s: &'a str, n: usize) -> Result<Vec<&'a str>, IrError> {
        let v: Vec<&str> = s.split(',').map(str::trim).filter(|x| !x.is_empty()).collect();
        if v.len() != n {
            return Err(self.err(format!("expected {n} operands, got {}", v.len())));
        }
        Ok(v)
    }

    fn value_op(&mut self, dst: Temp, op: &str, rest: &str) -> Result<Inst, IrError> {
        let (mn, sfx) = op.split_once('.').unwrap_or((op, ""));
        Ok(match mn {
            "const" => Inst::Const { dst, val: num(rest).ok_or_else(|| self.err("bad constant"))? },
            "ld_state" => Inst::LdState { dst, off: num(rest).ok_or_else(|| self.err("bad offset"))? as u32 },
            "setcond" => {
                let a = self.args(rest, 2)?;
                let cond = lookup(CONDS, sfx).ok_or_else(|| self.err(format!("bad condition `{sfx}`")))?;
                Inst::Setcond { cond, dst, a: self.temp(a[0])?, b: self.temp(a[1])? }
            }
            "fp" => {
                let op = lookup(FPOPS, sfx).ok_or_else(|| self.err(format!("bad fp op `{sfx}`")))?;
                let a = self.args(rest, op.arity())?;
                let t = a.iter().map(|s| self.temp(s)).collect::<Result<Vec<_>, _>>()?;
                let at = |k: usize| t.get(k).copied().unwrap_or(t[0]);
                Inst::Fp { op, dst, a: t[0], b: at(1), c: at(2) }
            }
            "select" => {
                let a = self.args(rest, 3)?;
                Inst::Select { dst, c: self.temp(a[0])?, a: self.temp(a[1])?, b: self.temp(a[2])? }
            }
            "load" => Inst::Load { dst, addr: self.temp(rest)?, mop: self.mop(sfx)? },
            "atomic" => {
                let (o, m) = sfx.split_once('.').ok_or_else(|| self.err("atomic needs .op.size"))?;
                let op = lookup(RMWOPS, o).ok_or_else(|| self.err(format!("bad atomic op `{o}`")))?;
                let mop = self.mop(m)?;
                if op == RmwOp::Cas {
                    let a = self.args(rest, 3)?;
                    let (addr, expected, src) = (self.temp(a[0])?, self.temp(a[1])?, self.temp(a[2])?);
                    Inst::Atomic { op, dst, addr, src, expected, mop }
                } else {
                    let a = self.args(rest, 2)?;
                    let (addr, src) = (self.temp(a[0])?, self.temp(a[1])?);
                    Inst::Atomic { op, dst, addr, src, expected: src, mop }
                }
            }
            "call" => {
                let (hname, args) = rest.split_once('(').ok_or_else(|| self.err("call needs (args)"))?;
                let helper = self.helper(hname.trim())?;
                let args = args.trim_end_matches(')');
                let args = args
                    .split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(|a| self.temp(a))
                    .collect::<Result<_, _>>()?;
                Inst::Call { helper, args, dst: Some(dst) }
            }
            _ => {
                if let Some(op) = lookup(BINOPS, mn) {
                    let a = self.args(rest, 2)?;
                    Inst::Bin { op, dst, a: self.temp(a[0])?, b: self.temp(a[1])? }
                } else if let Some(op) = lookup(UNOPS, mn) {
                    Inst::Un { op, dst, src: self.temp(rest)? }
                } else {
                    return Err(self.err(format!("unknown op `{mn}`")));
                }
            }
        })
    }

    fn helper(&self, n: &str) -> Result<&'static Helper, IrError> {
        self.helpers.iter().copied().find(|h| h.name == n).ok_or_else(|| self.err(format!("unknown helper `{n}`")))
    }

    fn stmt(&mut self, line: &str) -> Result<Inst, IrError> {
        if let Some(l) = line.strip_suffix(':') {
            return Ok(Inst::SetLabel(self.label(l)?));
        }
        if let Some((lhs, rhs)) = line.split_once('=') {
            let dst = self.def(lhs)?;
            let rhs = rhs.trim();
            let (op, rest) = rhs.split_once(' ').unwrap_or((rhs, ""));
            return self.value_op(dst, op, rest.trim());
        }
        let (op, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let (mn, sfx) = op.split_once('.').unwrap_or((op, ""));
        Ok(match mn {
            "insn_start" => Inst::InsnStart { pc: num(rest).ok_or_else(|| self.err("bad pc"))? },
            "mov" => {
                let a = self.args(rest, 2)?;
                Inst::Mov { dst: self.temp(a[0])?, src: self.temp(a[1])? }
            }
            "st_state" => {
                let a = self.args(rest, 2)?;
                Inst::StState { off: num(a[0]).ok_or_else(|| self.err("bad offset"))? as u32, src: self.temp(a[1])? }
            }
            "store" => {
                let a = self.args(rest, 2)?;
                Inst::Store { src: self.temp(a[0])?, addr: self.temp(a[1])?, mop: self.mop(sfx)? }
            }
            "call" => {
                let (hname, args) = rest.split_once('(').ok_or_else(|| self.err("call needs (args)"))?;
                let helper = self.helper(hname.trim())?;
                let args = args.trim_end_matches(')');
                let args = args
                    .split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(|a| self.temp(a))
                    .collect::<Result<_, _>>()?;
                Inst::Call { helper, args, dst: None }
            }
            "br" => Inst::Br(self.label(rest)?),
            "brcond" => {
                let a = self.args(rest, 3)?;
                let cond = lookup(CONDS, sfx).ok_or_else(|| self.err(format!("bad condition `{sfx}`")))?;
                Inst::BrCond { cond, a: self.temp(a[0])?, b: self.temp(a[1])?, target: self.label(a[2])? }
            }
            "exit" => {
                let (kind, arg) = rest.split_once(' ').unwrap_or((rest, ""));
                let pc = || num(arg).ok_or_else(|| self.err("bad pc"));
                Inst::Exit(match kind {
                    "goto" => Exit::Goto(pc()?),
                    "goto_nochain" => Exit::GotoNoChain(pc()?),
                    "indirect" => Exit::Indirect(self.temp(arg)?),
                    "halt" => Exit::Halt { next_pc: pc()? },
                    "raise" => {
                        let a = self.args(arg, 2)?;
                        Exit::Raise { cause: num(a[0]).ok_or_else(|| self.err("bad cause"))?, tval: self.temp(a[1])? }
                    }
                    other => return Err(self.err(format!("unknown exit `{other}`"))),
                })
            }
            _ => return Err(self.err(format!("unknown statement `{mn}`"))),
        })
    }
}

/// Parse a block from its text form. `helpers` resolves `call` names.
pub fn parse(text: &str, helpers: &[&'static Helper]) -> Result<Block, IrError> {
    let mut p = Parser { temps: Vec::new(), nlabels: 0, helpers, line: 0 };
    let mut block = Block::default();
    let mut seen_header = false;
    for (i, raw) in text.lines().enumerate() {
        p.line = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if !seen_header {
            let mut it = line.split_whitespace();
            if it.next() != Some("block") {
                return Err(p.err("expected `block PC ...`"));
            }
            block.pc = it.next().and_then(num).ok_or_else(|| p.err("bad block pc"))?;
            for kv in it {
                match kv.split_once('=') {
                    Some(("insns", v)) => block.ninsns = num(v).ok_or_else(|| p.err("bad insns"))? as u32,
                    Some(("size", v)) => block.size = num(v).ok_or_else(|| p.err("bad size"))? as u32,
                    None if kv == "dispatch" => block.dispatch = true,
                    _ => return Err(p.err(format!("bad block attribute `{kv}`"))),
                }
            }
            seen_header = true;
            continue;
        }
        let inst = p.stmt(line)?;
        block.insts.push(inst);
    }
    if !seen_header {
        return Err(IrError::Parse { line: 0, msg: "empty input".into() });
    }
    block.temps = p.temps.iter().map(|t| t.unwrap_or(Ty::I64)).collect();
    block.nlabels = p.nlabels;
    block.validate()?;
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Builder;

    #[test]
    fn text_roundtrip() {
        let mut b = Builder::new(0x8000_0000);
        b.insn_start(0x8000_0000);
        let x = b.ld_state(Ty::I64, 0x150);
        let y = b.const64(5);
        let z = b.bin(BinOp::MulHsu, x, y);
        let w = b.ext(UnOp::Trunc, Ty::I32, z);
        let v = b.ext(UnOp::Sext32, Ty::I64, w);
        let l = b.label();
        b.set_label(l);
        b.brcond(Cond::LtU, x, y, l);
        let c = b.setcond(Cond::GeS, v, x);
        let s = b.select(c, v, x);
        let m = b.load(Ty::I64, s, MemOp::new(MemSize::B4, true).aligned().rmw());
        b.store(m, s, MemOp::new(MemSize::B2, false));
        let a = b.atomic(RmwOp::MaxS, s, m, MemOp::new(MemSize::B4, true));
        let c = b.cas(s, a, m, MemOp::new(MemSize::B8, false));
        b.st_state(c, 0x160);
        b.st_state(s, 0x158);
        for op in FpOp::ALL {
            let f = b.fp(op, &[x, y, z]);
            b.st_state(f, 0x168);
        }
        b.exit(Exit::Raise { cause: 2, tval: m });
        let mut blk = b.finish();
        for dispatch in [false, true] {
            blk.dispatch = dispatch;
            let text = blk.to_string();
            assert_eq!(text.lines().next().unwrap().ends_with(" dispatch"), dispatch);
            let back = parse(&text, &[]).unwrap();
            assert_eq!(back.to_string(), text);
            assert_eq!(back, blk);
        }
    }

    #[test]
    fn parse_errors_name_the_line() {
        let e = parse("block 0x0\n    t0:i64 = frob t1\n", &[]).unwrap_err();
        assert!(matches!(e, IrError::Parse { line: 2, .. }), "{e:?}");
    }
}
