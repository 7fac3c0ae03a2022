//! RISC-V frontend (placeholder API; being implemented).
use kite_ir::state::CpuHeader;

/// RV64 hart state.
#[repr(C)]
#[derive(Debug)]
pub struct RiscvCpu {
    pub header: CpuHeader,
    pub x: [u64; 32],
    pub hartid: u64,
}

impl RiscvCpu {
    pub fn new(hartid: u64) -> Box<RiscvCpu> {
        let mut c = Box::new(RiscvCpu { header: CpuHeader::default(), x: [0; 32], hartid });
        c.header.pc = 0x1000;
        c
    }
}
