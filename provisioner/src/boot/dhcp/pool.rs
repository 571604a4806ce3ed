//! Address pools and the in-memory allocation table. The table is loaded from the inventory's lease rows at
//! start and every bind is written through to the inventory, so a restart hands out the same addresses.
//!
//! Invariant: one address is offered or bound to at most one MAC at a time, and a MAC keeps its address across
//! DISCOVERs (iPXE re-asks for the address it was offered; two MACs sharing one makes it loop).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use kiln_inventory::{DhcpLease, LeaseState, MacAddr};

/// A range of addresses kiln hands out on one subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The subnet's network address.
    pub network: Ipv4Addr,
    /// Prefix length of the subnet (24 for a /24).
    pub prefix_len: u8,
    /// First address handed out.
    pub first: Ipv4Addr,
    /// Last address handed out (inclusive).
    pub last: Ipv4Addr,
    /// Default gateway given to clients (option 3), if any.
    pub router: Option<Ipv4Addr>,
    /// DNS servers given to clients (option 6).
    pub dns: Vec<Ipv4Addr>,
}

impl Pool {
    /// The subnet mask (option 1).
    pub fn mask(&self) -> Ipv4Addr {
        let bits = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len.min(32)))
            .unwrap_or(0);
        Ipv4Addr::from(bits)
    }

    /// Whether `ip` is on this pool's subnet.
    pub fn subnet_contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.mask());
        u32::from(ip) & mask == u32::from(self.network) & mask
    }

    /// Whether `ip` is one of the addresses this pool hands out.
    pub fn range_contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
    }
}

/// What the table knows about one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Offered to `mac` until the time given; not yet bound.
    Offered(MacAddr, DateTime<Utc>),
    /// Bound to `mac` until the time given.
    Bound(MacAddr, DateTime<Utc>),
    /// A reservation (a configured one, or an enrolled node's): `mac`'s for good.
    Pinned(MacAddr),
    /// Given back by `mac`; free for others, but `mac` gets it again first.
    Released(MacAddr),
    /// Declined (in use by something unknown) until the time given.
    Declined(DateTime<Utc>),
}

impl Slot {
    fn holder(self, now: DateTime<Utc>) -> Option<Holder> {
        match self {
            Slot::Offered(mac, until) | Slot::Bound(mac, until) if until > now => {
                Some(Holder::Mac(mac))
            }
            Slot::Pinned(mac) => Some(Holder::Mac(mac)),
            Slot::Declined(until) if until > now => Some(Holder::Declined),
            _ => None,
        }
    }

