//! The RISC-V register view for gdb ([`kite_core::debug::CpuRegs`] on [`RiscvCpu`]) and its
//! target description.
//!
//! Numbering is gdb's fixed RISC-V numbering (also QEMU's): x0-x31 = 0-31, pc = 32,
//! f0-f31 = 33-64, CSR n = 65 + n (so fflags/frm/fcsr are 66-68), and the virtual
//! `priv` register = 4161. The description lists the features gdb's RISC-V support
//! knows (cpu, fpu, csr, virtual) with an explicit `regnum` on every register, so `p $satp`
//! and friends work.
//!
//! CSRs are read and written through the CSR table's own functions (WARL masks apply)
//! without the privilege checks a guest access has. Writes that can change TB-key state
//! (privilege, mstatus, satp) recompute the TB flags and ask for a TLB flush.

use kite_core::debug::CpuRegs;
use kite_ir::state::flush;

use crate::cpu::{PRV_M, PRV_S, PRV_U};
use crate::csr;
use crate::RiscvCpu;

/// gdb's register number of CSR 0.
const CSR_BASE: usize = 65;
/// gdb's number of the virtual `priv` register.
const PRIV: usize = 4161;

/// The CSRs the description lists (gdb numbers them 65 + the CSR number).
pub const GDB_CSRS: &[u16] = &[
    0x001, 0x002, 0x003, 0x100, 0x104, 0x105, 0x106, 0x140, 0x141, 0x142, 0x143, 0x144, 0x180, 0x300, 0x301, 0x302,
    0x303, 0x304, 0x305, 0x306, 0x340, 0x341, 0x342, 0x343, 0x344, 0xf14,
];

const G_REGS: [usize; 33] = {
    let mut r = [0usize; 33];
    let mut i = 0;
    while i < 33 {
        r[i] = i;
        i += 1;
    }
    r
};

