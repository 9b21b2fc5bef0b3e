//! The ClusterIP allocator of one service range.
//!
//! Allocatable: every address after the network address; for IPv4 not the broadcast address
//! (for IPv6 the last address is usable, as in Kubernetes). Index `i` is address
//! `network + 1 + i`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::bitmap::SparseBitmap;
use super::{AllocError, pick, static_band, take};
use crate::net::{IpFamily, ServiceCidr, normalize};

#[derive(Clone, Debug)]
pub struct IpAllocator {
    cidr: ServiceCidr,
    base: u128,
    capacity: u128,
    band: u128,
    used: SparseBitmap,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl IpAllocator {
    pub fn new(cidr: ServiceCidr) -> Self {
        let net = cidr.net();
        let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
        // Host bits are at most 64 for accepted ranges; saturate for anything larger.
        let size: u128 = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
        let reserved_top = match cidr.family() {
            IpFamily::IPv4 => 1, // broadcast
            IpFamily::IPv6 => 0,
        };
        let capacity = size.saturating_sub(1 + reserved_top);
        Self {
            cidr,
            base: to_u128(net.network()),
            capacity,
            band: static_band(size, 16, 256),
            used: SparseBitmap::new(),
        }
    }

    pub fn cidr(&self) -> ServiceCidr {
        self.cidr
    }

    pub fn family(&self) -> IpFamily {
        self.cidr.family()
    }

    /// Number of allocatable addresses.
    pub fn capacity(&self) -> u128 {
        self.capacity
    }

    pub fn used(&self) -> u128 {
        self.used.count()
    }

    pub fn free(&self) -> u128 {
        self.capacity - self.used.count()
    }

    /// Size of the static band (the lowest addresses, used automatically only as a last resort).
    pub fn static_band(&self) -> u128 {
        self.band.min(self.capacity)
    }

    fn ip_of(&self, index: u128) -> IpAddr {
        let v = self.base + 1 + index;
        match self.family() {
            IpFamily::IPv4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
            IpFamily::IPv6 => IpAddr::V6(Ipv6Addr::from(v)),
        }
    }

    /// The index of `ip` if it is allocatable in this range.
    pub fn index_of(&self, ip: IpAddr) -> Option<u128> {
        let ip = normalize(ip);
        if IpFamily::of(&ip) != self.family() || !self.cidr.net().contains(&ip) {
            return None;
        }
        let off = to_u128(ip) - self.base;
        (off >= 1 && off - 1 < self.capacity).then(|| off - 1)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.index_of(ip).is_some()
    }

    /// Whether an address in the static band (the user-requestable low addresses).
    pub fn in_static_band(&self, ip: IpAddr) -> bool {
        self.index_of(ip).is_some_and(|i| i < self.static_band())
    }

    pub fn is_allocated(&self, ip: IpAddr) -> bool {
        self.index_of(ip).is_some_and(|i| self.used.get(i))
    }

    fn not_in_range(&self, ip: IpAddr) -> AllocError {
        AllocError::IpNotInRange {
            ip: ip.to_string(),
            range: self.cidr.to_string(),
        }
    }

    /// Reserves a requested address.
    pub fn allocate(&mut self, ip: IpAddr) -> Result<(), AllocError> {
        let i = self.index_of(ip).ok_or_else(|| self.not_in_range(ip))?;
        if self.used.set(i) {
            Ok(())
        } else {
            Err(AllocError::AlreadyAllocated("IP"))
        }
    }

    /// Checks a requested address without reserving it (dry run).
    pub fn check(&self, ip: IpAddr) -> Result<(), AllocError> {
        let i = self.index_of(ip).ok_or_else(|| self.not_in_range(ip))?;
        if self.used.get(i) {
            Err(AllocError::AlreadyAllocated("IP"))
        } else {
            Ok(())
        }
    }

    /// The address `allocate_next` would return for this `random`, without reserving it.
    pub fn peek_next(&self, random: u128) -> Result<IpAddr, AllocError> {
        pick(&self.used, self.capacity, self.band, random)
            .map(|i| self.ip_of(i))
            .ok_or(AllocError::Full)
    }

    /// Reserves a free address: a random one in the dynamic band, else in the static band.
    pub fn allocate_next(&mut self, random: u128) -> Result<IpAddr, AllocError> {
        let i = take(&mut self.used, self.capacity, self.band, random).ok_or(AllocError::Full)?;
        Ok(self.ip_of(i))
    }

    /// Releases an address; returns whether it was allocated.
    pub fn release(&mut self, ip: IpAddr) -> bool {
        self.index_of(ip).is_some_and(|i| self.used.clear(i))
    }

    /// Every allocated address, in order.
    pub fn allocated(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.used.iter().map(|i| self.ip_of(i))
    }

    pub fn heap_bytes(&self) -> usize {
        self.used.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::parse_cidr_sloppy;

    fn alloc(cidr: &str) -> IpAllocator {
        IpAllocator::new(ServiceCidr(parse_cidr_sloppy(cidr).unwrap()))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn usable_addresses_and_errors() {
        let mut a = alloc("10.0.0.0/29");
        assert_eq!(a.capacity(), 6); // .1 - .6
        assert_eq!(
            a.allocate(ip("10.0.0.0")).unwrap_err().to_string(),
            "provided IP 10.0.0.0 is not in the valid range. The range of valid IPs is 10.0.0.0/29"
        );
        assert!(a.allocate(ip("10.0.0.7")).is_err(), "broadcast");
        assert!(a.allocate(ip("10.0.0.8")).is_err());
        assert!(a.allocate(ip("fd00::1")).is_err());
        a.allocate(ip("10.0.0.6")).unwrap();
        assert_eq!(
            a.allocate(ip("10.0.0.6")).unwrap_err().to_string(),
            "provided IP is already allocated"
        );
        let mut got: Vec<IpAddr> = (0..5).map(|r| a.allocate_next(r * 7).unwrap()).collect();
        got.sort();
        assert_eq!(
            got,
            ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"].map(ip)
        );
        assert_eq!(a.allocate_next(0), Err(AllocError::Full));
        assert!(a.release(ip("10.0.0.3")));
        assert!(!a.release(ip("10.0.0.3")));
        assert_eq!(a.allocate_next(12345).unwrap(), ip("10.0.0.3"));

        // IPv6: the last address is usable.
        let mut v6 = alloc("fd00::/125");
        assert_eq!(v6.capacity(), 7);
        v6.allocate(ip("fd00::7")).unwrap();
        // IPv4-mapped IPv6 is IPv4.
        let mut v4 = alloc("10.0.0.0/24");
        v4.allocate(ip("::ffff:10.0.0.9")).unwrap();
        assert!(v4.is_allocated(ip("10.0.0.9")));
    }

    #[test]
    fn whole_range_is_allocatable_and_dynamic_goes_high_first() {
        for cidr in ["10.0.0.0/26", "fd00::/122", "10.1.0.0/20"] {
            let mut a = alloc(cidr);
            let cap = a.capacity();
            let band = a.static_band();
            let mut seen = std::collections::HashSet::new();
            for n in 0..cap {
                let r = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555;
                let got = a.allocate_next(r).unwrap();
                assert!(seen.insert(got), "{cidr}: {got} twice");
                // Until the dynamic band is exhausted, nothing comes from the static band.
                if n < cap - band {
                    assert!(
                        !a.in_static_band(got),
                        "{cidr}: {got} from the static band early"
                    );
                }
            }
            assert_eq!(a.allocate_next(1), Err(AllocError::Full), "{cidr}");
            assert_eq!(a.used(), cap);
            for ip in seen {
                assert!(a.release(ip));
            }
            assert_eq!(a.used(), 0);
            assert_eq!(a.heap_bytes(), 0);
        }
    }

    #[test]
    fn large_ipv6_ranges_cost_memory_only_for_what_is_used() {
        let mut a = alloc("fd00:1::/64");
        assert_eq!(a.capacity(), (1u128 << 64) - 1);
        for r in 0..10_000u128 {
            a.allocate_next(r.wrapping_mul(0x2545_f491_4f6c_dd1d))
                .unwrap();
        }
        assert_eq!(a.used(), 10_000);
        // Random picks in a /64 land in separate blocks, each a short list: well under 100
        // bytes an address, independent of the 2^64 range size.
        assert!(a.heap_bytes() < 10_000 * 100, "{}", a.heap_bytes());
        a.allocate(ip("fd00:1::ffff:ffff:ffff:ffff")).unwrap();
        assert!(a.in_static_band(ip("fd00:1::100")));
        assert!(!a.in_static_band(ip("fd00:1::101")));
    }
}
