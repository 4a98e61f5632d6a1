//! A disassembler that prints what `bpftool prog dump xlated` prints.
//!
//! The verifier's log uses the same syntax (both come from the kernel's
//! `kernel/bpf/disasm.c`), so a program printed here can be compared line by line with a
//! rejection log or a dump of the loaded program (tests/insn_vectors.rs holds it to the
//! text a kernel's verifier printed for every kind of instruction). The one difference is map
//! loads: before loading there is no map id, so they show the fd the slot carries
//! (`map[fd:5]` where bpftool shows `map[id:12]`).

use super::decode::walk;
use super::model::{AtomicOp, Call, DecodeError, Endian, Imm64, Instruction, RawInsn, Size, Src, Width};
use std::fmt::{self, Write};

/// Helper names by ABI number (`__BPF_FUNC_MAPPER` of `linux/bpf.h` from Linux 6.1), so
/// that every helper prints with the name bpftool gives it, not only the few [`super::Helper`]
/// names. The list is append-only in the kernel; numbers past its end print as `unknown`.
const HELPER_NAMES: &str = "unspec map_lookup_elem map_update_elem map_delete_elem probe_read ktime_get_ns \
    trace_printk get_prandom_u32 get_smp_processor_id skb_store_bytes l3_csum_replace \
    l4_csum_replace tail_call clone_redirect get_current_pid_tgid get_current_uid_gid \
    get_current_comm get_cgroup_classid skb_vlan_push skb_vlan_pop skb_get_tunnel_key \
    skb_set_tunnel_key perf_event_read redirect get_route_realm perf_event_output \
    skb_load_bytes get_stackid csum_diff skb_get_tunnel_opt skb_set_tunnel_opt \
    skb_change_proto skb_change_type skb_under_cgroup get_hash_recalc get_current_task \
    probe_write_user current_task_under_cgroup skb_change_tail skb_pull_data csum_update \
    set_hash_invalid get_numa_node_id skb_change_head xdp_adjust_head probe_read_str \
    get_socket_cookie get_socket_uid set_hash setsockopt skb_adjust_room redirect_map \
    sk_redirect_map sock_map_update xdp_adjust_meta perf_event_read_value \
    perf_prog_read_value getsockopt override_return sock_ops_cb_flags_set msg_redirect_map \
    msg_apply_bytes msg_cork_bytes msg_pull_data bind xdp_adjust_tail skb_get_xfrm_state \
    get_stack skb_load_bytes_relative fib_lookup sock_hash_update msg_redirect_hash \
    sk_redirect_hash lwt_push_encap lwt_seg6_store_bytes lwt_seg6_adjust_srh \
    lwt_seg6_action rc_repeat rc_keydown skb_cgroup_id get_current_cgroup_id \
    get_local_storage sk_select_reuseport skb_ancestor_cgroup_id sk_lookup_tcp \
    sk_lookup_udp sk_release map_push_elem map_pop_elem map_peek_elem msg_push_data \
    msg_pop_data rc_pointer_rel spin_lock spin_unlock sk_fullsock tcp_sock skb_ecn_set_ce \
    get_listener_sock skc_lookup_tcp tcp_check_syncookie sysctl_get_name \
    sysctl_get_current_value sysctl_get_new_value sysctl_set_new_value strtol strtoul \
    sk_storage_get sk_storage_delete send_signal tcp_gen_syncookie skb_output \
    probe_read_user probe_read_kernel probe_read_user_str probe_read_kernel_str \
    tcp_send_ack send_signal_thread jiffies64 read_branch_records get_ns_current_pid_tgid \
    xdp_output get_netns_cookie get_current_ancestor_cgroup_id sk_assign ktime_get_boot_ns \
    seq_printf seq_write sk_cgroup_id sk_ancestor_cgroup_id ringbuf_output ringbuf_reserve \
    ringbuf_submit ringbuf_discard ringbuf_query csum_level skc_to_tcp6_sock \
    skc_to_tcp_sock skc_to_tcp_timewait_sock skc_to_tcp_request_sock skc_to_udp6_sock \
    get_task_stack load_hdr_opt store_hdr_opt reserve_hdr_opt inode_storage_get \
    inode_storage_delete d_path copy_from_user snprintf_btf seq_printf_btf \
    skb_cgroup_classid redirect_neigh per_cpu_ptr this_cpu_ptr redirect_peer \
    task_storage_get task_storage_delete get_current_task_btf bprm_opts_set \
    ktime_get_coarse_ns ima_inode_hash sock_from_file check_mtu for_each_map_elem snprintf \
    sys_bpf btf_find_by_name_kind sys_close timer_init timer_set_callback timer_start \
    timer_cancel get_func_ip get_attach_cookie task_pt_regs get_branch_snapshot \
    trace_vprintk skc_to_unix_sock kallsyms_lookup_name find_vma loop strncmp get_func_arg \
    get_func_ret get_func_arg_cnt get_retval set_retval xdp_get_buff_len xdp_load_bytes \
    xdp_store_bytes copy_from_user_task skb_set_tstamp ima_file_hash kptr_xchg \
    map_lookup_percpu_elem skc_to_mptcp_sock dynptr_from_mem ringbuf_reserve_dynptr \
    ringbuf_submit_dynptr ringbuf_discard_dynptr dynptr_read dynptr_write dynptr_data \
    tcp_raw_gen_syncookie_ipv4 tcp_raw_gen_syncookie_ipv6 tcp_raw_check_syncookie_ipv4 \
    tcp_raw_check_syncookie_ipv6 ktime_get_tai_ns user_ringbuf_drain";

