//! The range allocator of kube-controller-manager's node IPAM: one [`CidrSet`] per
//! `--cluster-cidr`, in flag order, so `node.spec.podCIDRs[i]` always comes from set `i`.
//!
//! This is the bookkeeping only; reading nodes, patching `spec.podCIDRs` and recording
//! events belong to the controller that drives it. Behaviour and texts follow Kubernetes,
//! except that a node allocation that fails in a later family gives back what it took from
//! the earlier ones (Kubernetes leaks those blocks until the controller restarts).

use ipnet::IpNet;

use crate::alloc::cidrset::{CidrSet, CidrSetError, CidrSetStats};
use crate::net::{ClusterCidr, PodCidr, ServiceCidr, parse_cidr_sloppy};

/// What went wrong in the range allocator. Texts are Kubernetes' own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeIpamError {
    /// No cluster CIDR was configured.
    #[error("Controller: Must specify --cluster-cidr if --allocate-node-cidrs is set")]
    NoClusterCidrs,
    /// The set for cluster CIDR `index` could not be built; Kubernetes returns the cidrset
    /// error as it is.
    #[error("{source}")]
    NewCidrSet {
        /// Position of the cluster CIDR in `--cluster-cidr`.
        index: usize,
        /// Why the set was refused.
        source: CidrSetError,
    },
    /// A service range overlaps a cluster CIDR but could not be occupied in its set.
    /// Kubernetes only logs this ("Error filtering out service cidr out cluster cidr").
    #[error(
        "Error filtering out service cidr out cluster cidr: CIDR {cluster}, index {index}, serviceCIDR {service}: {source}"
    )]
    ServiceRange {
        /// The service range.
        service: IpNet,
        /// The cluster CIDR it overlaps.
        cluster: IpNet,
        /// Position of that cluster CIDR.
        index: usize,
        /// Why the occupation failed.
        source: CidrSetError,
    },
    /// An entry of a node's podCIDRs does not parse. Kubernetes names `spec.podCIDR` (which
    /// the API server keeps equal to `podCIDRs[0]`) rather than the entry at fault.
    #[error("failed to parse node {node}, CIDR {pod_cidr}")]
    ParseNodeCidr {
        /// The node's name.
        node: String,
        /// `spec.podCIDR`, i.e. `podCIDRs[0]`.
        pod_cidr: String,
        /// Position of the entry that failed.
        index: usize,
    },
    /// A node has a podCIDR at a position with no cluster CIDR (the cluster went from
    /// dual-stack to single-stack).
    #[error(
        "node:{node} has an allocated cidr: {cidr} at index:{index} that does not exist in cluster cidrs configuration"
    )]
    IndexBeyondClusterCidrs {
        /// The node's name.
        node: String,
        /// The entry, as written on the node.
        cidr: String,
        /// Its position.
        index: usize,
    },
    /// A node's podCIDR could not be occupied in its set (out of range, wrong family).
    #[error("failed to mark cidr[{cidr}] at idx [{index}] as occupied for node: {node}: {source}")]
    Occupy {
        /// The entry, parsed and masked.
        cidr: IpNet,
        /// Its position.
        index: usize,
        /// The node's name.
        node: String,
        /// Why the set refused it.
        source: CidrSetError,
    },
    /// Set `index` had no block left for a new node. The controller records a
    /// `CIDRNotAvailable` Warning event on the node when it sees this.
    #[error("failed to allocate cidr from cluster cidr at idx:{index}: {source}")]
    Allocate {
        /// Position of the set that failed.
        index: usize,
        /// Why it failed (exhaustion, the only failure `allocate_next` has).
        source: CidrSetError,
    },
    /// An entry of a deleted node's podCIDRs does not parse. `reason` is Go's parser error.
    #[error("failed to parse CIDR {cidr} on Node {node}: {reason}")]
    ParseReleaseCidr {
        /// The entry, as written on the node.
        cidr: String,
        /// The node's name.
        node: String,
        /// Go's `ParseCIDR` error text, `invalid CIDR address: …`.
        reason: String,
    },
    /// A deleted node's podCIDR could not be released from its set.
    #[error("error when releasing CIDR {cidr}: {source}")]
    Release {
        /// The entry, as written on the node.
        cidr: String,
        /// Why the set refused it.
        source: CidrSetError,
    },
}