impl CpuRegs for RiscvCpu {
    const TARGET_XML: &'static str = r#"<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
<architecture>riscv:rv64</architecture>
<feature name="org.gnu.gdb.riscv.cpu">
  <reg name="zero" bitsize="64" type="int" regnum="0"/>
  <reg name="ra" bitsize="64" type="code_ptr" regnum="1"/>
  <reg name="sp" bitsize="64" type="data_ptr" regnum="2"/>
  <reg name="gp" bitsize="64" type="data_ptr" regnum="3"/>
  <reg name="tp" bitsize="64" type="data_ptr" regnum="4"/>
  <reg name="t0" bitsize="64" type="int" regnum="5"/>
  <reg name="t1" bitsize="64" type="int" regnum="6"/>
  <reg name="t2" bitsize="64" type="int" regnum="7"/>
  <reg name="fp" bitsize="64" type="data_ptr" regnum="8"/>
  <reg name="s1" bitsize="64" type="int" regnum="9"/>
  <reg name="a0" bitsize="64" type="int" regnum="10"/>
  <reg name="a1" bitsize="64" type="int" regnum="11"/>
  <reg name="a2" bitsize="64" type="int" regnum="12"/>
  <reg name="a3" bitsize="64" type="int" regnum="13"/>
  <reg name="a4" bitsize="64" type="int" regnum="14"/>
  <reg name="a5" bitsize="64" type="int" regnum="15"/>
  <reg name="a6" bitsize="64" type="int" regnum="16"/>
  <reg name="a7" bitsize="64" type="int" regnum="17"/>
  <reg name="s2" bitsize="64" type="int" regnum="18"/>
  <reg name="s3" bitsize="64" type="int" regnum="19"/>
  <reg name="s4" bitsize="64" type="int" regnum="20"/>
  <reg name="s5" bitsize="64" type="int" regnum="21"/>
  <reg name="s6" bitsize="64" type="int" regnum="22"/>
  <reg name="s7" bitsize="64" type="int" regnum="23"/>
  <reg name="s8" bitsize="64" type="int" regnum="24"/>
  <reg name="s9" bitsize="64" type="int" regnum="25"/>
  <reg name="s10" bitsize="64" type="int" regnum="26"/>
  <reg name="s11" bitsize="64" type="int" regnum="27"/>
  <reg name="t3" bitsize="64" type="int" regnum="28"/>
  <reg name="t4" bitsize="64" type="int" regnum="29"/>
  <reg name="t5" bitsize="64" type="int" regnum="30"/>
  <reg name="t6" bitsize="64" type="int" regnum="31"/>
  <reg name="pc" bitsize="64" type="code_ptr" regnum="32"/>
</feature>
<feature name="org.gnu.gdb.riscv.fpu">
  <union id="riscv_double"><field name="float" type="ieee_single"/><field name="double" type="ieee_double"/></union>
  <reg name="ft0" bitsize="64" type="riscv_double" regnum="33"/>
  <reg name="ft1" bitsize="64" type="riscv_double" regnum="34"/>
  <reg name="ft2" bitsize="64" type="riscv_double" regnum="35"/>
  <reg name="ft3" bitsize="64" type="riscv_double" regnum="36"/>
  <reg name="ft4" bitsize="64" type="riscv_double" regnum="37"/>
  <reg name="ft5" bitsize="64" type="riscv_double" regnum="38"/>
  <reg name="ft6" bitsize="64" type="riscv_double" regnum="39"/>
  <reg name="ft7" bitsize="64" type="riscv_double" regnum="40"/>
  <reg name="fs0" bitsize="64" type="riscv_double" regnum="41"/>
  <reg name="fs1" bitsize="64" type="riscv_double" regnum="42"/>
  <reg name="fa0" bitsize="64" type="riscv_double" regnum="43"/>
  <reg name="fa1" bitsize="64" type="riscv_double" regnum="44"/>
  <reg name="fa2" bitsize="64" type="riscv_double" regnum="45"/>
  <reg name="fa3" bitsize="64" type="riscv_double" regnum="46"/>
  <reg name="fa4" bitsize="64" type="riscv_double" regnum="47"/>
  <reg name="fa5" bitsize="64" type="riscv_double" regnum="48"/>
  <reg name="fa6" bitsize="64" type="riscv_double" regnum="49"/>
  <reg name="fa7" bitsize="64" type="riscv_double" regnum="50"/>
  <reg name="fs2" bitsize="64" type="riscv_double" regnum="51"/>
  <reg name="fs3" bitsize="64" type="riscv_double" regnum="52"/>
  <reg name="fs4" bitsize="64" type="riscv_double" regnum="53"/>
  <reg name="fs5" bitsize="64" type="riscv_double" regnum="54"/>
  <reg name="fs6" bitsize="64" type="riscv_double" regnum="55"/>
  <reg name="fs7" bitsize="64" type="riscv_double" regnum="56"/>
  <reg name="fs8" bitsize="64" type="riscv_double" regnum="57"/>
  <reg name="fs9" bitsize="64" type="riscv_double" regnum="58"/>
  <reg name="fs10" bitsize="64" type="riscv_double" regnum="59"/>
  <reg name="fs11" bitsize="64" type="riscv_double" regnum="60"/>
  <reg name="ft8" bitsize="64" type="riscv_double" regnum="61"/>
  <reg name="ft9" bitsize="64" type="riscv_double" regnum="62"/>
  <reg name="ft10" bitsize="64" type="riscv_double" regnum="63"/>
  <reg name="ft11" bitsize="64" type="riscv_double" regnum="64"/>
  <reg name="fflags" bitsize="32" type="int" regnum="66"/>
  <reg name="frm" bitsize="32" type="int" regnum="67"/>
  <reg name="fcsr" bitsize="32" type="int" regnum="68"/>
</feature>
<feature name="org.gnu.gdb.riscv.csr">
  <reg name="sstatus" bitsize="64" type="int" regnum="321"/>
  <reg name="sie" bitsize="64" type="int" regnum="325"/>
  <reg name="stvec" bitsize="64" type="int" regnum="326"/>
  <reg name="scounteren" bitsize="64" type="int" regnum="327"/>
  <reg name="sscratch" bitsize="64" type="int" regnum="385"/>
  <reg name="sepc" bitsize="64" type="int" regnum="386"/>
  <reg name="scause" bitsize="64" type="int" regnum="387"/>
  <reg name="stval" bitsize="64" type="int" regnum="388"/>
  <reg name="sip" bitsize="64" type="int" regnum="389"/>
  <reg name="satp" bitsize="64" type="int" regnum="449"/>
  <reg name="mstatus" bitsize="64" type="int" regnum="833"/>
  <reg name="misa" bitsize="64" type="int" regnum="834"/>
  <reg name="medeleg" bitsize="64" type="int" regnum="835"/>
  <reg name="mideleg" bitsize="64" type="int" regnum="836"/>
  <reg name="mie" bitsize="64" type="int" regnum="837"/>
  <reg name="mtvec" bitsize="64" type="int" regnum="838"/>
  <reg name="mcounteren" bitsize="64" type="int" regnum="839"/>
  <reg name="mscratch" bitsize="64" type="int" regnum="897"/>
  <reg name="mepc" bitsize="64" type="int" regnum="898"/>
  <reg name="mcause" bitsize="64" type="int" regnum="899"/>
  <reg name="mtval" bitsize="64" type="int" regnum="900"/>
  <reg name="mip" bitsize="64" type="int" regnum="901"/>
  <reg name="mhartid" bitsize="64" type="int" regnum="3925"/>
</feature>
<feature name="org.gnu.gdb.riscv.virtual">
  <reg name="priv" bitsize="64" type="int" regnum="4161"/>
</feature>
</target>"#;
    const G_REGS: &'static [usize] = &G_REGS;
    const WATCH_AFTER_ACCESS: bool = false;