fn helper_name(id: i32) -> Option<&'static str> {
    let id = usize::try_from(id).ok()?;
    HELPER_NAMES.split_whitespace().nth(id)
}

fn size_type(size: Size) -> &'static str {
    match size {
        Size::B => "u8",
        Size::H => "u16",
        Size::W => "u32",
        Size::DW => "u64",
    }
}

fn reg_prefix(width: Width) -> char {
    match width {
        Width::W32 => 'w',
        Width::W64 => 'r',
    }
}

/// The text of one instruction without its index, e.g. `(07) r1 += -8`.
pub fn disasm_insn(insn: &Instruction) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = write_insn(&mut s, insn);
    s
}

/// The text without the opcode prefix (`r1 += -8`), for messages that quote an instruction.
pub(crate) fn insn_body(insn: &Instruction) -> String {
    let mut s = String::new();
    let _ = write_body(&mut s, insn);
    s
}

fn write_insn(f: &mut impl Write, insn: &Instruction) -> fmt::Result {
    let code = insn.encode().first().map_or(0, |r| r.code);
    write!(f, "({code:02x}) ")?;
    write_body(f, insn)
}

fn write_body(f: &mut impl Write, insn: &Instruction) -> fmt::Result {
    match *insn {
        Instruction::Alu { width, op, dst, src } => {
            let p = reg_prefix(width);
            let (d, sym) = (dst.num(), op.symbol());
            match src {
                Src::Reg(s) => write!(f, "{p}{d} {sym} {p}{}", s.num()),
                Src::Imm(imm) => write!(f, "{p}{d} {sym} {imm}"),
            }
        }
        Instruction::Neg { width, dst } => {
            let p = reg_prefix(width);
            let d = dst.num();
            write!(f, "{p}{d} = -{p}{d}")
        }
        Instruction::Endian { kind, bits, dst } => {
            let name = match kind {
                Endian::ToLe => "le",
                Endian::ToBe => "be",
                Endian::Swap => "bswap",
            };
            write!(f, "{dst} = {name}{bits} {dst}")
        }
        Instruction::LoadImm64 { dst, value } => match value {
            Imm64::Const(v) => write!(f, "{dst} = {:#x}", v as u64),
            Imm64::MapFd(fd) => write!(f, "{dst} = map[fd:{fd}]"),
            Imm64::MapValue { fd, offset } => write!(f, "{dst} = map[fd:{fd}][0]+{offset}"),
        },
        Instruction::Load { size, dst, src, off } => write!(f, "{dst} = *({} *)({src} {off:+})", size_type(size)),
        Instruction::StoreImm { size, dst, off, imm } => write!(f, "*({} *)({dst} {off:+}) = {imm}", size_type(size)),
        Instruction::Store { size, dst, off, src } => write!(f, "*({} *)({dst} {off:+}) = {src}", size_type(size)),
        Instruction::Atomic { size, op, dst, src, off } => {
            let ty = size_type(size);
            let bits = if size == Size::DW { "64" } else { "" };
            let (name, fetch) = match op {
                AtomicOp::Add { fetch } => ("add", fetch),
                AtomicOp::Or { fetch } => ("or", fetch),
                AtomicOp::And { fetch } => ("and", fetch),
                AtomicOp::Xor { fetch } => ("xor", fetch),
                AtomicOp::Xchg => return write!(f, "{src} = atomic{bits}_xchg(({ty} *)({dst} {off:+}), {src})"),
                AtomicOp::Cmpxchg => return write!(f, "r0 = atomic{bits}_cmpxchg(({ty} *)({dst} {off:+}), r0, {src})"),
            };
            if fetch {
                write!(f, "{src} = atomic{bits}_fetch_{name}(({ty} *)({dst} {off:+}), {src})")
            } else {
                let sym = match op {
                    AtomicOp::Add { .. } => "+=",
                    AtomicOp::Or { .. } => "|=",
                    AtomicOp::And { .. } => "&=",
                    _ => "^=",
                };
                write!(f, "lock *({ty} *)({dst} {off:+}) {sym} {src}")
            }
        }
        Instruction::Ja { off } => write!(f, "goto pc{off:+}"),
        Instruction::Jump { width, cond, dst, src, off } => {
            let p = reg_prefix(width);
            let (d, sym) = (dst.num(), cond.symbol());
            match src {
                Src::Reg(s) => write!(f, "if {p}{d} {sym} {p}{} goto pc{off:+}", s.num()),
                // The kernel prints the immediate as unsigned hex whatever the condition.
                Src::Imm(imm) => write!(f, "if {p}{d} {sym} {:#x} goto pc{off:+}", imm as u32),
            }
        }
        Instruction::Call(call) => match call {
            Call::Helper(h) => {
                let id = h.id() as i32;
                match helper_name(id) {
                    Some(name) => write!(f, "call bpf_{name}#{id}"),
                    None => write!(f, "call unknown#{id}"),
                }
            }
            Call::Local(rel) => write!(f, "call pc{rel:+}"),
            Call::Kfunc(id) => write!(f, "call kernel-function#{id}"),
        },
        Instruction::Exit => f.write_str("exit"),
    }
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_insn(f, self)
    }
}

