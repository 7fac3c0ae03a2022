//! Zifencei: `fence.i` asks the accelerator to synchronise translated code
//! with guest stores (`flush::CODE`) and leaves the block unchained.
//! Zihintpause's `pause` (a `fence` hint) asks it the same way to yield
//! (`flush::YIELD`): Linux's `cpu_relax()` executes it in every spin loop.

use kite_ir::state::{flush, offsets as hdr};
use kite_ir::{BinOp, Builder, Exit, Ty};

use super::{Ctx, Flow};

pub(super) fn fence_i(ctx: &mut Ctx) -> Flow {
    request(ctx, flush::CODE)
}

/// The encoding of `pause` (`fence w, 0` with fm = 0, rd = rs1 = 0).
pub(super) const PAUSE: u32 = 0x0100_000f;

pub(super) fn pause(ctx: &mut Ctx) -> Flow {
    request(ctx, flush::YIELD)
}

/// Set `bits` in the header's flush-request word and leave the block unchained.
fn request(ctx: &mut Ctx, bits: u32) -> Flow {
    request_bits(ctx.b, bits);
    ctx.b.exit(Exit::GotoNoChain(ctx.next_pc()));
    Flow::End
}

/// Set `bits` in the header's flush-request word; the dispatcher acts on them when the
/// block returns to it (the caller makes sure it does).
pub(super) fn request_bits(b: &mut Builder, bits: u32) {
    let cur = b.ld_state(Ty::I32, hdr::FLUSH_REQUEST);
    let bit = b.const32(bits);
    let new = b.bin(BinOp::Or, cur, bit);
    b.st_state(new, hdr::FLUSH_REQUEST);
}
