//! Execution tests for compressed instructions: each runs against its
//! specified semantics, mixed with 32-bit instructions.

use crate::testutil::*;

/// A program of 16-bit parcels (32-bit instructions as two parcels).
fn run16(parcels: &[u16], regs: &[(usize, u64)]) -> Machine {
    let mut bytes: Vec<u8> = parcels.iter().flat_map(|p| p.to_le_bytes()).collect();
    bytes.extend_from_slice(&ECALL.to_le_bytes());
    let mut m = Machine::with_bytes(&bytes);
    for &(r, v) in regs {
        m.cpu.x[r] = v;
    }
    m.run_to_ecall();
    m
}

#[test]
fn compressed_alu() {
    let sp = RAM_BASE + 0x2000;
    let m = run16(
        &[
            0x5541, // c.li a0, -16
            0x0505, // c.addi a0, 1          -> -15
            0x852e, // c.mv a0, a1
            0x952e, // c.add a0, a1          -> 2*a1
            0x1ff8, // c.addi4spn a4, sp, 1020
            0x7139, // c.addi16sp sp, -64
            0x6785, // c.lui a5, 1
            0x0806, // c.slli a6, 1 (a6 = x16)
        ],
        &[(11, 21), (2, sp), (16, 0x4000_0000_0000_0001)],
    );
    assert_eq!(m.cpu.x[10], 42);
    assert_eq!(m.cpu.x[14], sp + 1020);
    assert_eq!(m.cpu.x[2], sp - 64);
    assert_eq!(m.cpu.x[15], 0x1000);
    assert_eq!(m.cpu.x[16], 0x8000_0000_0000_0002);
    let m = run16(
        &[
            0x357d, // c.addiw a0, -1
            0x9105, // c.srli a0, 33 (a0 := a0 >> 33)
            0x8585, // c.srai a1, 1
            0x99fd, // c.andi a1, -1 -> unchanged
            0x8e15, // c.sub a2, a3
            0x8f35, // c.xor a4, a3
            0x8f55, // c.or a4, a3
            0x8ff5, // c.and a5, a3
            0x9e35, // c.addw a2, a3
            0x9f15, // c.subw a4, a3
        ],
        &[(10, 0x8000_0000), (11, 1u64 << 63), (12, 10), (13, 3), (14, 0b101), (15, 0b110)],
    );
    // c.addiw: 0x80000000 - 1 = 0x7fffffff, then >> 33 = 0.
    assert_eq!(m.cpu.x[10], 0);
    assert_eq!(m.cpu.x[11], 0xc000_0000_0000_0000);
    assert_eq!(m.cpu.x[12], 10 - 3 + 3);
    assert_eq!(m.cpu.x[14], ((0b101 ^ 3) | 3) - 3);
    assert_eq!(m.cpu.x[15], 0b010);
}

#[test]
fn compressed_memory() {
    let sp = RAM_BASE + 0x2000;
    let m = run16(
        &[
            0xe42a, // c.sdsp a0, 8(sp)
            0xc62e, // c.swsp a1, 12(sp)
            0x6622, // c.ldsp a2, 8(sp)
            0x46b2, // c.lwsp a3, 12(sp)
            0x0818, // c.addi4spn a4, sp, 16
            0xe308, // c.sd a0, 0(a4)
            0xc34c, // c.sw a1, 4(a4)
            0x631c, // c.ld a5, 0(a4)
            0x4340, // c.lw s0, 4(a4)
        ],
        &[(2, sp), (10, 0x1122_3344_5566_7788), (11, 0xffff_ffff_8000_0001)],
    );
    assert_eq!(m.mem.read(sp + 8, 8), 0x8000_0001_5566_7788, "c.swsp overwrote the upper half");
    assert_eq!(m.mem.read(sp + 12, 4), 0x8000_0001);
    assert_eq!(m.cpu.x[12], 0x8000_0001_5566_7788, "c.ldsp sees the c.swsp overlap");
    assert_eq!(m.cpu.x[13], 0xffff_ffff_8000_0001, "c.lwsp sign-extends");
    assert_eq!(m.cpu.x[15], 0x8000_0001_5566_7788);
    assert_eq!(m.cpu.x[8], 0xffff_ffff_8000_0001);
}

#[test]
fn compressed_control_flow_links_pc_plus_2() {
    // c.jalr a5 -> target; link = pc + 2.
    let base = RAM_BASE;
    // 0: c.jalr a5 (-> 6); 2, 4: c.addi a0,1 (skipped); 6: c.addi a1,1; 8: c.beqz a0,+6 (-> 14);
    // 10, 12: skipped; 14: c.bnez a0,+6 (not taken); 16: c.j +8 (-> 24); 18..22: skipped; 24: ecall.
    let mut bytes: Vec<u8> = [0x9782u16, 0x0505, 0x0505, 0x0585, 0xc119, 0x0505, 0x0001, 0xe119, 0xa021]
        .iter()
        .flat_map(|p| p.to_le_bytes())
        .collect();
    bytes.extend_from_slice(&[0x05, 0x05, 0x05, 0x05, 0x05, 0x05]);
    bytes.extend_from_slice(&ECALL.to_le_bytes());
    let mut m = Machine::with_bytes(&bytes);
    m.cpu.x[15] = base + 6;
    m.run_to_ecall();
    assert_eq!(m.cpu.x[1], base + 2, "c.jalr links pc + 2");
    assert_eq!((m.cpu.x[10], m.cpu.x[11]), (0, 1));
    assert_eq!(m.cpu.header.pc, base + 24);
    // c.jr ra returns.
    let m = run16(&[0x8082, 0x0505], &[(1, RAM_BASE + 4)]);
    assert_eq!(m.cpu.x[10], 0);
}

#[test]
fn compressed_ebreak_and_illegal() {
    let mut m = Machine::with_bytes(&[0x02, 0x90, 0, 0]); // c.ebreak, then the all-zero parcel
    m.cpu.csr.mtvec = RAM_BASE + 0x100;
    m.mem.write(RAM_BASE + 0x100, 4, ECALL as u64);
    m.run_to_ecall();
    assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mtval, m.cpu.csr.mepc), (3, RAM_BASE, RAM_BASE));
    let mut m = Machine::with_bytes(&[0, 0]);
    m.cpu.csr.mtvec = RAM_BASE + 0x100;
    m.mem.write(RAM_BASE + 0x100, 4, ECALL as u64);
    m.run_to_ecall();
    assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mtval), (2, 0), "illegal tval = the 16-bit parcel");
    let mut m = Machine::with_bytes(&0x6101u16.to_le_bytes()); // c.addi16sp 0
    m.cpu.csr.mtvec = RAM_BASE + 0x100;
    m.mem.write(RAM_BASE + 0x100, 4, ECALL as u64);
    m.run_to_ecall();
    assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mtval), (2, 0x6101));
}