/// One step of a walk over slots: an instruction, or a slot that does not decode.
pub(super) struct Step {
    pub(super) index: usize,
    pub(super) insn: Result<Instruction, DecodeError>,
    code: u8,
}

/// The slots as [`walk`] steps them, which is how bpftool numbers them.
pub(super) fn steps(slots: &[RawInsn]) -> impl Iterator<Item = Step> + '_ {
    walk(slots).map(|(index, insn)| Step { index, insn, code: slots[index].code })
}

pub(super) fn write_step(out: &mut String, step: &Step) {
    let _ = match &step.insn {
        Ok(insn) => write_insn(out, insn),
        Err(e) => write!(out, "({:02x}) <invalid: {}>", step.code, e.reason),
    };
}

pub(super) fn render(slots: &[RawInsn], note: impl Fn(usize) -> Option<String>) -> String {
    let mut out = String::new();
    for step in steps(slots) {
        // bpftool's "% 4d: ": a sign space, then the index right-aligned in three.
        let _ = write!(out, " {:>3}: ", step.index);
        write_step(&mut out, &step);
        if let Some(n) = note(step.index) {
            out.push_str(&n);
        }
        out.push('\n');
    }
    out
}

/// A whole program, one numbered line per instruction, as `bpftool prog dump xlated` prints
/// it. Slots that do not decode print as `(xx) <invalid: reason>`; this never fails.
pub fn disasm(slots: &[RawInsn]) -> String {
    render(slots, |_| None)
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn text(insn: Instruction) -> String {
        disasm_insn(&insn)
    }

    fn alu(width: Width, op: AluOp, dst: Reg, src: impl Into<Src>) -> Instruction {
        Instruction::Alu { width, op, dst, src: src.into() }
    }

    fn jump(width: Width, cond: Cond, dst: Reg, src: impl Into<Src>, off: i16) -> Instruction {
        Instruction::Jump { width, cond, dst, src: src.into(), off }
    }

    fn atomic(size: Size, op: AtomicOp, dst: Reg, off: i16, src: Reg) -> Instruction {
        Instruction::Atomic { size, op, dst, src, off }
    }

    #[test]
    fn alu_forms() {
        use AluOp::*;
        use Width::*;
        assert_eq!(text(alu(W64, Mov, R0, 0)), "(b7) r0 = 0");
        assert_eq!(text(alu(W64, Mov, R1, R10)), "(bf) r1 = r10");
        assert_eq!(text(alu(W64, Add, R1, -8)), "(07) r1 += -8");
        assert_eq!(text(alu(W32, Mov, R0, 0)), "(b4) w0 = 0");
        assert_eq!(text(alu(W32, Mov, R1, R2)), "(bc) w1 = w2");
        assert_eq!(text(alu(W64, Arsh, R3, 7)), "(c7) r3 s>>= 7");
        assert_eq!(text(alu(W32, Lsh, R3, R4)), "(6c) w3 <<= w4");
        assert_eq!(text(alu(W64, Mod, R5, i32::MIN)), "(97) r5 %= -2147483648");
        assert_eq!(text(Instruction::Neg { width: W64, dst: R2 }), "(87) r2 = -r2");
        assert_eq!(text(Instruction::Neg { width: W32, dst: R2 }), "(84) w2 = -w2");
    }

    #[test]
    fn endian_forms() {
        let e = |kind, bits| Instruction::Endian { kind, bits, dst: R1 };
        assert_eq!(text(e(Endian::ToBe, 16)), "(dc) r1 = be16 r1");
        assert_eq!(text(e(Endian::ToLe, 16)), "(d4) r1 = le16 r1");
        assert_eq!(text(e(Endian::ToBe, 64)), "(dc) r1 = be64 r1");
        assert_eq!(text(e(Endian::Swap, 32)), "(d7) r1 = bswap32 r1");
    }

    #[test]
    fn memory_forms() {
        let load = Instruction::Load { size: Size::DW, dst: R1, src: R1, off: 8 };
        assert_eq!(text(load), "(79) r1 = *(u64 *)(r1 +8)");
        let store = Instruction::Store { size: Size::DW, dst: R10, off: -8, src: R1 };
        assert_eq!(text(store), "(7b) *(u64 *)(r10 -8) = r1");
        let st = Instruction::StoreImm { size: Size::DW, dst: R10, off: -8, imm: 0 };
        assert_eq!(text(st), "(7a) *(u64 *)(r10 -8) = 0");
        let byte = Instruction::Load { size: Size::B, dst: R2, src: R6, off: 0 };
        assert_eq!(text(byte), "(71) r2 = *(u8 *)(r6 +0)");
        let half = Instruction::StoreImm { size: Size::H, dst: R1, off: 2, imm: -1 };
        assert_eq!(text(half), "(6a) *(u16 *)(r1 +2) = -1");
        let word = Instruction::Store { size: Size::W, dst: R1, off: -4, src: R2 };
        assert_eq!(text(word), "(63) *(u32 *)(r1 -4) = r2");
    }

    #[test]
    fn atomic_forms() {
        use AtomicOp::*;
        let add = Add { fetch: false };
        assert_eq!(text(atomic(Size::DW, add, R0, 0, R1)), "(db) lock *(u64 *)(r0 +0) += r1");
        assert_eq!(text(atomic(Size::W, Or { fetch: false }, R0, 4, R1)), "(c3) lock *(u32 *)(r0 +4) |= r1");
        assert_eq!(text(atomic(Size::DW, And { fetch: false }, R1, 8, R2)), "(db) lock *(u64 *)(r1 +8) &= r2");
        assert_eq!(text(atomic(Size::DW, Xor { fetch: false }, R1, 8, R2)), "(db) lock *(u64 *)(r1 +8) ^= r2");
        assert_eq!(
            text(atomic(Size::DW, Add { fetch: true }, R1, 8, R2)),
            "(db) r2 = atomic64_fetch_add((u64 *)(r1 +8), r2)"
        );
        assert_eq!(
            text(atomic(Size::W, Xor { fetch: true }, R1, -8, R2)),
            "(c3) r2 = atomic_fetch_xor((u32 *)(r1 -8), r2)"
        );
        assert_eq!(text(atomic(Size::DW, Xchg, R1, 8, R2)), "(db) r2 = atomic64_xchg((u64 *)(r1 +8), r2)");
        assert_eq!(text(atomic(Size::W, Cmpxchg, R1, 8, R2)), "(c3) r0 = atomic_cmpxchg((u32 *)(r1 +8), r0, r2)");
    }

    #[test]
    fn jumps_calls_exit() {
        use Cond::*;
        use Width::*;
        assert_eq!(text(jump(W64, Eq, R0, 0, 3)), "(15) if r0 == 0x0 goto pc+3");
        assert_eq!(text(jump(W32, Eq, R0, 0, 3)), "(16) if w0 == 0x0 goto pc+3");
        assert_eq!(text(jump(W64, Sgt, R1, -1, -2)), "(65) if r1 s> 0xffffffff goto pc-2");
        assert_eq!(text(jump(W64, Ne, R1, R2, 0)), "(5d) if r1 != r2 goto pc+0");
        assert_eq!(text(jump(W32, Set, R1, R2, 1)), "(4e) if w1 & w2 goto pc+1");
        assert_eq!(text(Instruction::Ja { off: -4 }), "(05) goto pc-4");
        assert_eq!(text(Instruction::Exit), "(95) exit");
        let call = |c| text(Instruction::Call(c));
        assert_eq!(call(Call::Helper(Helper::MapLookupElem)), "(85) call bpf_map_lookup_elem#1");
        // Named by the kernel's table though `Helper` has no variant for it.
        assert_eq!(call(Call::Helper(Helper::Other(7))), "(85) call bpf_get_prandom_u32#7");
        assert_eq!(call(Call::Helper(Helper::Other(100_000))), "(85) call unknown#100000");
        assert_eq!(call(Call::Local(5)), "(85) call pc+5");
        assert_eq!(call(Call::Kfunc(1234)), "(85) call kernel-function#1234");
    }

    #[test]
    fn imm64_forms() {
        let ld = |value| text(Instruction::LoadImm64 { dst: R1, value });
        assert_eq!(ld(Imm64::Const(0x1234)), "(18) r1 = 0x1234");
        assert_eq!(ld(Imm64::Const(-1)), "(18) r1 = 0xffffffffffffffff");
        assert_eq!(ld(Imm64::MapFd(5)), "(18) r1 = map[fd:5]");
        assert_eq!(ld(Imm64::MapValue { fd: 5, offset: 16 }), "(18) r1 = map[fd:5][0]+16");
    }

    #[test]
    fn helper_table_agrees_with_helper_names() {
        for id in 0..300 {
            if let Some(name) = Helper::from_id(id).name() {
                assert_eq!(helper_name(id as i32), Some(name), "helper {id}");
            }
        }
        assert_eq!(helper_name(209), Some("user_ringbuf_drain"));
        assert_eq!(helper_name(210), None);
        assert_eq!(helper_name(-1), None);
    }

    #[test]
    fn display_is_the_disassembly() {
        let i = Instruction::Exit;
        assert_eq!(i.to_string(), disasm_insn(&i));
    }

    #[test]
    fn whole_program_numbers_like_bpftool() {
        let mut a = Asm::new();
        let out = a.label("out");
        a.mov64(R0, 0);
        a.ld_imm64(R2, 0x1234);
        a.jeq(R1, 0, out);
        a.mov64(R0, 1);
        a.bind(out);
        a.exit();
        let p = a.finish().unwrap();
        assert_eq!(
            disasm(p.insns()),
            "   0: (b7) r0 = 0\n\
             \x20  1: (18) r2 = 0x1234\n\
             \x20  3: (15) if r1 == 0x0 goto pc+1\n\
             \x20  4: (b7) r0 = 1\n\
             \x20  5: (95) exit\n"
        );
    }

    #[test]
    fn wide_indices_keep_bpftool_padding() {
        let slots = vec![RawInsn::new(0x95, 0, 0, 0, 0); 1001];
        let text = disasm(&slots);
        assert!(text.contains("\n 999: (95) exit\n"), "{text}");
        assert!(text.ends_with("\n 1000: (95) exit\n"), "{text}");
    }

    #[test]
    fn invalid_slots_are_shown_not_fatal() {
        let slots = [
            RawInsn::new(0xff, 0, 0, 0, 0),
            RawInsn::new(0xb7, 11, 0, 0, 0),
            RawInsn::new(0x95, 0, 0, 0, 0),
            RawInsn::new(0x18, 1, 0, 0, 7),
        ];
        assert_eq!(
            disasm(&slots),
            "   0: (ff) <invalid: unknown ALU opcode 0xff>\n\
             \x20  1: (b7) <invalid: dst register r11 does not exist>\n\
             \x20  2: (95) exit\n\
             \x20  3: (18) <invalid: 64-bit immediate load is missing its second slot>\n"
        );
    }

    fn map_program() -> Program {
        let mut a = Asm::new();
        a.st_dw(R10, -8, 0);
        a.mov64(R2, R10);
        a.add64(R2, -8);
        a.ld_map_fd(R1, MapRef("counters"));
        a.call(Helper::MapLookupElem);
        a.ld_map_value(R3, MapRef("config"), 16);
        a.mov64(R0, 0);
        a.exit();
        a.finish().unwrap()
    }

    #[test]
    fn program_names_its_maps() {
        assert_eq!(
            map_program().disasm(),
            "   0: (7a) *(u64 *)(r10 -8) = 0\n\
             \x20  1: (bf) r2 = r10\n\
             \x20  2: (07) r2 += -8\n\
             \x20  3: (18) r1 = map[fd:0] // map counters\n\
             \x20  5: (85) call bpf_map_lookup_elem#1\n\
             \x20  6: (18) r3 = map[fd:0][0]+16 // map config\n\
             \x20  8: (b7) r0 = 0\n\
             \x20  9: (95) exit\n"
        );
        assert_eq!(disasm_program(&map_program()), map_program().disasm());
    }

    #[test]
    fn one_instruction_by_slot() {
        let p = map_program();
        assert_eq!(disasm_at(&p, 3).as_deref(), Some("(18) r1 = map[fd:0] // map counters"));
        // The second half of a 64-bit load belongs to the load.
        assert_eq!(disasm_at(&p, 4), disasm_at(&p, 3));
        assert_eq!(disasm_at(&p, 5).as_deref(), Some("(85) call bpf_map_lookup_elem#1"));
        assert_eq!(disasm_at(&p, 9).as_deref(), Some("(95) exit"));
        assert_eq!(disasm_at(&p, 10), None);
    }
}