    fn mac(self) -> Option<MacAddr> {
        match self {
            Slot::Offered(mac, _)
            | Slot::Bound(mac, _)
            | Slot::Pinned(mac)
            | Slot::Released(mac) => Some(mac),
            Slot::Declined(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Mac(MacAddr),
    Declined,
}

/// The allocation table: who holds which address.
#[derive(Debug, Default)]
pub struct Allocations {
    by_ip: HashMap<Ipv4Addr, Slot>,
    by_mac: HashMap<MacAddr, Ipv4Addr>,
    /// Configured reservations: MAC → address.
    reserved: HashMap<MacAddr, Ipv4Addr>,
    /// The same, by address.
    reserved_ips: HashMap<Ipv4Addr, MacAddr>,
}

impl Allocations {
    /// A table with the configured reservations and the inventory's lease rows.
    pub fn new(reservations: &[(MacAddr, Ipv4Addr)], leases: &[DhcpLease]) -> Self {
        let mut table = Self::default();
        for &(mac, ip) in reservations {
            table.reserved.insert(mac, ip);
            table.reserved_ips.insert(ip, mac);
        }
        for lease in leases {
            let slot = match (lease.mac, lease.state) {
                (Some(mac), _) if lease.pinned => Slot::Pinned(mac),
                (Some(mac), LeaseState::Bound) => Slot::Bound(mac, lease.expires_at),
                (Some(mac), LeaseState::Released) => Slot::Released(mac),
                (_, LeaseState::Declined) | (None, _) => Slot::Declined(lease.expires_at),
            };
            table.set(lease.ip, slot);
        }
        table
    }

    fn set(&mut self, ip: Ipv4Addr, slot: Slot) {
        if let Some(old_mac) = self.by_ip.get(&ip).and_then(|old| old.mac())
            && Some(old_mac) != slot.mac()
            && self.by_mac.get(&old_mac) == Some(&ip)
        {
            self.by_mac.remove(&old_mac);
        }
        if let Some(mac) = slot.mac()
            && let Some(previous) = self.by_mac.insert(mac, ip)
            && previous != ip
        {
            self.by_ip.remove(&previous);
        }
        self.by_ip.insert(ip, slot);
    }

    /// Whether `mac` may hold `ip` from `pool` at `now`: its reservation, or an address of the range that no one
    /// else holds and no one else has reserved.
    pub fn may_hold(&self, mac: MacAddr, ip: Ipv4Addr, pool: &Pool, now: DateTime<Utc>) -> bool {
        if let Some(&reserved) = self.reserved.get(&mac) {
            return reserved == ip;
        }
        if !pool.range_contains(ip) {
            return false;
        }
        if self
            .reserved_ips
            .get(&ip)
            .is_some_and(|owner| *owner != mac)
        {
            return false;
        }
        match self.by_ip.get(&ip).and_then(|slot| slot.holder(now)) {
            None => true,
            Some(Holder::Mac(holder)) => holder == mac,
            Some(Holder::Declined) => false,
        }
    }

    /// The address to offer `mac`: its reservation, its current or last address, the address it asks for, or
    /// the first free one of the pool (never-used addresses before ones other MACs gave back). Marks it offered
    /// until `hold_until`. `None`: the pool is exhausted.
    pub fn offer(
        &mut self,
        mac: MacAddr,
        requested: Option<Ipv4Addr>,
        pool: &Pool,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
    ) -> Option<Ipv4Addr> {
        let candidate = if let Some(&reserved) = self.reserved.get(&mac) {
            Some(reserved)
        } else {
            let current = self.by_mac.get(&mac).copied();
            current
                .into_iter()
                .chain(requested)
                .find(|ip| self.may_hold(mac, *ip, pool, now))
                .or_else(|| self.first_free(mac, pool, now))
        };
        let ip = candidate?;
        match self.by_ip.get(&ip) {
            // Keep a binding or pin as it is; an offer only matters for addresses not yet held.
            Some(Slot::Bound(holder, until)) if *holder == mac && *until > now => {}
            Some(Slot::Pinned(holder)) if *holder == mac => {}
            _ => self.set(ip, Slot::Offered(mac, hold_until)),
        }
        Some(ip)
    }

    fn first_free(&self, mac: MacAddr, pool: &Pool, now: DateTime<Utc>) -> Option<Ipv4Addr> {
        let range = u32::from(pool.first)..=u32::from(pool.last);
        let free = |ip: &Ipv4Addr| self.may_hold(mac, *ip, pool, now);
        range
            .clone()
            .map(Ipv4Addr::from)
            .find(|ip| !self.by_ip.contains_key(ip) && free(ip))
            .or_else(|| range.map(Ipv4Addr::from).find(free))
    }

    /// Records a bound lease (`until` ignored when pinned).
    pub fn bind(&mut self, mac: MacAddr, ip: Ipv4Addr, until: DateTime<Utc>, pinned: bool) {
        let slot = if pinned || self.reserved.get(&mac) == Some(&ip) {
            Slot::Pinned(mac)
        } else {
            Slot::Bound(mac, until)
        };
        self.set(ip, slot);
    }

    /// Forgets an offer `mac` did not take up (it chose another server).
    pub fn withdraw_offer(&mut self, mac: MacAddr) {
        if let Some(ip) = self.by_mac.get(&mac).copied()
            && let Some(Slot::Offered(..)) = self.by_ip.get(&ip)
        {
            self.by_ip.insert(ip, Slot::Released(mac));
        }
    }

    /// `mac` gave `ip` back. Returns whether it held it.
    pub fn release(&mut self, mac: MacAddr, ip: Ipv4Addr) -> bool {
        match self.by_ip.get(&ip) {
            Some(Slot::Bound(holder, _) | Slot::Offered(holder, _)) if *holder == mac => {
                self.by_ip.insert(ip, Slot::Released(mac));
                true
            }
            _ => false,
        }
    }

    /// `ip` is in use by something unknown; keep it out of service until `until`.
    pub fn decline(&mut self, ip: Ipv4Addr, until: DateTime<Utc>) {
        self.set(ip, Slot::Declined(until));
    }

    /// The address currently associated with `mac`, if any.
    pub fn address_of(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.reserved
            .get(&mac)
            .or_else(|| self.by_mac.get(&mac))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn pool() -> Pool {
        Pool {
            network: Ipv4Addr::new(10, 9, 0, 0),
            prefix_len: 24,
            first: Ipv4Addr::new(10, 9, 0, 100),
            last: Ipv4Addr::new(10, 9, 0, 102),
            router: None,
            dns: vec![],
        }
    }

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn mask_and_ranges() {
        let pool = pool();
        assert_eq!(pool.mask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(pool.subnet_contains(Ipv4Addr::new(10, 9, 0, 1)));
        assert!(!pool.subnet_contains(Ipv4Addr::new(10, 9, 1, 1)));
        assert!(pool.range_contains(Ipv4Addr::new(10, 9, 0, 102)));
        assert!(!pool.range_contains(Ipv4Addr::new(10, 9, 0, 103)));
    }

    #[test]
    fn simultaneous_discovers_get_distinct_stable_addresses() {
        let pool = pool();
        let mut table = Allocations::new(&[], &[]);
        let hold = now() + Duration::seconds(60);
        let a = table.offer(mac(1), None, &pool, now(), hold);
        let b = table.offer(mac(2), None, &pool, now(), hold);
        let c = table.offer(mac(3), None, &pool, now(), hold);
        assert_eq!(a, Some(Ipv4Addr::new(10, 9, 0, 100)));
        assert_eq!(b, Some(Ipv4Addr::new(10, 9, 0, 101)));
        assert_eq!(c, Some(Ipv4Addr::new(10, 9, 0, 102)));
        // A fourth MAC finds the pool exhausted while the offers stand.
        assert_eq!(table.offer(mac(4), None, &pool, now(), hold), None);
        // Asking again gives the same address, even when asking for another one.
        assert_eq!(
            table.offer(
                mac(1),
                Some(Ipv4Addr::new(10, 9, 0, 102)),
                &pool,
                now(),
                hold
            ),
            a
        );
        // Offers lapse.
        let later = hold + Duration::seconds(1);
        assert!(table.may_hold(mac(4), Ipv4Addr::new(10, 9, 0, 101), &pool, later));
    }

    #[test]
    fn bound_released_declined_and_reserved() {
        let pool = pool();
        let reserved_ip = Ipv4Addr::new(10, 9, 0, 50);
        let mut table = Allocations::new(&[(mac(9), reserved_ip)], &[]);
        let hold = now() + Duration::seconds(60);
        assert_eq!(
            table.offer(mac(9), None, &pool, now(), hold),
            Some(reserved_ip)
        );
        assert!(table.may_hold(mac(9), reserved_ip, &pool, now()));
        assert!(!table.may_hold(mac(9), Ipv4Addr::new(10, 9, 0, 100), &pool, now()));

        let ip = table
            .offer(mac(1), None, &pool, now(), hold)
            .expect("offer");
        table.bind(mac(1), ip, now() + Duration::hours(1), false);
        assert!(!table.may_hold(mac(2), ip, &pool, now() + Duration::minutes(30)));
        assert!(table.release(mac(1), ip));
        assert!(!table.release(mac(1), ip));
        assert!(table.may_hold(mac(2), ip, &pool, now()));
        // The releasing MAC gets its address back first.
        assert_eq!(table.offer(mac(1), None, &pool, now(), hold), Some(ip));

        table.decline(Ipv4Addr::new(10, 9, 0, 101), now() + Duration::minutes(10));
        assert!(!table.may_hold(mac(3), Ipv4Addr::new(10, 9, 0, 101), &pool, now()));
        assert_eq!(
            table.offer(mac(3), None, &pool, now(), hold),
            Some(Ipv4Addr::new(10, 9, 0, 102))
        );
        table.withdraw_offer(mac(3));
        assert!(table.may_hold(mac(4), Ipv4Addr::new(10, 9, 0, 102), &pool, now()));
    }
}
