//! The node pod-CIDR set of kube-controller-manager's node IPAM (`cidrset.CidrSet`): one
//! cluster CIDR cut into equal node blocks, handed out round-robin.
//!
//! Behaviour and error texts follow Kubernetes, with two deliberate differences:
//! * IPv6 is not limited to 16 bits between the cluster and the node prefix (Kubernetes'
//!   limit comes from its uncompressed bitmap); a /32 cut into /64s works. The limit here is
//!   64 bits, so an index always fits a `u64` and `max` fits a `u128`.
//! * Memory follows the blocks in use, not `max`: single blocks live in a [`SparseBitmap`],
//!   and ranges of blocks (a service range, a whole cluster CIDR occupied at once) are kept
//!   as index intervals, so occupying 2^32 blocks is one map entry rather than 2^32 bits.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::alloc::bitmap::SparseBitmap;
use crate::net::{ClusterCidr, IpFamily, PodCidr};

/// Widest gap allowed between cluster and node prefix. Kubernetes allows 16 for IPv6 (and
/// no limit for IPv4, where 32 is the most there can be); 64 keeps every index and `max`
/// well inside what the sparse bitmap addresses (indices below 2^76).
const MAX_INDEX_BITS: u8 = 64;

/// Why a [`CidrSet`] could not be built or could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrSetError {
    /// The node prefix is more than 64 bits longer than the cluster prefix (Kubernetes'
    /// `ErrCIDRSetSubNetTooBig`, there raised above 16 bits and for IPv6 only).
    #[error("New CIDR set failed; the node CIDR size is too big")]
    SubNetTooBig,
    /// The node prefix is shorter than the cluster prefix: nodes would get more than the
    /// cluster has. Kubernetes rejects this when the node IPAM controller starts, with this
    /// text.
    #[error(
        "Controller: Invalid --cluster-cidr, mask size of cluster CIDR must be less than or equal to --node-cidr-mask-size configured for CIDR family"
    )]
    NodeMaskShorterThanCluster,
    /// The node prefix is longer than an address of the cluster CIDR's family. Kubernetes has
    /// no message of its own for this; the text is ours.
    #[error("invalid node CIDR mask size {node_prefix} for {family} cluster CIDR {cluster}")]
    NodeMaskTooLong {
        /// The requested node prefix length.
        node_prefix: u8,
        /// The family of the cluster CIDR.
        family: IpFamily,
        /// The cluster CIDR, masked.
        cluster: IpNet,
    },
    /// Every block is in use (`ErrCIDRRangeNoCIDRsRemaining`).
    #[error(
        "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range"
    )]
    Exhausted,
    /// The CIDR neither contains nor is contained in the cluster CIDR (this includes a CIDR
    /// of the other family).
    #[error("cidr {cidr} is out the range of cluster cidr {cluster}")]
    OutOfClusterRange {
        /// The CIDR given, masked.
        cidr: IpNet,
        /// The cluster CIDR, masked.
        cluster: IpNet,
    },
    /// An address maps to an index at or beyond `max`.
    #[error("CIDR: {ip}/{node_prefix} is out of the range of CIDR allocator")]
    OutOfAllocatorRange {
        /// The address, masked to the node prefix.
        ip: IpAddr,
        /// The node prefix length.
        node_prefix: u8,
    },
}

/// Figures for the metrics of A.5, all cumulative except `used` and `max`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CidrSetStats {
    /// Blocks in use now.
    pub used: u128,
    /// Blocks in the cluster CIDR.
    pub max: u128,
    /// Blocks turned from free to used, by `allocate_next` or `occupy` (Kubernetes'
    /// allocations counter).
    pub allocations: u128,
    /// Blocks turned from used to free (Kubernetes' releases counter).
    pub releases: u128,
}

/// One cluster CIDR and the node blocks cut from it.
#[derive(Clone, Debug)]
pub struct CidrSet {
    /// Masked, as Kubernetes parses it: block addresses are OR-ed into this.
    cluster: IpNet,
    node_prefix: u8,
    max: u128,
    next_candidate: u128,
    /// Blocks used one at a time. Never holds an index that lies inside `runs`, so the two
    /// counts can simply be added.
    bits: SparseBitmap,
    /// Ranges of blocks used at once, start → end (inclusive); disjoint and never adjacent.
    runs: BTreeMap<u128, u128>,
    used: u128,
    allocations: u128,
    releases: u128,
}

impl CidrSet {
    /// A set for `cluster` (host bits are cleared, as Go's parser does) cut into blocks of
    /// `node_prefix`.
    pub fn new(cluster: ClusterCidr, node_prefix: u8) -> Result<Self, CidrSetError> {
        let cluster = cluster.net().trunc();
        let family = IpFamily::of_net(&cluster);
        if node_prefix > family.bits() {
            return Err(CidrSetError::NodeMaskTooLong {
                node_prefix,
                family,
                cluster,
            });
        }
        if node_prefix < cluster.prefix_len() {
            return Err(CidrSetError::NodeMaskShorterThanCluster);
        }
        let diff = node_prefix - cluster.prefix_len();
        if diff > MAX_INDEX_BITS {
            return Err(CidrSetError::SubNetTooBig);
        }
        Ok(Self {
            cluster,
            node_prefix,
            max: 1u128 << diff,
            next_candidate: 0,
            bits: SparseBitmap::new(),
            runs: BTreeMap::new(),
            used: 0,
            allocations: 0,
            releases: 0,
        })
    }

