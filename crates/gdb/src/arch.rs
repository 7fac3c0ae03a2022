//! A gdbstub `Arch` whose registers are opaque bytes: the register layout comes from the
//! target's description XML and [`crate::CpuRegs`], not from a Rust type, so one stub
//! serves every target. Register numbers are passed through unchanged (RISC-V uses
//! sparse numbers: CSRs are 65 + the CSR number, `priv` is 4161).

use std::num::NonZeroUsize;

/// The opaque architecture.
#[derive(Debug)]
pub enum KiteArch {}

/// The `g` packet contents, already in target byte order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawRegs {
    pub bytes: Vec<u8>,
}

impl gdbstub::arch::Registers for RawRegs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        // Only used by gdbstub for stop replies that carry registers, which Kite does not send.
        0
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        for &b in &self.bytes {
            write_byte(Some(b));
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.bytes = bytes.to_vec();
        Ok(())
    }
}

/// A raw gdb register number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawRegId(pub usize);

impl gdbstub::arch::RegId for RawRegId {
    fn from_raw_id(id: usize) -> Option<(Self, Option<NonZeroUsize>)> {
        // The size is the target's business: it answers with as many bytes as the register has.
        Some((RawRegId(id), None))
    }
}

impl gdbstub::arch::Arch for KiteArch {
    type Usize = u64;
    type Registers = RawRegs;
    type BreakpointKind = usize;
    type RegId = RawRegId;
}
