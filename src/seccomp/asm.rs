//! The assembler: instructions whose jumps name labels, resolved to classic BPF's forward
//! offsets at [`Asm::finish`].

use super::cbpf::{Action, Cond, Field, Insn, SockFilter};

/// A jump target, placed once with [`Asm::label`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// A program that cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsmError {
    /// A label jumped to but never placed.
    Unplaced(usize),
    /// A label placed twice.
    PlacedTwice(usize),
    /// A jump to an earlier instruction: classic BPF jumps forward only.
    Backward { at: usize },
    /// A conditional jump further than 255 instructions.
    TooFar { at: usize, distance: usize },
    /// More than `BPF_MAXINSNS` (4096) instructions.
    TooLong(usize),
    /// The last instruction is not a return (the kernel refuses such filters).
    NoFinalReturn,
}

impl std::fmt::Display for AsmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AsmError::Unplaced(l) => write!(f, "label {l} is jumped to but never placed"),
            AsmError::PlacedTwice(l) => write!(f, "label {l} is placed twice"),
            AsmError::Backward { at } => write!(f, "instruction {at} jumps backward"),
            AsmError::TooFar { at, distance } => {
                write!(f, "instruction {at} jumps {distance} instructions ahead; a conditional jump reaches 255")
            }
            AsmError::TooLong(n) => write!(f, "{n} instructions; the kernel takes at most 4096"),
            AsmError::NoFinalReturn => f.write_str("the filter does not end with a return"),
        }
    }
}

impl std::error::Error for AsmError {}

#[derive(Clone, Copy, Debug)]
enum Op {
    Fixed(Insn),
    Jump { cond: Cond, k: u32, jt: Label, jf: Label },
    Ja(Label),
}

/// Builds a filter: emit instructions, jump to labels, place the labels, `finish`.
#[derive(Debug, Default)]
pub struct Asm {
    ops: Vec<Op>,
    labels: Vec<Option<usize>>,
    error: Option<AsmError>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    /// A new label, to be placed later.
    pub fn new_label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `l` before the next instruction.
    pub fn label(&mut self, l: Label) -> &mut Self {
        if self.labels[l.0].is_some() {
            self.error.get_or_insert(AsmError::PlacedTwice(l.0));
        }
        self.labels[l.0] = Some(self.ops.len());
        self
    }

    /// `ld [field]`.
    pub fn load(&mut self, f: Field) -> &mut Self {
        self.ops.push(Op::Fixed(Insn::Load(f)));
        self
    }

    /// `and #k`.
    pub fn and(&mut self, k: u32) -> &mut Self {
        self.ops.push(Op::Fixed(Insn::And(k)));
        self
    }

    /// `ret #action`.
    pub fn ret(&mut self, a: Action) -> &mut Self {
        self.ops.push(Op::Fixed(Insn::Ret(a)));
        self
    }

    /// To `jt` if `A cond k`, else to `jf`.
    pub fn jump(&mut self, cond: Cond, k: u32, jt: Label, jf: Label) -> &mut Self {
        self.ops.push(Op::Jump { cond, k, jt, jf });
        self
    }

    /// To `l` unconditionally.
    pub fn ja(&mut self, l: Label) -> &mut Self {
        self.ops.push(Op::Ja(l));
        self
    }

    /// The encoded filter, every label resolved.
    pub fn finish(&self) -> Result<Vec<SockFilter>, AsmError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.ops.len() > 4096 {
            return Err(AsmError::TooLong(self.ops.len()));
        }
        if !matches!(self.ops.last(), Some(Op::Fixed(Insn::Ret(_)))) {
            return Err(AsmError::NoFinalReturn);
        }
        let offset = |at: usize, l: Label| -> Result<usize, AsmError> {
            let to = self.labels[l.0].ok_or(AsmError::Unplaced(l.0))?;
            if to <= at {
                return Err(AsmError::Backward { at });
            }
            Ok(to - at - 1)
        };
        let short = |at: usize, l: Label| -> Result<u8, AsmError> {
            let d = offset(at, l)?;
            u8::try_from(d).map_err(|_| AsmError::TooFar { at, distance: d })
        };
        self.ops
            .iter()
            .enumerate()
            .map(|(at, op)| {
                Ok(match *op {
                    Op::Fixed(i) => i,
                    Op::Jump { cond, k, jt, jf } => Insn::Jump { cond, k, jt: short(at, jt)?, jf: short(at, jf)? },
                    Op::Ja(l) => Insn::Ja(offset(at, l)? as u32),
                }
                .encode())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_to_forward_offsets() {
        let mut a = Asm::new();
        let (yes, no) = (a.new_label(), a.new_label());
        a.load(Field::Nr).jump(Cond::Eq, 39, yes, no);
        a.label(no).ret(Action::Errno(1));
        a.label(yes).ret(Action::Allow);
        let p = a.finish().unwrap();
        assert_eq!(p[1], SockFilter { code: 0x15, jt: 1, jf: 0, k: 39 });
    }

    #[test]
    fn mistakes_are_errors() {
        let mut a = Asm::new();
        let l = a.new_label();
        a.ja(l).ret(Action::Allow);
        assert_eq!(a.finish(), Err(AsmError::Unplaced(0)));
        let mut a = Asm::new();
        let l = a.new_label();
        a.label(l).ja(l).ret(Action::Allow);
        assert_eq!(a.finish(), Err(AsmError::Backward { at: 0 }));
        let mut a = Asm::new();
        let (far, near) = (a.new_label(), a.new_label());
        a.jump(Cond::Eq, 0, far, near).label(near);
        for _ in 0..300 {
            a.ret(Action::Allow);
        }
        a.label(far).ret(Action::Allow);
        assert_eq!(a.finish(), Err(AsmError::TooFar { at: 0, distance: 300 }));
        let mut a = Asm::new();
        a.load(Field::Nr);
        assert_eq!(a.finish(), Err(AsmError::NoFinalReturn));
    }
}