    /// The cluster CIDR, masked.
    pub fn cluster(&self) -> ClusterCidr {
        ClusterCidr(self.cluster)
    }

    /// The metrics label Kubernetes uses for this set: the cluster CIDR's string.
    pub fn label(&self) -> String {
        self.cluster.to_string()
    }

    pub fn node_prefix(&self) -> u8 {
        self.node_prefix
    }

    /// Number of blocks, `2^(node − cluster)`.
    pub fn max(&self) -> u128 {
        self.max
    }

    /// Number of blocks in use.
    pub fn used(&self) -> u128 {
        self.used
    }

    /// Where the next round-robin scan starts.
    pub fn next_candidate(&self) -> u128 {
        self.next_candidate
    }

    pub fn stats(&self) -> CidrSetStats {
        CidrSetStats {
            used: self.used,
            max: self.max,
            allocations: self.allocations,
            releases: self.releases,
        }
    }

    /// Approximate heap bytes held for the blocks in use.
    pub fn heap_bytes(&self) -> usize {
        // A B-tree entry costs its key and value plus a share of node overhead; 2× is a
        // fair upper estimate for a figure that only has to show growth.
        self.bits.heap_bytes() + self.runs.len() * 2 * std::mem::size_of::<(u128, u128)>()
    }

    /// Takes the first free block at or after `next_candidate`, wrapping round.
    pub fn allocate_next(&mut self) -> Result<PodCidr, CidrSetError> {
        self.allocate_next_with_steps().map(|(cidr, _)| cidr)
    }

    /// Like [`allocate_next`](Self::allocate_next), also returning how many used blocks the
    /// scan stepped over (Kubernetes' allocation-tries histogram; 0 when the candidate was
    /// free).
    pub fn allocate_next_with_steps(&mut self) -> Result<(PodCidr, u128), CidrSetError> {
        if self.used >= self.max {
            return Err(CidrSetError::Exhausted);
        }
        let start = self.next_candidate;
        let found = match self.take_free(start, self.max - 1) {
            Some(i) => Some(i),
            None if start > 0 => self.take_free(0, start - 1),
            None => None,
        };
        // `used < max` promises a free block; if the books disagree, saying "full" is
        // the only answer that can't hand a block out twice.
        let index = found.ok_or(CidrSetError::Exhausted)?;
        self.used += 1;
        self.allocations += 1;
        self.next_candidate = (index + 1) % self.max;
        let steps = (index + self.max - start) % self.max;
        Ok((self.index_to_block(index), steps))
    }

    /// Marks every block `cidr` covers as used. Blocks already used stay as they are and
    /// are not counted again; `next_candidate` does not move.
    pub fn occupy(&mut self, cidr: &IpNet) -> Result<(), CidrSetError> {
        let (begin, end) = self.index_range(cidr)?;
        self.mark(begin, end);
        Ok(())
    }

    /// Marks every block `cidr` covers as free. Blocks already free stay as they are;
    /// `next_candidate` does not move, so a released block waits for the scan to wrap.
    pub fn release(&mut self, cidr: &IpNet) -> Result<(), CidrSetError> {
        let (begin, end) = self.index_range(cidr)?;
        self.unmark(begin, end);
        Ok(())
    }

    /// Whether every block `cidr` covers is in use; false for a CIDR outside the set.
    pub fn is_allocated(&self, cidr: &IpNet) -> bool {
        match self.index_range(cidr) {
            Ok((begin, end)) if begin == end => self.is_used(begin),
            Ok((begin, end)) => {
                let in_runs: u128 = self
                    .runs_touching(begin, end)
                    .iter()
                    .map(|&(s, t)| overlap(s, t, begin, end))
                    .sum();
                in_runs + self.bits_in(begin, end).len() as u128 == end - begin + 1
            }
            Err(_) => false,
        }
    }

    /// Puts `block` back as if the `allocate_next` that returned it had not happened,
    /// cursor included. For rolling back a multi-family allocation that failed halfway.
    pub(crate) fn undo_allocate(&mut self, block: &PodCidr, next_candidate: u128) {
        if self.release(&block.net()).is_ok() {
            self.next_candidate = next_candidate % self.max;
        }
    }

    /// Index range `cidr` covers (A.5's `getBeginningAndEndIndices`).
    fn index_range(&self, cidr: &IpNet) -> Result<(u128, u128), CidrSetError> {
        let cidr = cidr.trunc();
        let overlaps =
            self.cluster.contains(&cidr.network()) || cidr.contains(&self.cluster.network());
        if !overlaps {
            return Err(CidrSetError::OutOfClusterRange {
                cidr,
                cluster: self.cluster,
            });
        }
        if cidr.prefix_len() <= self.cluster.prefix_len() {
            return Ok((0, self.max - 1));
        }
        let begin = self.index_of(cidr.network())?;
        let end = self.index_of(cidr.broadcast())?;
        Ok((begin, end))
    }

    /// Index of the block holding `ip` (`getIndexForIP`, after masking to the node prefix).
    fn index_of(&self, ip: IpAddr) -> Result<u128, CidrSetError> {
        let bits = IpFamily::of_net(&self.cluster).bits();
        let host_bits = u32::from(bits - self.node_prefix);
        let masked = mask_to(ip, self.node_prefix);
        let out_of_range = CidrSetError::OutOfAllocatorRange {
            ip: masked,
            node_prefix: self.node_prefix,
        };
        if IpFamily::of(&ip) != IpFamily::of_net(&self.cluster) {
            return Err(out_of_range);
        }
        let index = (to_u128(masked) ^ to_u128(self.cluster.network()))
            .checked_shr(host_bits)
            .unwrap_or(0);
        if index >= self.max {
            return Err(out_of_range);
        }
        Ok(index)
    }

