//! Concurrency limits shared by the handlers of one engine: BMC calls and burn-ins (semaphores), image writes
//! (slots with a queue), and power-ons per rack per second (inrush).
//!
//! An image slot is granted only together with a power-on of the node's rack: a node that held a slot while
//! waiting out its rack's inrush budget would leave the slot idle for up to a second, and with a rack's nodes
//! moving in step that idle time added up to a third of the imaging phase.

use std::collections::{HashMap, HashSet, VecDeque};
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
    /// A slot is free but the rack's power-on budget is spent for this long.
    PowerWait(Duration),
}

/// Concurrency limits shared by the handlers of one engine.
#[derive(Debug)]
pub struct Gates {
    /// BMC calls.
    pub bmc: Semaphore,
    /// Burn-ins.
    pub burn_in: Semaphore,
    image_capacity: usize,
    images: Mutex<HashSet<NodeId>>,
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
            images: Mutex::new(HashSet::new()),
            image_waiters: Mutex::new(VecDeque::new()),
            power_ons_per_s: limits.power_ons_per_rack_per_s.max(1),
            power_ons: Mutex::new(PowerOns::default()),
        }
    }

    /// Takes one of the image-write slots for `node` of `rack` (held until [`Gates::finish_image`]) together
    /// with a power-on of the rack for its boot. A node that already holds a slot keeps it.
    pub fn start_image(&self, node: NodeId, rack: &str) -> ImageSlot {
        let mut images = lock(&self.images);
        if images.contains(&node) {
            return ImageSlot::Granted;
        }
        let mut waiters = lock(&self.image_waiters);
        if images.len() >= self.image_capacity {
            if !waiters.iter().any(|(w, _)| *w == node) {
                waiters.push_back((node, rack.to_string()));
            }
            return ImageSlot::Queued;
        }
        let now = Instant::now();
        let mut power = lock(&self.power_ons);
        if let Some(wait) = power.wait(rack, self.power_ons_per_s, now) {
            return ImageSlot::PowerWait(wait);
        }
        power.take(rack, now);
        power.reserved.insert(node, now);
        images.insert(node);
        waiters.retain(|(w, _)| *w != node);
        ImageSlot::Granted
    }

    /// Frees `node`'s image-write slot; returns the node to wake for it: the longest waiting one whose rack may
    /// power on now, else the longest waiting one.
    pub fn finish_image(&self, node: NodeId) -> Option<NodeId> {
        let mut images = lock(&self.images);
        if !images.remove(&node) {
            return None;
        }
        let mut waiters = lock(&self.image_waiters);
        let now = Instant::now();
        let mut power = lock(&self.power_ons);
        let ready = waiters
            .iter()
            .position(|(_, rack)| power.wait(rack, self.power_ons_per_s, now).is_none())
            .unwrap_or(0);
        waiters.remove(ready).map(|(next, _)| next)
    }

    /// Image writes under way.
    pub fn images_in_flight(&self) -> usize {
        lock(&self.images).len()
    }

    /// Waits until `rack` may power on one more server (at most K per rack per second); a power-on reserved
    /// for `node` with its image slot is used at once.
    pub async fn power_on_slot(&self, rack: &str, node: NodeId) {
        loop {
            let wait = {
                let mut power = lock(&self.power_ons);
                let now = Instant::now();
                if power
                    .reserved
                    .remove(&node)
                    .is_some_and(|at| now.duration_since(at) < RESERVATION)
                {
                    return;
                }
                let wait = power.wait(rack, self.power_ons_per_s, now);
                if wait.is_none() {
                    power.take(rack, now);
                }
                wait
            };
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
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
            ImageSlot::PowerWait(wait) if wait <= Duration::from_secs(1)
        ));
        assert_eq!(gates.start_image(NodeId(4), "r2"), ImageSlot::Granted);
        assert_eq!(gates.images_in_flight(), 3);
        // The reserved power-on is used without waiting; an unreserved one of r1 waits out the second.
        let started = Instant::now();
        gates.power_on_slot("r1", NodeId(1)).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        gates.power_on_slot("r1", NodeId(9)).await;
        assert!(started.elapsed() >= Duration::from_millis(999));
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
}
