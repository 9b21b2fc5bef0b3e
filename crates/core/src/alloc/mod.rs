//! Allocators for ClusterIPs and NodePorts, pure: the caller supplies randomness and persists
//! what is allocated (the server commits each address in the same store transaction as its
//! Service).
//!
//! Both follow Kubernetes' static/dynamic split (KEP-3070 for IPs, KEP-3668 for ports): the
//! lowest addresses of a range form a *static* band that automatic allocation uses only when
//! the rest is full, so users can pick well-known addresses there without colliding with
//! dynamic ones. Unlike Kubernetes' bitmap, every address of a range can be allocated (no
//! 65,536-address cap) and memory grows with the addresses in use.

pub mod bitmap;
pub mod cidrset;
pub mod ip;
pub mod ledger;
pub mod port;

/// Why an allocation failed; the texts are Kubernetes'.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// No free address or port is left.
    #[error("range is full")]
    Full,
    /// The requested address or port is taken.
    #[error("provided {0} is already allocated")]
    AlreadyAllocated(&'static str),
    /// The requested IP is outside the range (or is its network/broadcast address).
    #[error("provided IP {ip} is not in the valid range. The range of valid IPs is {range}")]
    IpNotInRange { ip: String, range: String },
    /// The requested port is outside the range.
    #[error("provided port is not in the valid range. The range of valid ports is {range}")]
    PortNotInRange { range: String },
}

/// The size of the static band for a range of `size` values: `clamp(size / divisor, 16, cap)`,
/// none for ranges of 16 or fewer.
pub(crate) fn static_band(size: u128, divisor: u128, cap: u128) -> u128 {
    if size <= 16 {
        0
    } else {
        (size / divisor).clamp(16, cap)
    }
}

/// Picks a free index: a random start inside the dynamic band `[band, capacity)` scanning
/// forward and wrapping, then the same in the static band `[0, band)`.
pub(crate) fn pick(
    used: &bitmap::SparseBitmap,
    capacity: u128,
    band: u128,
    random: u128,
) -> Option<u128> {
    let scan = |lo: u128, hi_excl: u128| -> Option<u128> {
        if lo >= hi_excl {
            return None;
        }
        let start = lo + random % (hi_excl - lo);
        used.first_clear(start, hi_excl - 1).or_else(|| {
            if start > lo {
                used.first_clear(lo, start - 1)
            } else {
                None
            }
        })
    };
    let band = band.min(capacity);
    scan(band, capacity).or_else(|| scan(0, band))
}

/// [`pick`], reserving what it finds.
pub(crate) fn take(
    used: &mut bitmap::SparseBitmap,
    capacity: u128,
    band: u128,
    random: u128,
) -> Option<u128> {
    let band = band.min(capacity);
    let mut scan = |lo: u128, hi_excl: u128| -> Option<u128> {
        if lo >= hi_excl {
            return None;
        }
        let start = lo + random % (hi_excl - lo);
        used.take_first_clear(start, hi_excl - 1).or_else(|| {
            if start > lo {
                used.take_first_clear(lo, start - 1)
            } else {
                None
            }
        })
    };
    scan(band, capacity).or_else(|| scan(0, band))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_sizes_match_kep_3070() {
        // IPs: size/16 clamped to [16, 256].
        let ip = |prefix_host_bits: u32| static_band(1u128 << prefix_host_bits, 16, 256);
        assert_eq!(ip(4), 0); // /28
        assert_eq!(ip(5), 16); // /27
        assert_eq!(ip(7), 16); // /25
        assert_eq!(ip(8), 16); // /24
        assert_eq!(ip(12), 256); // /20
        assert_eq!(ip(16), 256); // /16
        assert_eq!(ip(64), 256); // IPv6 /64
        // Ports: size/32 clamped to [16, 128]; 30000-32767 is 2768 ports.
        assert_eq!(static_band(2768, 32, 128), 86);
    }

    #[test]
    fn pick_prefers_the_dynamic_band_and_wraps() {
        let mut used = bitmap::SparseBitmap::new();
        // capacity 100, band 20: dynamic is 20..100.
        for i in 20..100 {
            assert_eq!(pick(&used, 100, 20, 7).map(|x| x >= 20), Some(true));
            used.set(i);
        }
        // Dynamic full: falls back to the static band.
        let i = pick(&used, 100, 20, 7).unwrap();
        assert!(i < 20);
        used.clear(55);
        // A random start past the only hole wraps around to it.
        assert_eq!(pick(&used, 100, 20, 79), Some(55));
        for i in 0..20 {
            used.set(i);
        }
        used.set(55);
        assert_eq!(pick(&used, 100, 20, 3), None);
        used.clear(42);
        assert_eq!(take(&mut used, 100, 20, 3), Some(42));
        assert_eq!(take(&mut used, 100, 20, 3), None);
        assert_eq!(pick(&used, 0, 0, 3), None);
    }
}