    /// The block at `index`: the index placed between the cluster and node prefix bits.
    fn index_to_block(&self, index: u128) -> PodCidr {
        let family = IpFamily::of_net(&self.cluster);
        let host_bits = u32::from(family.bits() - self.node_prefix);
        // A shift by the full width only happens for a /0 node prefix, whose sole index is 0.
        let offset = index.checked_shl(host_bits).unwrap_or(0);
        let addr = from_u128(family, to_u128(self.cluster.network()) | offset);
        PodCidr(net_of(addr, self.node_prefix))
    }

    fn is_used(&self, i: u128) -> bool {
        self.bits.get(i) || self.run_containing(i).is_some()
    }

    /// End of the run holding `i`, if any.
    fn run_containing(&self, i: u128) -> Option<(u128, u128)> {
        self.runs
            .range(..=i)
            .next_back()
            .filter(|&(_, &end)| end >= i)
            .map(|(&s, &e)| (s, e))
    }

    /// Runs that overlap `begin..=end` or sit right next to it, highest first.
    fn runs_touching(&self, begin: u128, end: u128) -> Vec<(u128, u128)> {
        let low = begin.saturating_sub(1);
        self.runs
            .range(..=end.saturating_add(1))
            .rev()
            .take_while(|&(_, &e)| e >= low)
            .map(|(&s, &e)| (s, e))
            .collect()
    }

    /// Set bits in `begin..=end`, found the cheaper way: probing each index when the range
    /// is small, walking the set bits when few are set.
    fn bits_in(&self, begin: u128, end: u128) -> Vec<u128> {
        if end - begin < self.bits.count() {
            (begin..=end).filter(|&i| self.bits.get(i)).collect()
        } else {
            self.bits
                .iter()
                .skip_while(|&i| i < begin)
                .take_while(|&i| i <= end)
                .collect()
        }
    }

    /// First free index in `from..=to`, marked in the bitmap. `take_first_clear` keeps the
    /// common case to one hash lookup; a hit inside a run is undone and the scan resumes
    /// past the run.
    fn take_free(&mut self, mut from: u128, to: u128) -> Option<u128> {
        while from <= to {
            let i = self.bits.take_first_clear(from, to)?;
            match self.run_containing(i) {
                None => return Some(i),
                Some((_, end)) => {
                    self.bits.clear(i);
                    from = end + 1;
                }
            }
        }
        None
    }

    fn mark(&mut self, begin: u128, end: u128) {
        if begin == end {
            if self.run_containing(begin).is_none() && self.bits.set(begin) {
                self.used += 1;
                self.allocations += 1;
            }
            return;
        }
        // A range becomes one run: bits inside it fold into the run, and touching runs merge
        // so a scan can jump over the whole used stretch at once.
        let absorbed = self.bits_in(begin, end);
        for &i in &absorbed {
            self.bits.clear(i);
        }
        let (mut start, mut stop, mut already) = (begin, end, absorbed.len() as u128);
        for (s, t) in self.runs_touching(begin, end) {
            self.runs.remove(&s);
            already += overlap(s, t, begin, end);
            start = start.min(s);
            stop = stop.max(t);
        }
        self.runs.insert(start, stop);
        // `already` never exceeds the range; saturating keeps a broken invariant from
        // turning into a panic.
        let newly = (end - begin + 1).saturating_sub(already);
        self.used += newly;
        self.allocations += newly;
    }

    fn unmark(&mut self, begin: u128, end: u128) {
        let mut freed = 0u128;
        if begin == end {
            if self.bits.clear(begin) {
                freed = 1;
            }
        } else {
            for i in self.bits_in(begin, end) {
                self.bits.clear(i);
                freed += 1;
            }
        }
        for (s, t) in self.runs_touching(begin, end) {
            let n = overlap(s, t, begin, end);
            if n == 0 {
                continue;
            }
            self.runs.remove(&s);
            if s < begin {
                self.runs.insert(s, begin - 1);
            }
            if t > end {
                self.runs.insert(end + 1, t);
            }
            freed += n;
        }
        self.used = self.used.saturating_sub(freed);
        self.releases += freed;
    }
}

