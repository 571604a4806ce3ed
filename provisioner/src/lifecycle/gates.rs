//! Concurrency limits shared by the handlers of one engine: BMC calls and burn-ins (semaphores), image writes
//! (slots with a queue), and power-ons per rack per second (inrush).
//!
//! An image slot is granted only together with a power-on of the node's rack: a node that held a slot while
//! waiting out its rack's inrush budget would leave the slot idle for up to a second, and with a rack's nodes
//! moving in step that idle time added up to a third of the imaging phase.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use kiln_inventory::NodeId;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::config::EngineConfig;

/// How long a power-on granted with an image slot stays reserved for the node's boot request.
const RESERVATION: Duration = Duration::from_secs(1);

/// What [`Gates::start_image`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSlot {
    /// The node holds a slot (and, when newly granted, a power-on of its rack reserved for its boot).
    Granted,
    /// Every slot is taken; the node is queued and woken when one frees.
    Queued,
    /// A slot is free but the rack's power-on budget is spent for this long. The node keeps its place in the
    /// queue; `wake` is a queued node whose rack may power on now, to be woken for the free slot.
    PowerWait {
        /// Until the rack's budget allows a power-on.
        wait: Duration,
        /// Another waiter that can use the free slot now.
        wake: Option<NodeId>,
    },
}

/// Concurrency limits shared by the handlers of one engine.
#[derive(Debug)]
pub struct Gates {
    /// BMC calls.
    pub bmc: Semaphore,
    /// Burn-ins.
    pub burn_in: Semaphore,
    image_capacity: usize,
    /// Slots held, with when they were granted.
    images: Mutex<HashMap<NodeId, Instant>>,
    /// A slot held longer than this is taken back (its node was moved on by another instance sharing the
    /// inventory, or its write ran past the imaging SLA and failed anyway).
    image_hold: Duration,
    last_audit: Mutex<Option<Instant>>,
    image_waiters: Mutex<VecDeque<(NodeId, String)>>,
    power_ons_per_s: u32,
    power_ons: Mutex<PowerOns>,
}

#[derive(Debug, Default)]
struct PowerOns {
    /// Power-on times within the last second, per rack.
    recent: HashMap<String, VecDeque<Instant>>,
    /// Power-ons already counted for a node's coming boot request.
    reserved: HashMap<NodeId, Instant>,
}