    fn gdb_read_reg(&self, n: usize, out: &mut Vec<u8>) -> bool {
        let v = match n {
            0..=31 => self.x[n],
            32 => self.header.pc,
            33..=64 => self.f[n - 33],
            PRIV => self.privilege,
            _ => {
                let Some(num) = csr_of(n) else {
                    return false;
                };
                let Some(e) = csr::lookup(num) else {
                    return false;
                };
                let v = (e.read)(self, num, self.header.icount);
                if (1..=3).contains(&num) {
                    out.extend_from_slice(&(v as u32).to_le_bytes());
                    return true;
                }
                v
            }
        };
        out.extend_from_slice(&v.to_le_bytes());
        true
    }

    fn gdb_write_reg(&mut self, n: usize, data: &[u8]) -> bool {
        let mut b = [0u8; 8];
        if data.is_empty() || data.len() > 8 {
            return false;
        }
        b[..data.len()].copy_from_slice(data);
        let v = u64::from_le_bytes(b);
        match n {
            0 => {}
            1..=31 => self.x[n] = v,
            32 => self.header.pc = v,
            33..=64 => self.f[n - 33] = v,
            PRIV => {
                if ![PRV_U, PRV_S, PRV_M].contains(&v) {
                    return false;
                }
                self.privilege = v;
                self.res_addr = crate::cpu::NO_RESERVATION;
                self.update_flags();
                self.header.flush_request |= flush::TLB_ALL;
            }
            _ => {
                let Some(num) = csr_of(n) else {
                    return false;
                };
                let Some(e) = csr::lookup(num) else {
                    return false;
                };
                if (num >> 10) & 3 == 3 {
                    // Read-only CSR (mhartid): accept and ignore, as the hardware would.
                    return true;
                }
                (e.write)(self, num, v, self.header.icount);
                self.update_flags();
                self.header.flush_request |= flush::TLB_ALL;
            }
        }
        true
    }
}

/// The CSR number of gdb register `n`, if the description lists it.
fn csr_of(n: usize) -> Option<u16> {
    let num = u16::try_from(n.checked_sub(CSR_BASE)?).ok()?;
    GDB_CSRS.contains(&num).then_some(num)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(c: &RiscvCpu, n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        assert!(c.gdb_read_reg(n, &mut v), "register {n}");
        v
    }

    #[test]
    fn gprs_pc_and_csrs_round_trip() {
        let mut c = RiscvCpu::new(0);
        assert!(c.gdb_write_reg(5, &0x1234u64.to_le_bytes()));
        assert_eq!(c.x[5], 0x1234);
        assert!(c.gdb_write_reg(0, &7u64.to_le_bytes()));
        assert_eq!(read(&c, 0), 0u64.to_le_bytes());
        assert!(c.gdb_write_reg(32, &0x8000_0000u64.to_le_bytes()));
        assert_eq!(c.header.pc, 0x8000_0000);
        assert!(c.gdb_write_reg(65 + 0x305, &0x8000_0100u64.to_le_bytes()));
        assert_eq!(c.csr.mtvec, 0x8000_0100);
        assert_eq!(read(&c, 65 + 0x305), 0x8000_0100u64.to_le_bytes());
        assert_eq!(read(&c, PRIV), PRV_M.to_le_bytes());
        // fcsr is 32 bits wide in the description.
        assert_eq!(read(&c, 68).len(), 4);
        // Not listed / not a register.
        assert!(!c.gdb_read_reg(65 + 0x7c0, &mut Vec::new()));
        assert!(!c.gdb_read_reg(5000, &mut Vec::new()));
        assert!(!c.gdb_write_reg(PRIV, &2u64.to_le_bytes()));
    }

    #[test]
    fn priv_write_updates_tb_flags() {
        let mut c = RiscvCpu::new(0);
        assert!(c.gdb_write_reg(PRIV, &PRV_S.to_le_bytes()));
        assert_eq!(c.privilege, PRV_S);
        assert_eq!(c.header.flags & crate::cpu::tbflags::PRIV_MASK, PRV_S as u32);
        assert_ne!(c.header.flush_request & flush::TLB_ALL, 0);
    }

    #[test]
    fn description_lists_every_register_we_serve() {
        let xml = RiscvCpu::TARGET_XML;
        for &num in GDB_CSRS {
            assert!(xml.contains(&format!("regnum=\"{}\"", CSR_BASE + num as usize)), "csr {num:#x}");
        }
        for n in
            ["satp", "mstatus", "mepc", "mcause", "mtval", "mtvec", "sepc", "scause", "stval", "stvec", "mip", "mie"]
        {
            assert!(xml.contains(&format!("name=\"{n}\"")), "{n}");
        }
        assert!(xml.contains("regnum=\"4161\""));
    }
}
