//! A seccomp policy as a table of rules, and the one way it becomes a filter.

use super::asm::{Asm, AsmError};
use super::cbpf::{Action, Cond, Field, SockFilter, AUDIT_ARCH, X32_SYSCALL_BIT};

/// A condition on one argument of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgCheck {
    /// An `int` argument (the kernel reads its low 32 bits only, and so does the check) is
    /// one of `values`.
    OneOf { arg: u8, values: Vec<u32> },
    /// A `long` argument has none of the bits of `mask` set.
    Clear { arg: u8, mask: u64 },
}

/// What a call gets: `action` when its number is `nr` and `check` (if any) holds; the
/// policy's default otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub nr: libc::c_long,
    pub check: Option<ArgCheck>,
    pub action: Action,
}

impl Rule {
    pub fn allow(name: &'static str, nr: libc::c_long) -> Rule {
        Rule { name, nr, check: None, action: Action::Allow }
    }
}

/// Rules and the default for every call they do not allow, another architecture's calls and
/// x32 calls included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub default: Action,
}

impl Policy {
    /// The filter: the architecture checked first, x32 numbers refused, then one test per
    /// rule, each rule's argument checks returning before the next rule's test (so the
    /// accumulator holds the number again at each test and no jump is long).
    pub fn build(&self) -> Result<Vec<SockFilter>, AsmError> {
        let mut a = Asm::new();
        // Each refusal is a return right after its test: a jump to one shared return at the
        // end would be longer than a conditional jump reaches.
        let (arch_ok, other_arch) = (a.new_label(), a.new_label());
        a.load(Field::Arch).jump(Cond::Eq, AUDIT_ARCH, arch_ok, other_arch);
        a.label(other_arch).ret(self.default);
        a.label(arch_ok).load(Field::Nr);
        if cfg!(target_arch = "x86_64") {
            let (native, x32) = (a.new_label(), a.new_label());
            a.jump(Cond::Set, X32_SYSCALL_BIT, x32, native).label(x32).ret(self.default).label(native);
        }
        for rule in &self.rules {
            let (body, next) = (a.new_label(), a.new_label());
            a.jump(Cond::Eq, rule.nr as u32, body, next).label(body);
            match &rule.check {
                None => {
                    a.ret(rule.action);
                }
                Some(ArgCheck::OneOf { arg, values }) => {
                    a.load(Field::ArgLo(*arg));
                    for v in values {
                        let (hit, miss) = (a.new_label(), a.new_label());
                        a.jump(Cond::Eq, *v, hit, miss).label(hit).ret(rule.action).label(miss);
                    }
                    a.ret(self.default);
                }
                Some(ArgCheck::Clear { arg, mask }) => {
                    let (fail, hi_ok, lo_ok) = (a.new_label(), a.new_label(), a.new_label());
                    a.load(Field::ArgHi(*arg)).jump(Cond::Set, (mask >> 32) as u32, fail, hi_ok);
                    a.label(hi_ok).load(Field::ArgLo(*arg)).jump(Cond::Set, *mask as u32, fail, lo_ok);
                    a.label(lo_ok).ret(rule.action);
                    a.label(fail).ret(self.default);
                }
            }
            a.label(next);
        }
        a.ret(self.default);
        a.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{disassemble, run, SeccompData};
    use super::*;

    fn policy() -> Policy {
        Policy {
            rules: vec![
                Rule::allow("getpid", libc::SYS_getpid),
                Rule {
                    name: "bpf",
                    nr: libc::SYS_bpf,
                    check: Some(ArgCheck::OneOf { arg: 0, values: vec![1, 4] }),
                    action: Action::Allow,
                },
                Rule {
                    name: "mmap",
                    nr: libc::SYS_mmap,
                    check: Some(ArgCheck::Clear { arg: 2, mask: libc::PROT_EXEC as u64 | 1 << 40 }),
                    action: Action::Allow,
                },
                Rule { name: "clone3", nr: libc::SYS_clone3, check: None, action: Action::Errno(38) },
            ],
            default: Action::Errno(1),
        }
    }

    #[test]
    fn the_interpreter_answers_what_the_rules_say() {
        let p = policy().build().unwrap();
        let ask = |nr, args: &[u64]| run(&p, &SeccompData::call(nr, args)).unwrap();
        assert_eq!(ask(libc::SYS_getpid, &[]), Action::Allow);
        assert_eq!(ask(libc::SYS_getppid, &[]), Action::Errno(1));
        assert_eq!(ask(libc::SYS_bpf, &[1]), Action::Allow);
        assert_eq!(ask(libc::SYS_bpf, &[4]), Action::Allow);
        assert_eq!(ask(libc::SYS_bpf, &[5]), Action::Errno(1));
        // The kernel reads an int command's low half; so does the filter.
        assert_eq!(ask(libc::SYS_bpf, &[1 << 32 | 5]), Action::Errno(1));
        assert_eq!(ask(libc::SYS_bpf, &[1 << 32 | 1]), Action::Allow);
        assert_eq!(ask(libc::SYS_mmap, &[0, 4096, libc::PROT_READ as u64]), Action::Allow);
        assert_eq!(ask(libc::SYS_mmap, &[0, 4096, (libc::PROT_READ | libc::PROT_EXEC) as u64]), Action::Errno(1));
        assert_eq!(ask(libc::SYS_mmap, &[0, 4096, 1 << 40]), Action::Errno(1));
        assert_eq!(ask(libc::SYS_clone3, &[]), Action::Errno(38));
        let mut other_arch = SeccompData::call(libc::SYS_getpid, &[]);
        other_arch.arch = 0x4000_0003; // AUDIT_ARCH_I386
        assert_eq!(run(&p, &other_arch), Some(Action::Errno(1)));
        if cfg!(target_arch = "x86_64") {
            let x32 = SeccompData::call(libc::SYS_getpid | X32_SYSCALL_BIT as libc::c_long, &[]);
            assert_eq!(run(&p, &x32), Some(Action::Errno(1)), "x32 calls are refused");
        }
    }

    #[test]
    fn the_filter_reads_as_written() {
        let text = disassemble(&policy().build().unwrap());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "0000: ld [4] ; arch");
        assert_eq!(lines[1], format!("0001: jeq #{AUDIT_ARCH:#x}, 0003, 0002"));
        assert_eq!(lines[2], "0002: ret ERRNO(1)");
        assert_eq!(lines[3], "0003: ld [0] ; nr");
        assert!(text.contains(&format!("jeq #{:#x}, ", libc::SYS_bpf)), "{text}");
        assert!(text.contains("ld [16] ; args[0] low"), "{text}");
        assert!(text.contains("ld [36] ; args[2] high"), "{text}");
        assert!(lines.last().unwrap().ends_with("ret ERRNO(1)"), "{text}");
    }
}