impl PowerOns {
    /// How long until `rack` may power on one more server (`None`: now), forgetting older power-ons.
    fn wait(&mut self, rack: &str, per_s: u32, now: Instant) -> Option<Duration> {
        let recent = self.recent.entry(rack.to_string()).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            recent.pop_front();
        }
        if recent.len() < per_s as usize {
            return None;
        }
        recent.front().map(|first| {
            Duration::from_secs(1)
                .saturating_sub(now.duration_since(*first))
                .max(Duration::from_millis(1))
        })
    }

    fn take(&mut self, rack: &str, now: Instant) {
        self.recent
            .entry(rack.to_string())
            .or_default()
            .push_back(now);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Gates {
    /// Gates sized by `config.limits`.
    pub fn new(config: &EngineConfig) -> Self {
        let limits = config.limits;
        Gates {
            bmc: Semaphore::new(limits.bmc_calls.max(1)),
            burn_in: Semaphore::new(limits.burn_ins.max(1)),
            image_capacity: limits.image_writes.max(1),
            images: Mutex::new(HashMap::new()),
            image_hold: config
                .sla_of(kiln_inventory::NodeState::Imaging)
                .unwrap_or(Duration::from_secs(3600))
                + config.boot_timeout,
            last_audit: Mutex::new(None),
            image_waiters: Mutex::new(VecDeque::new()),
            power_ons_per_s: limits.power_ons_per_rack_per_s.max(1),
            power_ons: Mutex::new(PowerOns::default()),
        }
    }

    /// Takes one of the image-write slots for `node` of `rack` (held until [`Gates::finish_image`]) together
    /// with a power-on of the rack for its boot. A node that already holds a slot keeps it.
    pub fn start_image(&self, node: NodeId, rack: &str) -> ImageSlot {
        let mut images = lock(&self.images);
        if images.contains_key(&node) {
            return ImageSlot::Granted;
        }
        let now = Instant::now();
        let hold = self.image_hold;
        images.retain(|_, granted| now.duration_since(*granted) < hold);
        let mut waiters = lock(&self.image_waiters);
        if images.len() >= self.image_capacity {
            if !waiters.iter().any(|(w, _)| *w == node) {
                waiters.push_back((node, rack.to_string()));
            }
            return ImageSlot::Queued;
        }
        let mut power = lock(&self.power_ons);
        if let Some(wait) = power.wait(rack, self.power_ons_per_s, now) {
            if !waiters.iter().any(|(w, _)| *w == node) {
                waiters.push_back((node, rack.to_string()));
            }
            let ready = waiters.iter().position(|(w, rack)| {
                *w != node && power.wait(rack, self.power_ons_per_s, now).is_none()
            });
            let wake = ready.and_then(|i| waiters.remove(i)).map(|(w, _)| w);
            return ImageSlot::PowerWait { wait, wake };
        }
        power.take(rack, now);
        power.reserved.insert(node, now);
        images.insert(node, now);
        waiters.retain(|(w, _)| *w != node);
        ImageSlot::Granted
    }

    /// Frees `node`'s image-write slot; returns the node to wake for it: the longest waiting one whose rack may
    /// power on now, else the longest waiting one.
    pub fn finish_image(&self, node: NodeId) -> Option<NodeId> {
        let mut images = lock(&self.images);
        images.remove(&node)?;
        let mut waiters = lock(&self.image_waiters);
        let now = Instant::now();
        let mut power = lock(&self.power_ons);
        let ready = waiters
            .iter()
            .position(|(_, rack)| power.wait(rack, self.power_ons_per_s, now).is_none())
            .unwrap_or(0);
        waiters.remove(ready).map(|(next, _)| next)
    }

    /// The nodes holding slots, when every slot is taken and the last audit is `every` old or older (else
    /// empty): the caller checks them against the inventory and hands back those another instance moved on
    /// ([`Gates::forget_images`]).
    pub fn images_to_audit(&self, every: Duration) -> Vec<NodeId> {
        let images = lock(&self.images);
        if images.len() < self.image_capacity {
            return Vec::new();
        }
        let mut last = lock(&self.last_audit);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < every) {
            return Vec::new();
        }
        *last = Some(now);
        images.keys().copied().collect()
    }

    /// Frees the slots of `nodes` (no longer imaging); returns the waiters to wake, one per freed slot.
    pub fn forget_images(&self, nodes: &[NodeId]) -> Vec<NodeId> {
        nodes
            .iter()
            .filter_map(|node| self.finish_image(*node))
            .collect()
    }

    /// Image writes under way.
    pub fn images_in_flight(&self) -> usize {
        lock(&self.images).len()
    }

    /// Takes a power-on of `rack` for `node` now, or says how long until the rack's budget (K per second)
    /// allows one. A power-on reserved for `node` with its image slot is used first. Handlers do not sleep
    /// on the budget: they wait with the node released, so workers stay free for nodes of other racks.
    pub fn try_power_on(&self, rack: &str, node: NodeId) -> Result<(), Duration> {
        let mut power = lock(&self.power_ons);
        let now = Instant::now();
        if power
            .reserved
            .remove(&node)
            .is_some_and(|at| now.duration_since(at) < RESERVATION)
        {
            return Ok(());
        }
        match power.wait(rack, self.power_ons_per_s, now) {
            None => {
                power.take(rack, now);
                Ok(())
            }
            Some(wait) => Err(wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates(image_writes: usize, per_s: u32) -> Gates {
        let mut config = EngineConfig::default();
        config.limits.image_writes = image_writes;
        config.limits.power_ons_per_rack_per_s = per_s;
        Gates::new(&config)
    }

    #[tokio::test(start_paused = true)]
    async fn an_image_slot_comes_with_a_power_on_of_the_rack() {
        let gates = gates(8, 2);
        assert_eq!(gates.start_image(NodeId(1), "r1"), ImageSlot::Granted);
        assert_eq!(gates.start_image(NodeId(2), "r1"), ImageSlot::Granted);
        // The rack's budget is spent: a third node of r1 takes no slot, a node of r2 does.
        assert!(matches!(
            gates.start_image(NodeId(3), "r1"),
            ImageSlot::PowerWait { wait, wake: None } if wait <= Duration::from_secs(1)
        ));
        assert_eq!(gates.start_image(NodeId(4), "r2"), ImageSlot::Granted);
        assert_eq!(gates.images_in_flight(), 3);
        // The reserved power-on is used at once; an unreserved one of r1 waits out the second.
        assert_eq!(gates.try_power_on("r1", NodeId(1)), Ok(()));
        assert!(matches!(
            gates.try_power_on("r1", NodeId(9)),
            Err(wait) if wait > Duration::ZERO && wait <= Duration::from_secs(1)
        ));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(gates.try_power_on("r1", NodeId(9)), Ok(()));
        // A slot already held is kept without another power-on.
        assert_eq!(gates.start_image(NodeId(1), "r1"), ImageSlot::Granted);
    }

    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_goes_to_the_oldest_waiter_whose_rack_may_power_on() {
        let gates = gates(1, 1);
        assert_eq!(gates.start_image(NodeId(1), "r1"), ImageSlot::Granted);
        assert_eq!(gates.start_image(NodeId(2), "r1"), ImageSlot::Queued);
        assert_eq!(gates.start_image(NodeId(3), "r2"), ImageSlot::Queued);
        // r1 powered on within the second: node 3 (r2) is woken first.
        assert_eq!(gates.finish_image(NodeId(1)), Some(NodeId(3)));
        assert_eq!(gates.start_image(NodeId(3), "r2"), ImageSlot::Granted);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(gates.finish_image(NodeId(3)), Some(NodeId(2)));
        assert_eq!(gates.finish_image(NodeId(3)), None, "a slot is freed once");
        assert_eq!(gates.start_image(NodeId(2), "r1"), ImageSlot::Granted);
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_held_back_by_its_rack_hands_the_free_slot_on() {
        let gates = gates(1, 1);
        assert_eq!(gates.start_image(NodeId(1), "r1"), ImageSlot::Granted);
        for (node, rack) in [(2, "r1"), (3, "r2"), (4, "r3")] {
            assert_eq!(gates.start_image(NodeId(node), rack), ImageSlot::Queued);
        }
        // Node 1's write ends: node 2 (r1 just powered on) is passed over for node 3 (r2).
        assert_eq!(gates.finish_image(NodeId(1)), Some(NodeId(3)));
        // Node 2 tries before node 3 got there: r1 must wait, node 2 keeps its place, node 4 (r3) is woken.
        assert!(matches!(
            gates.start_image(NodeId(2), "r1"),
            ImageSlot::PowerWait {
                wake: Some(NodeId(4)),
                ..
            }
        ));
        assert_eq!(gates.start_image(NodeId(4), "r3"), ImageSlot::Granted);
        assert_eq!(gates.start_image(NodeId(3), "r2"), ImageSlot::Queued);
        // Once r1's second has passed, node 2 is first in line again.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(gates.finish_image(NodeId(4)), Some(NodeId(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_whose_node_moved_on_elsewhere_is_taken_back() {
        let gates = gates(1, 8);
        assert_eq!(gates.start_image(NodeId(1), "r1"), ImageSlot::Granted);
        assert_eq!(gates.start_image(NodeId(2), "r2"), ImageSlot::Queued);
        // Node 1 finished on another instance: this one never frees its slot, so it lapses.
        tokio::time::advance(gates.image_hold + Duration::from_secs(1)).await;
        assert_eq!(gates.start_image(NodeId(2), "r2"), ImageSlot::Granted);
        assert_eq!(gates.images_in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn full_slots_are_audited_at_most_once_per_period() {
        let gates = gates(2, 8);
        assert_eq!(gates.start_image(NodeId(1), "r1"), ImageSlot::Granted);
        assert!(
            gates.images_to_audit(Duration::from_secs(1)).is_empty(),
            "not full"
        );
        assert_eq!(gates.start_image(NodeId(2), "r1"), ImageSlot::Granted);
        assert_eq!(gates.start_image(NodeId(3), "r2"), ImageSlot::Queued);
        let mut held = gates.images_to_audit(Duration::from_secs(1));
        held.sort();
        assert_eq!(held, vec![NodeId(1), NodeId(2)]);
        assert!(
            gates.images_to_audit(Duration::from_secs(1)).is_empty(),
            "too soon"
        );
        // Node 1 was moved on by another instance: its slot goes to the waiter.
        assert_eq!(gates.forget_images(&[NodeId(1)]), vec![NodeId(3)]);
        assert_eq!(gates.images_in_flight(), 1);
    }
}
