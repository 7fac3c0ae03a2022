//! Zifencei: `fence.i` asks the accelerator to synchronise translated code
//! with guest stores (`flush::CODE`) and leaves the block unchained.

use kite_ir::state::{flush, offsets as hdr};
use kite_ir::{BinOp, Exit, Ty};

use super::{Ctx, Flow};

pub(super) fn fence_i(ctx: &mut Ctx) -> Flow {
    let cur = ctx.b.ld_state(Ty::I32, hdr::FLUSH_REQUEST);
    let bit = ctx.b.const32(flush::CODE);
    let new = ctx.b.bin(BinOp::Or, cur, bit);
    ctx.b.st_state(new, hdr::FLUSH_REQUEST);
    ctx.b.exit(Exit::GotoNoChain(ctx.next_pc()));
    Flow::End
}
