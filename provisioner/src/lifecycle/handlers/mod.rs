//! One handler per working state. Each reads the node and its work record, may act (BMC calls, SSH checks),
//! and returns an [`Outcome`]; none changes the node's state itself (the engine does, in one transaction).

mod booting;
mod burn_in;
mod common;
mod discovering;
mod enrolled;
mod fabric_test;
mod fleet;
mod gpu_tools;
mod imaging;
mod inspecting;
mod remediating;
mod turnover;
mod wiping;

pub use booting::fingerprint;

use kiln_inventory::{Node, NodeState, StoreError};

use super::ctx::Ctx;
use super::outcome::Outcome;
use super::work::Work;

/// Runs the handler of the node's state.
pub async fn dispatch(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Outcome, StoreError> {
    match node.state {
        NodeState::Enrolled => enrolled::handle(ctx, node, work).await,
        NodeState::Discovering => discovering::handle(ctx, node, work).await,
        NodeState::Inspecting => inspecting::handle(ctx, node, work).await,
        NodeState::Imaging => imaging::handle(ctx, node, work).await,
        NodeState::Booting => booting::handle(ctx, node, work).await,
        NodeState::BurnIn => burn_in::handle(ctx, node, work).await,
        NodeState::FabricTest => fabric_test::handle(ctx, node, work).await,
        NodeState::Remediating => remediating::handle(ctx, node, work).await,
        NodeState::Wiping => wiping::handle(ctx, node, work).await,
        // Nothing to drive: these wait for a person or a lease (and are never scheduled).
        NodeState::Available | NodeState::Leased | NodeState::Quarantined => Ok(Outcome::wait(
            format!("{} nodes wait for a person or a lease", node.state),
            ctx.config.recheck,
        )),
    }
}
