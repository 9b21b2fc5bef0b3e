//! The NodePort allocator (`--service-node-port-range`), shared by both IP families.

use super::bitmap::SparseBitmap;
use super::{AllocError, pick, static_band, take};
use crate::net::PortRange;

#[derive(Clone, Debug)]
pub struct PortAllocator {
    range: PortRange,
    band: u128,
    used: SparseBitmap,
}

impl PortAllocator {
    pub fn new(range: PortRange) -> Self {
        Self {
            range,
            // KEP-3668: size/32 clamped to [16, 128].
            band: static_band(u128::from(range.size), 32, 128),
            used: SparseBitmap::new(),
        }
    }

    pub fn range(&self) -> PortRange {
        self.range
    }

    pub fn capacity(&self) -> u128 {
        u128::from(self.range.size)
    }

    pub fn used(&self) -> u128 {
        self.used.count()
    }

    fn index(&self, port: i32) -> Result<u128, AllocError> {
        u16::try_from(port)
            .ok()
            .filter(|p| self.range.contains(*p))
            .map(|p| u128::from(p - self.range.first()))
            .ok_or(AllocError::PortNotInRange {
                range: self.range.to_string(),
            })
    }

    pub fn contains(&self, port: i32) -> bool {
        self.index(port).is_ok()
    }

    pub fn is_allocated(&self, port: i32) -> bool {
        self.index(port).is_ok_and(|i| self.used.get(i))
    }

    pub fn allocate(&mut self, port: i32) -> Result<(), AllocError> {
        let i = self.index(port)?;
        if self.used.set(i) {
            Ok(())
        } else {
            Err(AllocError::AlreadyAllocated("port"))
        }
    }

    pub fn check(&self, port: i32) -> Result<(), AllocError> {
        let i = self.index(port)?;
        if self.used.get(i) {
            Err(AllocError::AlreadyAllocated("port"))
        } else {
            Ok(())
        }
    }

    pub fn peek_next(&self, random: u128) -> Result<i32, AllocError> {
        pick(&self.used, self.capacity(), self.band, random)
            .map(|i| i32::from(self.range.first()) + i as i32)
            .ok_or(AllocError::Full)
    }

    pub fn allocate_next(&mut self, random: u128) -> Result<i32, AllocError> {
        let capacity = self.capacity();
        let i = take(&mut self.used, capacity, self.band, random).ok_or(AllocError::Full)?;
        Ok(i32::from(self.range.first()) + i as i32)
    }

    pub fn release(&mut self, port: i32) -> bool {
        self.index(port).is_ok_and(|i| self.used.clear(i))
    }

    pub fn allocated(&self) -> impl Iterator<Item = i32> + '_ {
        self.used
            .iter()
            .map(|i| i32::from(self.range.first()) + i as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let mut a = PortAllocator::new(PortRange::parse("30000-30099").unwrap());
        assert_eq!(
            a.allocate(29999).unwrap_err().to_string(),
            "provided port is not in the valid range. The range of valid ports is 30000-30099"
        );
        a.allocate(30080).unwrap();
        assert_eq!(
            a.allocate(30080).unwrap_err().to_string(),
            "provided port is already allocated"
        );
        let mut got = std::collections::HashSet::new();
        for r in 0..99u128 {
            let p = a.allocate_next(r * 31).unwrap();
            assert!(got.insert(p));
            // Band is 16: the first 83 automatic picks stay above 30015.
            if r < 83 {
                assert!(p >= 30016, "{p}");
            }
        }
        assert_eq!(a.allocate_next(5), Err(AllocError::Full));
        assert!(a.release(30080));
        assert_eq!(a.allocate_next(77).unwrap(), 30080);
    }
}