/// Number of indices `s..=t` and `b..=e` share.
fn overlap(s: u128, t: u128, b: u128, e: u128) -> u128 {
    let (lo, hi) = (s.max(b), t.min(e));
    if lo > hi { 0 } else { hi - lo + 1 }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(family: IpFamily, v: u128) -> IpAddr {
    match family {
        // Callers only pass values below 2^32 for IPv4: the cluster address with an index
        // shifted inside its host bits.
        IpFamily::IPv4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpFamily::IPv6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// `ip` with the bits past `prefix` cleared.
fn mask_to(ip: IpAddr, prefix: u8) -> IpAddr {
    net_of(ip, prefix).network()
}

/// `ip/prefix`. Every prefix reaching here was checked against the family in
/// [`CidrSet::new`]; the host-route fallback only keeps this total.
fn net_of(ip: IpAddr, prefix: u8) -> IpNet {
    IpNet::new(ip, prefix).unwrap_or_else(|_| IpNet::from(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::parse_cidr_sloppy;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    fn net(s: &str) -> IpNet {
        parse_cidr_sloppy(s).unwrap_or_else(|| panic!("bad test CIDR {s}"))
    }

    fn set(cluster: &str, node_prefix: u8) -> CidrSet {
        CidrSet::new(ClusterCidr(net(cluster)), node_prefix).unwrap()
    }

    fn alloc(s: &mut CidrSet) -> String {
        s.allocate_next().unwrap().to_string()
    }

    /// The used indices, from the public API, for small sets.
    fn used_indices(s: &CidrSet) -> Vec<u128> {
        (0..s.max()).filter(|&i| s.is_used(i)).collect()
    }

    const EXHAUSTED: &str = "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range";

    #[test]
    fn construction() {
        let cases: &[(&str, u8, Result<u128, &str>)] = &[
            ("10.0.0.0/8", 24, Ok(1 << 16)),
            ("10.0.0.0/16", 24, Ok(256)),
            ("127.123.234.0/30", 30, Ok(1)),
            ("127.0.0.0/8", 32, Ok(1 << 24)),
            ("0.0.0.0/0", 32, Ok(1 << 32)),
            ("0.0.0.0/0", 0, Ok(1)),
            ("fd00::/48", 64, Ok(1 << 16)),
            // Kubernetes refuses this one (more than 16 bits for IPv6); we don't.
            ("beef:1234::/32", 49, Ok(1 << 17)),
            ("2001:db8::/32", 64, Ok(1 << 32)),
            ("::/0", 64, Ok(1 << 64)),
            ("::/0", 0, Ok(1)),
            (
                "::/0",
                65,
                Err("New CIDR set failed; the node CIDR size is too big"),
            ),
            (
                "fd00::/48",
                128,
                Err("New CIDR set failed; the node CIDR size is too big"),
            ),
            ("fd00::/64", 128, Ok(1 << 64)),
            (
                "10.0.0.0/26",
                24,
                Err(
                    "Controller: Invalid --cluster-cidr, mask size of cluster CIDR must be less than or equal to --node-cidr-mask-size configured for CIDR family",
                ),
            ),
            (
                "10.0.0.0/8",
                33,
                Err("invalid node CIDR mask size 33 for IPv4 cluster CIDR 10.0.0.0/8"),
            ),
            (
                "fd00::/48",
                129,
                Err("invalid node CIDR mask size 129 for IPv6 cluster CIDR fd00::/48"),
            ),
        ];
        for (cluster, prefix, want) in cases {
            let got = CidrSet::new(ClusterCidr(net(cluster)), *prefix)
                .map(|s| s.max())
                .map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_string), "{cluster} /{prefix}");
        }
    }

    #[test]
    fn cluster_host_bits_are_masked() {
        // ClusterCidr may carry host bits if built by hand; Kubernetes' parser masks them.
        let raw = IpNet::new("192.168.5.219".parse().unwrap(), 28).unwrap();
        let s = CidrSet::new(ClusterCidr(raw), 32).unwrap();
        assert_eq!(s.cluster().to_string(), "192.168.5.208/28");
        assert_eq!(s.label(), "192.168.5.208/28");
    }

    #[test]
    fn index_to_block() {
        // The cases of Kubernetes' TestIndexToCIDRBlock.
        let cases: &[(&str, u8, u128, &str)] = &[
            ("127.123.3.0/16", 24, 0, "127.123.0.0/24"),
            ("127.123.0.0/16", 24, 15, "127.123.15.0/24"),
            ("192.168.5.219/28", 32, 5, "192.168.5.213/32"),
            ("2001:0db8:1234:3::/48", 64, 0, "2001:db8:1234::/64"),
            ("2001:0db8:1234::/48", 64, 15, "2001:db8:1234:f::/64"),
            (
                "2001:0db8:85a3::8a2e:0370:7334/50",
                63,
                6425,
                "2001:db8:85a3:3232::/63",
            ),
            ("2001:0db8::/32", 48, 0, "2001:db8::/48"),
            ("2001:0db8::/32", 48, 15, "2001:db8:f::/48"),
            (
                "2001:0db8:85a3::8a2e:0370:7334/32",
                48,
                6425,
                "2001:db8:1919::/48",
            ),
            ("2001:0db8:1234:ff00::/56", 72, 0, "2001:db8:1234:ff00::/72"),
            (
                "2001:0db8:1234:ff00::/56",
                72,
                15,
                "2001:db8:1234:ff00:f00::/72",
            ),
            (
                "2001:0db8:1234:ff00::0370:7334/56",
                72,
                6425,
                "2001:db8:1234:ff19:1900::/72",
            ),
            (
                "2001:0db8:1234:0:1234::/80",
                96,
                0,
                "2001:db8:1234:0:1234::/96",
            ),
            (
                "2001:0db8:1234:0:1234::/80",
                96,
                15,
                "2001:db8:1234:0:1234:f::/96",
            ),
            (
                "2001:0db8:1234:ff00::0370:7334/80",
                96,
                6425,
                "2001:db8:1234:ff00:0:1919::/96",
            ),
            // Ours: across the 64-bit halves, and the largest index of a /32 → /64.
            ("fd00::/56", 72, 0xffff, "fd00:0:0:ff:ff00::/72"),
            (
                "2001:db8::/32",
                64,
                (1 << 32) - 1,
                "2001:db8:ffff:ffff::/64",
            ),
            ("::/0", 0, 0, "::/0"),
            ("0.0.0.0/0", 0, 0, "0.0.0.0/0"),
            ("fd00::/120", 128, 255, "fd00::ff/128"),
        ];
        for (cluster, prefix, index, want) in cases {
            let s = set(cluster, *prefix);
            assert_eq!(
                s.index_to_block(*index).to_string(),
                *want,
                "{cluster} /{prefix} #{index}"
            );
            // The way back.
            assert_eq!(s.index_of(net(want).addr()), Ok(*index), "{want}");
        }
    }

    #[test]
    fn index_of_cidr() {
        // The cases of Kubernetes' TestGetBitforCIDR.
        let cases: &[(&str, u8, &str, Result<u128, &str>)] = &[
            ("127.0.0.0/8", 16, "127.0.0.0/16", Ok(0)),
            ("be00::/8", 16, "be00::/16", Ok(0)),
            ("127.0.0.0/8", 16, "127.123.0.0/16", Ok(123)),
            ("be00::/8", 16, "beef::/16", Ok(0xef)),
            ("127.0.0.0/8", 16, "127.168.0.0/16", Ok(168)),
            ("be00::/8", 16, "be68::/16", Ok(0x68)),
            ("127.0.0.0/8", 16, "127.224.0.0/16", Ok(224)),
            ("be00::/8", 16, "be24::/16", Ok(0x24)),
            ("192.168.0.0/16", 24, "192.168.12.0/24", Ok(12)),
            ("beef::/16", 24, "beef:1200::/24", Ok(0x12)),
            ("192.168.0.0/16", 24, "192.168.151.0/24", Ok(151)),
            ("beef::/16", 24, "beef:9700::/24", Ok(0x97)),
            (
                "192.168.0.0/16",
                24,
                "127.168.224.0/24",
                Err("CIDR: 127.168.224.0/24 is out of the range of CIDR allocator"),
            ),
            (
                "beef::/16",
                24,
                "2001:db00::/24",
                Err("CIDR: 2001:db00::/24 is out of the range of CIDR allocator"),
            ),
            // The address is masked to the node prefix before it is reported.
            (
                "192.168.0.0/16",
                24,
                "10.1.2.3/32",
                Err("CIDR: 10.1.2.0/24 is out of the range of CIDR allocator"),
            ),
            (
                "192.168.0.0/16",
                24,
                "fd00::/64",
                Err("CIDR: fd00::/24 is out of the range of CIDR allocator"),
            ),
        ];
        for (cluster, prefix, cidr, want) in cases {
            let s = set(cluster, *prefix);
            let got = s.index_of(net(cidr).addr()).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_string), "{cluster} {cidr}");
        }
    }

    #[test]
    fn round_robin_and_wrap() {
        let mut s = set("10.0.0.0/22", 24);
        assert_eq!(alloc(&mut s), "10.0.0.0/24");
        assert_eq!(alloc(&mut s), "10.0.1.0/24");
        assert_eq!(alloc(&mut s), "10.0.2.0/24");
        // A released block is not handed out again until the scan wraps round to it.
        s.release(&net("10.0.0.0/24")).unwrap();
        assert_eq!(s.next_candidate(), 3);
        assert_eq!(alloc(&mut s), "10.0.3.0/24");
        assert_eq!(s.next_candidate(), 0);
        assert_eq!(alloc(&mut s), "10.0.0.0/24");
        assert_eq!(s.allocate_next().unwrap_err().to_string(), EXHAUSTED);
        // Freed in the middle: the scan starts at the cursor (1) and finds 2 first only
        // because 1 is taken.
        s.release(&net("10.0.2.0/24")).unwrap();
        s.release(&net("10.0.3.0/24")).unwrap();
        let (block, steps) = s.allocate_next_with_steps().unwrap();
        assert_eq!((block.to_string(), steps), ("10.0.2.0/24".into(), 1));
        assert_eq!(s.next_candidate(), 3);
        assert_eq!(alloc(&mut s), "10.0.3.0/24");
        assert_eq!(s.used(), 4);
    }

    #[test]
    fn ipv4_slash16_into_slash24_exhausts_at_256() {
        let mut s = set("10.0.0.0/16", 24);
        let first: Vec<String> = (0..256).map(|_| alloc(&mut s)).collect();
        assert_eq!(first[0], "10.0.0.0/24");
        assert_eq!(first[255], "10.0.255.0/24");
        assert_eq!(s.used(), 256);
        let err = s.allocate_next().unwrap_err();
        assert_eq!(err, CidrSetError::Exhausted);
        assert_eq!(err.to_string(), EXHAUSTED);
        // Release them all and allocate again: the same blocks, in the same order
        // (Kubernetes' TestCIDRSet_RandomishAllocation).
        for b in &first {
            s.release(&net(b)).unwrap();
        }
        assert_eq!(s.used(), 0);
        let again: Vec<String> = (0..256).map(|_| alloc(&mut s)).collect();
        assert_eq!(first, again);
        assert!(s.allocate_next().is_err());
    }

    #[test]
    fn allocation_skips_occupied() {
        // Kubernetes' TestCIDRSet_AllocationOccupied, both families.
        for cluster in ["127.123.234.0/16", "beef:1234::/16"] {
            let mut s = set(cluster, 24);
            let all: Vec<String> = (0..256).map(|_| alloc(&mut s)).collect();
            assert!(s.allocate_next().is_err());
            for b in &all {
                s.release(&net(b)).unwrap();
            }
            for b in &all[128..] {
                s.occupy(&net(b)).unwrap();
            }
            s.occupy(&net(&all[128])).unwrap();
            assert_eq!(s.used(), 128);
            let again: Vec<String> = (0..128).map(|_| alloc(&mut s)).collect();
            assert_eq!(again, all[..128]);
            assert!(s.allocate_next().is_err(), "{cluster}");
        }
    }

    #[test]
    fn single_block_cluster() {
        // Kubernetes' TestCIDRSetFullyAllocated.
        for (cluster, want) in [
            ("127.123.234.0/30", "127.123.234.0/30"),
            ("beef:1234::/30", "beef:1234::/30"),
        ] {
            let mut s = set(cluster, 30);
            assert_eq!(s.max(), 1);
            assert_eq!(alloc(&mut s), want);
            assert_eq!(s.allocate_next().unwrap_err().to_string(), EXHAUSTED);
            s.release(&net(want)).unwrap();
            assert_eq!(alloc(&mut s), want);
            assert!(s.allocate_next().is_err());
        }
    }

    #[test]
    fn first_allocations() {
        // Kubernetes' TestCIDRSetv6 (less the case it refuses and we accept).
        for (cluster, prefix, a, b) in [
            ("127.0.0.0/8", 32, "127.0.0.0/32", "127.0.0.1/32"),
            (
                "2001:beef:1234:369b::/60",
                64,
                "2001:beef:1234:3690::/64",
                "2001:beef:1234:3691::/64",
            ),
            (
                "fd00:10:244::/56",
                64,
                "fd00:10:244::/64",
                "fd00:10:244:1::/64",
            ),
        ] {
            let mut s = set(cluster, prefix);
            assert_eq!(alloc(&mut s), a);
            assert_eq!(alloc(&mut s), b);
        }
    }

    #[test]
    fn occupy_ranges() {
        // Kubernetes' TestOccupy: (cluster, node prefix, occupied, first, last index).
        let cases: &[(&str, u8, &str, u128, u128)] = &[
            ("127.0.0.0/8", 16, "127.0.0.0/8", 0, 255),
            ("2001:beef:1200::/40", 48, "2001:beef:1200::/40", 0, 255),
            ("127.0.0.0/8", 16, "127.0.0.0/2", 0, 255),
            ("2001:beef:1200::/40", 48, "2001:beef:1234::/34", 0, 255),
            ("127.0.0.0/8", 16, "127.0.0.0/16", 0, 0),
            ("2001:beef:1200::/40", 48, "2001:beef:1200::/48", 0, 0),
            ("127.0.0.0/8", 32, "127.0.0.0/16", 0, 65535),
            ("2001:beef:1200::/48", 64, "2001:beef:1200::/48", 0, 65535),
            ("127.0.0.0/7", 16, "127.0.0.0/15", 256, 257),
            ("2001:beef:7f00::/39", 48, "2001:beef:7f00::/47", 256, 257),
            ("127.0.0.0/7", 15, "127.0.0.0/15", 128, 128),
            ("2001:beef:7f00::/39", 47, "2001:beef:7f00::/47", 128, 128),
            ("127.0.0.0/7", 18, "127.0.0.0/15", 1024, 1031),
            ("2001:beef:7f00::/39", 50, "2001:beef:7f00::/47", 1024, 1031),
            // Smaller than a block: the block holding it.
            ("10.0.0.0/16", 24, "10.0.7.128/25", 7, 7),
            ("10.0.0.0/16", 24, "10.0.7.9/32", 7, 7),
        ];
        for (cluster, prefix, cidr, first, last) in cases {
            let mut s = set(cluster, *prefix);
            assert_eq!(s.index_range(&net(cidr)), Ok((*first, *last)), "{cidr}");
            s.occupy(&net(cidr)).unwrap();
            assert_eq!(s.used(), last - first + 1, "{cluster} {cidr}");
            assert!(s.is_allocated(&net(cidr)));
            for i in [*first, *last] {
                assert!(s.is_used(i));
            }
            if *first > 0 {
                assert!(!s.is_used(first - 1));
            }
            if *last + 1 < s.max() {
                assert!(!s.is_used(last + 1));
            }
        }
    }

    #[test]
    fn double_occupy_release() {
        // Kubernetes' TestDoubleOccupyRelease: the count after each step.
        let mut s = set("10.42.0.0/16", 24);
        let steps: &[(&str, bool, u128)] = &[
            ("10.42.5.0/24", true, 1),
            ("10.42.9.0/24", true, 2),
            ("10.42.8.0/22", true, 5),
            ("10.42.9.0/24", true, 5),
            ("10.42.9.0/24", false, 4),
            ("10.42.9.0/24", false, 4),
            ("10.42.4.0/22", false, 3),
        ];
        for (cidr, occupy, want) in steps {
            if *occupy {
                s.occupy(&net(cidr)).unwrap();
            } else {
                s.release(&net(cidr)).unwrap();
            }
            assert_eq!(s.used(), *want, "after {cidr}");
        }
        assert_eq!(used_indices(&s), vec![8, 10, 11]);
        for _ in 0..256 - 3 {
            s.allocate_next().unwrap();
        }
        assert!(s.allocate_next().is_err());
    }

    #[test]
    fn counters() {
        // Kubernetes' TestCidrSetMetrics and ...Histogram, as our stats.
        let mut s = set("10.0.0.0/16", 24);
        for _ in 0..256 {
            s.allocate_next().unwrap();
        }
        s.release(&net("10.0.0.0/16")).unwrap();
        s.occupy(&net("10.0.0.0/16")).unwrap();
        let want = CidrSetStats {
            used: 256,
            max: 256,
            allocations: 512,
            releases: 256,
        };
        assert_eq!(s.stats(), want);

        let mut s = set("10.0.0.0/16", 24);
        s.occupy(&net("10.0.0.0/17")).unwrap();
        assert_eq!(s.next_candidate(), 0);
        let (block, steps) = s.allocate_next_with_steps().unwrap();
        assert_eq!((block.to_string(), steps), ("10.0.128.0/24".into(), 128));
        assert_eq!(s.stats().allocations, 129);
    }

    #[test]
    fn out_of_range_errors() {
        let mut s = set("10.0.0.0/16", 24);
        let cases = [
            (
                "10.1.0.0/24",
                "cidr 10.1.0.0/24 is out the range of cluster cidr 10.0.0.0/16",
            ),
            (
                "192.168.0.0/16",
                "cidr 192.168.0.0/16 is out the range of cluster cidr 10.0.0.0/16",
            ),
            (
                "fd00::/64",
                "cidr fd00::/64 is out the range of cluster cidr 10.0.0.0/16",
            ),
            (
                "::/0",
                "cidr ::/0 is out the range of cluster cidr 10.0.0.0/16",
            ),
        ];
        for (cidr, want) in cases {
            assert_eq!(s.occupy(&net(cidr)).unwrap_err().to_string(), want);
            assert_eq!(s.release(&net(cidr)).unwrap_err().to_string(), want);
            assert!(!s.is_allocated(&net(cidr)));
        }
        let mut v6 = set("fd00:10:244::/56", 64);
        assert_eq!(
            v6.occupy(&net("10.0.0.0/24")).unwrap_err().to_string(),
            "cidr 10.0.0.0/24 is out the range of cluster cidr fd00:10:244::/56"
        );
        // An unmasked CIDR is reported masked, as Go's parser would have left it.
        let raw = IpNet::new("10.1.2.3".parse().unwrap(), 24).unwrap();
        assert_eq!(
            s.occupy(&raw).unwrap_err().to_string(),
            "cidr 10.1.2.0/24 is out the range of cluster cidr 10.0.0.0/16"
        );
        assert_eq!(s.used(), 0);
        assert_eq!(v6.used(), 0);
    }

    #[test]
    fn occupy_whole_range_is_cheap() {
        // 2^32 blocks, occupied by the cluster CIDR itself and by a supernet, then released:
        // none of it may walk the indices.
        let start = Instant::now();
        for whole in ["2001:db8::/32", "2001::/16", "::/0"] {
            let mut s = set("2001:db8::/32", 64);
            for _ in 0..1000 {
                s.allocate_next().unwrap();
            }
            s.occupy(&net(whole)).unwrap();
            assert_eq!(s.used(), 1 << 32);
            assert!(s.is_allocated(&net("2001:db8::/32")));
            assert_eq!(s.allocate_next(), Err(CidrSetError::Exhausted));
            assert!(s.heap_bytes() < 1024, "{}", s.heap_bytes());
            // Occupying again counts nothing.
            s.occupy(&net(whole)).unwrap();
            assert_eq!(s.stats().allocations, 1 << 32);

            // A hole in the middle is found from the cursor, then the set is full again.
            s.release(&net("2001:db8:1234:5678::/64")).unwrap();
            assert_eq!(s.used(), (1 << 32) - 1);
            assert_eq!(alloc(&mut s), "2001:db8:1234:5678::/64");
            assert!(s.allocate_next().is_err());

            s.release(&net(whole)).unwrap();
            assert_eq!(s.used(), 0);
            assert_eq!(s.heap_bytes(), 0);
            assert_eq!(s.stats().releases, (1 << 32) + 1);
        }
        let mut v4 = set("0.0.0.0/0", 32);
        v4.occupy(&net("0.0.0.0/0")).unwrap();
        assert_eq!(v4.used(), 1 << 32);
        v4.release(&net("255.255.255.255/32")).unwrap();
        assert_eq!(alloc(&mut v4), "255.255.255.255/32");
        let mut huge = set("::/0", 64);
        huge.occupy(&net("::/0")).unwrap();
        assert_eq!(huge.used(), 1 << 64);
        assert!(huge.allocate_next().is_err());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn ranges_and_single_blocks_mix() {
        let mut s = set("10.0.0.0/16", 24);
        for cidr in ["10.0.3.0/24", "10.0.5.0/24", "10.0.9.0/24"] {
            s.occupy(&net(cidr)).unwrap();
        }
        // A range swallowing two single blocks counts only what was free.
        s.occupy(&net("10.0.0.0/22")).unwrap();
        s.occupy(&net("10.0.4.0/22")).unwrap();
        assert_eq!(s.used(), 9);
        assert_eq!(s.runs.len(), 1, "adjacent ranges merge: {:?}", s.runs);
        assert_eq!(s.bits.count(), 1);
        assert_eq!(alloc(&mut s), "10.0.8.0/24");
        assert_eq!(alloc(&mut s), "10.0.10.0/24");
        // Punch single holes in the range; they are found after the cursor wraps.
        s.release(&net("10.0.2.0/24")).unwrap();
        s.release(&net("10.0.6.0/24")).unwrap();
        s.release(&net("10.0.6.0/24")).unwrap();
        assert_eq!(s.used(), 9);
        for _ in 11..256 {
            s.allocate_next().unwrap();
        }
        assert_eq!(alloc(&mut s), "10.0.2.0/24");
        assert_eq!(alloc(&mut s), "10.0.6.0/24");
        assert!(s.allocate_next().is_err());
        // Release a range that covers parts of runs and single bits.
        s.release(&net("10.0.4.0/22")).unwrap();
        assert_eq!(s.used(), 252);
        assert!(!s.is_allocated(&net("10.0.0.0/21")));
        assert!(s.is_allocated(&net("10.0.0.0/22")));
        assert!(!s.is_allocated(&net("10.0.4.0/24")));
    }

    #[test]
    fn ipv6_slash56_into_slash64() {
        let mut s = set("fd00:10:244::/56", 64);
        assert_eq!(s.max(), 256);
        let all: Vec<String> = (0..256).map(|_| alloc(&mut s)).collect();
        assert_eq!(all[0], "fd00:10:244::/64");
        assert_eq!(all[1], "fd00:10:244:1::/64");
        assert_eq!(all[255], "fd00:10:244:ff::/64");
        assert_eq!(s.allocate_next().unwrap_err().to_string(), EXHAUSTED);
    }

    #[test]
    fn ipv6_slash32_into_slash64_is_fast_and_small() {
        let mut s = set("2001:db8::/32", 64);
        assert_eq!(s.max(), 1 << 32);
        let start = Instant::now();
        let mut last = String::new();
        for _ in 0..20_000 {
            last = alloc(&mut s);
        }
        let took = start.elapsed();
        assert_eq!(last, "2001:db8:0:4e1f::/64");
        assert_eq!(s.used(), 20_000);
        assert_eq!(s.bits.count(), 20_000);
        // 20k bits in 4096-bit blocks: a few KiB, nowhere near the 512 MiB of 2^32 bits.
        assert!(s.heap_bytes() < 64 * 1024, "{}", s.heap_bytes());
        assert!(took < Duration::from_millis(500), "{took:?}");

        // Used blocks ahead of the cursor are jumped, not walked.
        let mut s = set("2001:db8::/32", 64);
        s.occupy(&net("2001:db8::/33")).unwrap();
        for i in 0..10_000u32 {
            let b = s.index_to_block(u128::from(i) + (1 << 31) + 1);
            s.occupy(&b.net()).unwrap();
        }
        let start = Instant::now();
        assert_eq!(alloc(&mut s), "2001:db8:8000::/64");
        assert_eq!(alloc(&mut s), "2001:db8:8000:2711::/64");
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn undo_allocate_restores_cursor() {
        let mut s = set("10.0.0.0/30", 32);
        s.allocate_next().unwrap();
        let before = s.next_candidate();
        let b = s.allocate_next().unwrap();
        s.undo_allocate(&b, before);
        assert_eq!((s.used(), s.next_candidate()), (1, 1));
        assert_eq!(s.allocate_next().unwrap(), b);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Allocate,
        Occupy(u128, u8),
        Release(u128, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Allocate),
            2 => (0u128..64, 0u8..=3).prop_map(|(i, w)| Op::Occupy(i, w)),
            3 => (0u128..64, 0u8..=3).prop_map(|(i, w)| Op::Release(i, w)),
        ]
    }

    proptest! {
        /// Against a plain model: the scan from the cursor, a set of used indices.
        #[test]
        fn matches_a_model(ops in prop::collection::vec(op(), 0..300)) {
            // 64 blocks of /30 in a /24; op widths 0..=3 cover 1, 2, 4 and 8 blocks.
            let mut s = set("10.9.8.0/24", 30);
            let mut used = BTreeSet::new();
            let mut next = 0u128;
            let max = 64u128;
            for op in ops {
                match op {
                    Op::Allocate => {
                        let got = s.allocate_next();
                        let want = (0..max).map(|k| (next + k) % max).find(|i| !used.contains(i));
                        match want {
                            None => prop_assert_eq!(got, Err(CidrSetError::Exhausted)),
                            Some(i) => {
                                let block = got.unwrap();
                                prop_assert_eq!(block, s.index_to_block(i));
                                prop_assert!(used.insert(i), "handed out twice: {}", i);
                                next = (i + 1) % max;
                            }
                        }
                    }
                    Op::Occupy(i, w) | Op::Release(i, w) => {
                        let width = 1u128 << w;
                        let first = i / width * width;
                        let cidr = IpNet::new(
                            s.index_to_block(first).net().addr(),
                            30 - w,
                        ).unwrap();
                        if matches!(op, Op::Occupy(..)) {
                            s.occupy(&cidr).unwrap();
                            used.extend(first..first + width);
                        } else {
                            s.release(&cidr).unwrap();
                            for k in first..first + width {
                                used.remove(&k);
                            }
                        }
                    }
                }
                prop_assert_eq!(s.used(), used.len() as u128);
                prop_assert_eq!(s.next_candidate(), next);
                prop_assert_eq!(used_indices(&s), used.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(s.stats().allocations - s.stats().releases, s.used());
                // The internal invariant: no single bit inside a run, runs apart.
                for i in s.bits.iter() {
                    prop_assert!(s.run_containing(i).is_none());
                }
                let runs: Vec<_> = s.runs.iter().map(|(&a, &b)| (a, b)).collect();
                for w in runs.windows(2) {
                    prop_assert!(w[0].1 + 1 < w[1].0, "{:?}", runs);
                }
            }
        }
    }
}