impl NodeIpamError {
    /// Whether this is a set running out of blocks: the case for a `CIDRNotAvailable` event.
    pub fn is_exhausted(&self) -> bool {
        matches!(
            self,
            Self::Allocate {
                source: CidrSetError::Exhausted,
                ..
            }
        )
    }

    /// The position in `--cluster-cidr` (or in `podCIDRs`) the error is about, if any.
    pub fn index(&self) -> Option<usize> {
        match self {
            Self::NewCidrSet { index, .. }
            | Self::ServiceRange { index, .. }
            | Self::ParseNodeCidr { index, .. }
            | Self::IndexBeyondClusterCidrs { index, .. }
            | Self::Occupy { index, .. }
            | Self::Allocate { index, .. } => Some(*index),
            _ => None,
        }
    }
}

/// Node pod-CIDR bookkeeping over one [`CidrSet`] per cluster CIDR.
#[derive(Clone, Debug)]
pub struct RangeAllocator {
    sets: Vec<CidrSet>,
}

impl RangeAllocator {
    /// One set per `(cluster CIDR, node prefix)`, in the order given. Every service range
    /// that overlaps a cluster CIDR is occupied in that set so node blocks never cover
    /// service IPs; failures there come back as warnings (the second value), since
    /// Kubernetes only logs them.
    ///
    /// Existing nodes are then to be fed to [`occupy_node`](Self::occupy_node), where any
    /// error should stop startup, as it does in Kubernetes.
    pub fn new(
        cluster: &[(ClusterCidr, u8)],
        service_cidrs: &[ServiceCidr],
    ) -> Result<(Self, Vec<NodeIpamError>), NodeIpamError> {
        if cluster.is_empty() {
            return Err(NodeIpamError::NoClusterCidrs);
        }
        let sets = cluster
            .iter()
            .enumerate()
            .map(|(index, &(cidr, node_prefix))| {
                CidrSet::new(cidr, node_prefix)
                    .map_err(|source| NodeIpamError::NewCidrSet { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut this = Self { sets };
        let mut warnings = Vec::new();
        for service in service_cidrs {
            let service = service.net().trunc();
            for (index, set) in this.sets.iter_mut().enumerate() {
                let cluster = set.cluster().net();
                let overlaps =
                    cluster.contains(&service.network()) || service.contains(&cluster.network());
                if !overlaps {
                    continue;
                }
                if let Err(source) = set.occupy(&service) {
                    warnings.push(NodeIpamError::ServiceRange {
                        service,
                        cluster,
                        index,
                        source,
                    });
                }
            }
        }
        Ok((this, warnings))
    }

    /// The sets, in `--cluster-cidr` order.
    pub fn sets(&self) -> &[CidrSet] {
        &self.sets
    }

    /// `(used, max)` per set, for the usage gauge.
    pub fn usage(&self) -> Vec<(u128, u128)> {
        self.sets.iter().map(|s| (s.used(), s.max())).collect()
    }

    /// Counters per set, for the allocation and release metrics.
    pub fn stats(&self) -> Vec<CidrSetStats> {
        self.sets.iter().map(CidrSet::stats).collect()
    }

    /// Marks a node's existing `spec.podCIDRs` as used, entry `i` in set `i`. Stops at the
    /// first bad entry, leaving the entries before it occupied (as Kubernetes does).
    pub fn occupy_node(&mut self, name: &str, pod_cidrs: &[String]) -> Result<(), NodeIpamError> {
        for (index, text) in pod_cidrs.iter().enumerate() {
            let Some(cidr) = parse_cidr_sloppy(text) else {
                return Err(NodeIpamError::ParseNodeCidr {
                    node: name.to_string(),
                    pod_cidr: pod_cidrs[0].clone(),
                    index,
                });
            };
            let Some(set) = self.sets.get_mut(index) else {
                return Err(NodeIpamError::IndexBeyondClusterCidrs {
                    node: name.to_string(),
                    cidr: text.clone(),
                    index,
                });
            };
            set.occupy(&cidr).map_err(|source| NodeIpamError::Occupy {
                cidr,
                index,
                node: name.to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// One block from each set, in order: the new node's `spec.podCIDRs`. If a set has
    /// nothing left, the blocks already taken in this call go back (cursors included), so a
    /// failed attempt changes nothing but the counters.
    pub fn allocate_node(&mut self) -> Result<Vec<PodCidr>, NodeIpamError> {
        let mut taken: Vec<(PodCidr, u128)> = Vec::with_capacity(self.sets.len());
        for index in 0..self.sets.len() {
            let set = &mut self.sets[index];
            let cursor = set.next_candidate();
            match set.allocate_next() {
                Ok(block) => taken.push((block, cursor)),
                Err(source) => {
                    for (i, (block, cursor)) in taken.iter().enumerate().rev() {
                        self.sets[i].undo_allocate(block, *cursor);
                    }
                    return Err(NodeIpamError::Allocate { index, source });
                }
            }
        }
        Ok(taken.into_iter().map(|(block, _)| block).collect())
    }

    /// Gives back blocks this allocator handed out but that never reached the node (the
    /// node got other podCIDRs meanwhile, or the patch failed). Kubernetes only logs these
    /// failures, which can't happen for blocks `allocate_node` returned.
    pub fn release_allocated(&mut self, blocks: &[PodCidr]) -> Vec<(usize, CidrSetError)> {
        let mut errors = Vec::new();
        for (index, (set, block)) in self.sets.iter_mut().zip(blocks).enumerate() {
            if let Err(e) = set.release(&block.net()) {
                errors.push((index, e));
            }
        }
        errors
    }

    /// Marks one range as used in the set whose cluster CIDR contains it (a range the store
    /// showed to be taken).
    pub fn occupy_cidr(&mut self, cidr: &IpNet) -> Result<(), CidrSetError> {
        self.set_for(cidr)?.occupy(cidr)
    }

    /// Frees one range in the set whose cluster CIDR contains it.
    pub fn release_cidr(&mut self, cidr: &IpNet) -> Result<(), CidrSetError> {
        self.set_for(cidr)?.release(cidr)
    }

    fn set_for(&mut self, cidr: &IpNet) -> Result<&mut CidrSet, CidrSetError> {
        let first = self.sets[0].cluster().net();
        self.sets
            .iter_mut()
            .find(|s| s.cluster().net().contains(cidr))
            .ok_or(CidrSetError::OutOfClusterRange {
                cidr: *cidr,
                cluster: first,
            })
    }

    /// Releases a deleted node's `spec.podCIDRs`, entry `i` from set `i`. The errors are
    /// for reporting, not fatal. Like Kubernetes it stops at the first bad entry, so the
    /// list holds at most one error: release then undoes exactly what `occupy_node` did
    /// for the same list, which stopped at the same entry.
    pub fn release_node(&mut self, name: &str, pod_cidrs: &[String]) -> Vec<NodeIpamError> {
        for (index, text) in pod_cidrs.iter().enumerate() {
            let Some(cidr) = parse_cidr_sloppy(text) else {
                return vec![NodeIpamError::ParseReleaseCidr {
                    cidr: text.clone(),
                    node: name.to_string(),
                    reason: go_parse_cidr_error(text),
                }];
            };
            let Some(set) = self.sets.get_mut(index) else {
                return vec![NodeIpamError::IndexBeyondClusterCidrs {
                    node: name.to_string(),
                    cidr: text.clone(),
                    index,
                }];
            };
            if let Err(source) = set.release(&cidr) {
                return vec![NodeIpamError::Release {
                    cidr: text.clone(),
                    source,
                }];
            }
        }
        Vec::new()
    }
}

/// The error `ParseCIDRSloppy` returns for `s`. It retries Go's `ParseCIDR` after stripping
/// leading zeros from a trailing dotted quad and its prefix, so the text names the
/// stripped string when that rewrite applied.
fn go_parse_cidr_error(s: &str) -> String {
    format!("invalid CIDR address: {}", strip_ipv4_zeros(s))
}

/// The rewrite `ParseCIDRSloppy` applies before its retry: at the end of `s`, after the
/// last `:` (or from the start), `a.b.c.d` or `a.b.c.d/n` in decimal digits loses the
/// leading zeros of each number. Anything else is left as it is.
fn strip_ipv4_zeros(s: &str) -> String {
    let (head, tail) = match s.rfind(':') {
        Some(i) => s.split_at(i + 1),
        None => ("", s),
    };
    let (quad, prefix) = match tail.split_once('/') {
        Some((q, p)) => (q, Some(p)),
        None => (tail, None),
    };
    let numbers: Vec<&str> = quad.split('.').collect();
    let is_number = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    if numbers.len() != 4 || !numbers.iter().all(|n| is_number(n)) || !prefix.is_none_or(is_number)
    {
        return s.to_string();
    }
    let strip = |n: &str| match n.trim_start_matches('0') {
        "" => "0".to_string(),
        rest => rest.to_string(),
    };
    let mut out = format!(
        "{head}{}",
        numbers
            .iter()
            .map(|n| strip(n))
            .collect::<Vec<_>>()
            .join(".")
    );
    if let Some(p) = prefix {
        out.push('/');
        out.push_str(&strip(p));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn net(s: &str) -> IpNet {
        parse_cidr_sloppy(s).unwrap_or_else(|| panic!("bad test CIDR {s}"))
    }

    fn allocator(cluster: &[(&str, u8)], services: &[&str]) -> RangeAllocator {
        let (a, warnings) = try_allocator(cluster, services).unwrap();
        assert_eq!(warnings, vec![]);
        a
    }

    fn try_allocator(
        cluster: &[(&str, u8)],
        services: &[&str],
    ) -> Result<(RangeAllocator, Vec<NodeIpamError>), NodeIpamError> {
        let cluster: Vec<_> = cluster
            .iter()
            .map(|(c, p)| (ClusterCidr(net(c)), *p))
            .collect();
        let services: Vec<_> = services.iter().map(|s| ServiceCidr(net(s))).collect();
        RangeAllocator::new(&cluster, &services)
    }

    fn strings(v: &[PodCidr]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    fn owned(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const EXHAUSTED: &str = "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range";

    /// `--cluster-cidr` entries with their node prefix, for case tables.
    type Clusters<'a> = &'a [(&'a str, u8)];
    /// `(used, max)` per set, for case tables.
    type Usage<'a> = &'a [(u128, u128)];

    #[test]
    fn construction_errors() {
        let cases: &[(Clusters, &str)] = &[
            (
                &[],
                "Controller: Must specify --cluster-cidr if --allocate-node-cidrs is set",
            ),
            (
                &[("10.0.0.0/8", 24), ("fd00::/16", 96)],
                "New CIDR set failed; the node CIDR size is too big",
            ),
            (
                &[("10.0.0.0/26", 24)],
                "Controller: Invalid --cluster-cidr, mask size of cluster CIDR must be less than or equal to --node-cidr-mask-size configured for CIDR family",
            ),
        ];
        for (cluster, want) in cases {
            let err = try_allocator(cluster, &[]).unwrap_err();
            assert_eq!(err.to_string(), *want);
        }
        let err = try_allocator(&[("10.0.0.0/8", 24), ("fd00::/16", 96)], &[]).unwrap_err();
        assert_eq!(err.index(), Some(1));
    }

    #[test]
    fn dual_stack_allocation_in_both_orders() {
        let cases: &[(Clusters, [&str; 2], [&str; 2])] = &[
            (
                &[("10.244.0.0/16", 24), ("fd00:10:244::/56", 64)],
                ["10.244.0.0/24", "fd00:10:244::/64"],
                ["10.244.1.0/24", "fd00:10:244:1::/64"],
            ),
            (
                &[("fd00:10:244::/56", 64), ("10.244.0.0/16", 24)],
                ["fd00:10:244::/64", "10.244.0.0/24"],
                ["fd00:10:244:1::/64", "10.244.1.0/24"],
            ),
        ];
        for (cluster, first, second) in cases {
            let mut a = allocator(cluster, &[]);
            assert_eq!(strings(&a.allocate_node().unwrap()), *first);
            assert_eq!(strings(&a.allocate_node().unwrap()), *second);
            assert_eq!(a.usage(), vec![(2, 256), (2, 256)]);
        }
    }

    #[test]
    fn failed_second_family_rolls_back() {
        // IPv4 has 4 blocks, IPv6 has 2: the third node finds IPv6 full.
        let mut a = allocator(&[("10.0.0.0/22", 24), ("fd00::/63", 64)], &[]);
        a.allocate_node().unwrap();
        a.allocate_node().unwrap();
        let before = a.sets()[0].next_candidate();
        let err = a.allocate_node().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("failed to allocate cidr from cluster cidr at idx:1: {EXHAUSTED}")
        );
        assert!(err.is_exhausted());
        assert_eq!(err.index(), Some(1));
        // Nothing leaked, and the IPv4 cursor is where it was.
        assert_eq!(a.usage(), vec![(2, 4), (2, 2)]);
        assert_eq!(a.sets()[0].next_candidate(), before);
        // Retrying while full changes nothing either.
        for _ in 0..10 {
            assert!(a.allocate_node().unwrap_err().is_exhausted());
        }
        assert_eq!(a.usage(), vec![(2, 4), (2, 2)]);
        // Once IPv6 has room, the next node gets the IPv4 block the failed calls tried.
        assert!(
            a.release_node("n0", &owned(&["10.0.0.0/24", "fd00::/64"]))
                .is_empty()
        );
        assert_eq!(
            strings(&a.allocate_node().unwrap()),
            ["10.0.2.0/24", "fd00::/64"]
        );
        // The first family failing takes nothing at all.
        let mut a = allocator(&[("10.0.0.0/24", 24), ("fd00::/48", 64)], &[]);
        a.allocate_node().unwrap();
        let err = a.allocate_node().unwrap_err();
        assert_eq!(err.index(), Some(0));
        assert!(err.is_exhausted());
        assert_eq!(a.usage(), vec![(1, 1), (1, 65536)]);
    }

    #[test]
    fn occupy_node_cases() {
        let dual = [("10.0.0.0/16", 24), ("fd00::/48", 64)];
        // (podCIDRs, cluster, error, usage afterwards)
        let cases: &[(&[&str], Clusters, Option<&str>, Usage)] = &[
            (&[], &dual, None, &[(0, 256), (0, 65536)]),
            (
                &["10.0.5.0/24", "fd00:0:0:7::/64"],
                &dual,
                None,
                &[(1, 256), (1, 65536)],
            ),
            // Sloppy IPv4 is accepted and masked.
            (
                &["010.000.005.001/24"],
                &dual,
                None,
                &[(1, 256), (0, 65536)],
            ),
            // A podCIDR wider than a block occupies all it covers.
            (&["10.0.0.0/22"], &dual, None, &[(4, 256), (0, 65536)]),
            (
                &["garbage"],
                &dual,
                Some("failed to parse node n1, CIDR garbage"),
                &[(0, 256), (0, 65536)],
            ),
            // Kubernetes names spec.podCIDR (= podCIDRs[0]), not the bad entry; the good
            // entry before it stays occupied.
            (
                &["10.0.5.0/24", "fd00::/64x"],
                &dual,
                Some("failed to parse node n1, CIDR 10.0.5.0/24"),
                &[(1, 256), (0, 65536)],
            ),
            (
                &["10.0.5.0/24", "fd00::/64"],
                &[("10.0.0.0/16", 24)],
                Some(
                    "node:n1 has an allocated cidr: fd00::/64 at index:1 that does not exist in cluster cidrs configuration",
                ),
                &[(1, 256)],
            ),
            (
                &["fd00::/64", "10.0.5.0/24"],
                &dual,
                Some(
                    "failed to mark cidr[fd00::/64] at idx [0] as occupied for node: n1: cidr fd00::/64 is out the range of cluster cidr 10.0.0.0/16",
                ),
                &[(0, 256), (0, 65536)],
            ),
            (
                &["10.1.0.0/24"],
                &dual,
                Some(
                    "failed to mark cidr[10.1.0.0/24] at idx [0] as occupied for node: n1: cidr 10.1.0.0/24 is out the range of cluster cidr 10.0.0.0/16",
                ),
                &[(0, 256), (0, 65536)],
            ),
            // The podCIDR is printed masked, as Go prints the parsed net.
            (
                &["10.0.5.0/24", "fd01::1/64"],
                &dual,
                Some(
                    "failed to mark cidr[fd01::/64] at idx [1] as occupied for node: n1: cidr fd01::/64 is out the range of cluster cidr fd00::/48",
                ),
                &[(1, 256), (0, 65536)],
            ),
        ];
        for (pod_cidrs, cluster, want, usage) in cases {
            let mut a = allocator(cluster, &[]);
            let got = a
                .occupy_node("n1", &owned(pod_cidrs))
                .map_err(|e| e.to_string());
            let want_result = match want {
                Some(w) => Err(w.to_string()),
                None => Ok(()),
            };
            assert_eq!(got, want_result, "{pod_cidrs:?}");
            assert_eq!(a.usage(), *usage, "{pod_cidrs:?}");
            // Occupying twice is harmless.
            if want.is_none() {
                a.occupy_node("n1", &owned(pod_cidrs)).unwrap();
                assert_eq!(a.usage(), *usage);
            }
        }
    }

    #[test]
    fn occupied_blocks_are_skipped() {
        let mut a = allocator(&[("10.0.0.0/16", 24), ("fd00::/48", 64)], &[]);
        a.occupy_node("old", &owned(&["10.0.0.0/24", "fd00::/64"]))
            .unwrap();
        a.occupy_node("older", &owned(&["10.0.1.0/24", "fd00:0:0:2::/64"]))
            .unwrap();
        assert_eq!(
            strings(&a.allocate_node().unwrap()),
            ["10.0.2.0/24", "fd00:0:0:1::/64"]
        );
        assert_eq!(
            strings(&a.allocate_node().unwrap()),
            ["10.0.3.0/24", "fd00:0:0:3::/64"]
        );
    }

    #[test]
    fn release_node_cases() {
        let dual = [("10.0.0.0/16", 24), ("fd00::/48", 64)];
        let cases: &[(&[&str], Clusters, Option<&str>)] = &[
            (&[], &dual, None),
            (&["10.0.5.0/24", "fd00:0:0:7::/64"], &dual, None),
            (
                &["10.0.5.0/24", "nonsense"],
                &dual,
                Some("failed to parse CIDR nonsense on Node n1: invalid CIDR address: nonsense"),
            ),
            // Go's retry strips leading zeros and reports the stripped text.
            (
                &["0300.01.1.1/024"],
                &dual,
                Some(
                    "failed to parse CIDR 0300.01.1.1/024 on Node n1: invalid CIDR address: 300.1.1.1/24",
                ),
            ),
            (
                &["10.0.5.0/24", "fd00:0:0:7::/64"],
                &[("10.0.0.0/16", 24)],
                Some(
                    "node:n1 has an allocated cidr: fd00:0:0:7::/64 at index:1 that does not exist in cluster cidrs configuration",
                ),
            ),
            (
                &["10.9.5.0/24"],
                &dual,
                Some(
                    "error when releasing CIDR 10.9.5.0/24: cidr 10.9.5.0/24 is out the range of cluster cidr 10.0.0.0/16",
                ),
            ),
        ];
        for (pod_cidrs, cluster, want) in cases {
            let mut a = allocator(cluster, &[]);
            // Whatever occupy took, release gives back.
            let _ = a.occupy_node("n1", &owned(pod_cidrs));
            let errors: Vec<String> = a
                .release_node("n1", &owned(pod_cidrs))
                .iter()
                .map(ToString::to_string)
                .collect();
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(errors, want, "{pod_cidrs:?}");
            assert!(
                a.usage().iter().all(|&(used, _)| used == 0),
                "{pod_cidrs:?}"
            );
        }
    }

    #[test]
    fn release_allocated_blocks() {
        let mut a = allocator(&[("10.0.0.0/16", 24), ("fd00::/48", 64)], &[]);
        let blocks = a.allocate_node().unwrap();
        assert!(a.release_allocated(&blocks).is_empty());
        assert_eq!(a.usage(), vec![(0, 256), (0, 65536)]);
        // Round-robin: the released pair is not reused straight away.
        assert_eq!(
            strings(&a.allocate_node().unwrap()),
            ["10.0.1.0/24", "fd00:0:0:1::/64"]
        );
    }

    #[test]
    fn sloppy_zero_stripping() {
        for (input, want) in [
            ("nonsense", "nonsense"),
            ("010.1.1.1", "10.1.1.1"),
            ("0300.01.1.1/024", "300.1.1.1/24"),
            ("1.2.3.4/000", "1.2.3.4/0"),
            ("::ffff:010.001.1.1/0120", "::ffff:10.1.1.1/120"),
            ("1.2.3/24", "1.2.3/24"),
            ("1.2.3.4/", "1.2.3.4/"),
            ("1.2.3.4/24/5", "1.2.3.4/24/5"),
            ("a.b.c.d/1", "a.b.c.d/1"),
            ("", ""),
        ] {
            assert_eq!(strip_ipv4_zeros(input), want, "{input}");
        }
    }

    #[test]
    fn service_ranges_are_kept_out() {
        // A service /16 inside a /8 cluster range: its 256 /24s are never handed out.
        let (mut a, warnings) = try_allocator(
            &[("10.0.0.0/8", 24), ("fd00::/48", 64)],
            &["10.96.0.0/16", "fd00::/112", "192.168.0.0/16"],
        )
        .unwrap();
        assert!(warnings.is_empty());
        assert_eq!(a.usage(), vec![(256, 65536), (1, 65536)]);
        let v4 = &a.sets()[0];
        assert!(v4.is_allocated(&net("10.96.0.0/16")));
        assert!(!v4.is_allocated(&net("10.95.255.0/24")));
        assert!(!v4.is_allocated(&net("10.97.0.0/24")));
        // The IPv6 service range sits inside block 0, so the first node skips it.
        assert_eq!(
            strings(&a.allocate_node().unwrap()),
            ["10.0.0.0/24", "fd00:0:0:1::/64"]
        );
        // A service range wider than the cluster range takes all of it.
        let (mut a, _) = try_allocator(&[("10.96.0.0/16", 24)], &["10.0.0.0/8"]).unwrap();
        assert_eq!(a.usage(), vec![(256, 256)]);
        assert!(a.allocate_node().unwrap_err().is_exhausted());
        // Walking past the service range from the cursor.
        let mut a = allocator(&[("10.0.0.0/16", 24)], &["10.0.0.0/17"]);
        assert_eq!(strings(&a.allocate_node().unwrap()), ["10.0.128.0/24"]);
    }

    #[test]
    fn error_texts() {
        let e = NodeIpamError::ServiceRange {
            service: net("10.0.0.0/16"),
            cluster: net("10.0.0.0/8"),
            index: 0,
            source: CidrSetError::Exhausted,
        };
        assert_eq!(
            e.to_string(),
            format!(
                "Error filtering out service cidr out cluster cidr: CIDR 10.0.0.0/8, index 0, serviceCIDR 10.0.0.0/16: {EXHAUSTED}"
            )
        );
        assert!(!e.is_exhausted());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add,
        Delete(usize),
    }

    proptest! {
        /// Random node churn on two small sets: no block is ever held by two nodes, usage
        /// equals what the live nodes hold, and failed allocations leave no trace.
        #[test]
        fn churn_never_double_allocates(ops in prop::collection::vec(
            prop_oneof![3 => Just(Op::Add), 2 => any::<usize>().prop_map(Op::Delete)],
            0..200,
        )) {
            let mut a = allocator(&[("10.0.0.0/27", 30), ("fd00::/125", 127)], &[]);
            let mut live: Vec<Vec<PodCidr>> = Vec::new();
            for op in ops {
                match op {
                    Op::Add => {
                        let before: Vec<u128> =
                            a.sets().iter().map(CidrSet::next_candidate).collect();
                        match a.allocate_node() {
                            Ok(blocks) => {
                                prop_assert_eq!(blocks.len(), 2);
                                prop_assert!(live.len() < 4);
                                live.push(blocks);
                            }
                            Err(e) => {
                                prop_assert!(e.is_exhausted());
                                prop_assert_eq!(live.len(), 4);
                                let after: Vec<u128> =
                                    a.sets().iter().map(CidrSet::next_candidate).collect();
                                prop_assert_eq!(before, after);
                            }
                        }
                    }
                    Op::Delete(i) if !live.is_empty() => {
                        let blocks = live.remove(i % live.len());
                        let errs = a.release_node("n", &strings(&blocks));
                        prop_assert!(errs.is_empty());
                    }
                    Op::Delete(_) => {}
                }
                for family in 0..2 {
                    let held: BTreeSet<String> =
                        live.iter().map(|b| b[family].to_string()).collect();
                    prop_assert_eq!(held.len(), live.len(), "a block held twice");
                    prop_assert_eq!(a.usage()[family].0, live.len() as u128);
                }
            }
        }
    }
}
