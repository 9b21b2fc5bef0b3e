//! The network flags of `duostack server`, validated with Kubernetes' rules and messages
//! (kube-apiserver for the service ranges, kube-controller-manager for the cluster CIDRs and
//! node mask sizes). duostack differs on purpose where `docs/cli.md` says so: IPv6 service
//! ranges may be as large as /64, and an IPv6 cluster CIDR may be cut into node ranges more
//! than 16 bits longer.

use crate::net::{ClusterCidr, IpFamily, PortRange, ServiceCidr, parse_cidr_sloppy};

/// A flag value that can't be used. The message is Kubernetes' where it has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value:?} for flag --{flag}: {message}")]
pub struct FlagError {
    pub flag: &'static str,
    pub value: String,
    pub message: String,
}

/// The raw flag values.
#[derive(Clone, Debug)]
pub struct NetworkFlags {
    pub service_cluster_ip_range: String,
    pub cluster_cidr: String,
    /// 0 means unset, as in Kubernetes.
    pub node_cidr_mask_size: u8,
    pub node_cidr_mask_size_ipv4: u8,
    pub node_cidr_mask_size_ipv6: u8,
    pub service_node_port_range: String,
}

impl Default for NetworkFlags {
    fn default() -> Self {
        Self {
            service_cluster_ip_range: "10.96.0.0/16,fd00:10:96::/112".into(),
            cluster_cidr: "10.244.0.0/16,fd00:10:244::/56".into(),
            node_cidr_mask_size: 0,
            node_cidr_mask_size_ipv4: 0,
            node_cidr_mask_size_ipv6: 0,
            service_node_port_range: "30000-32767".into(),
        }
    }
}

/// One cluster CIDR and the prefix length of the node ranges cut from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterRange {
    pub cidr: ClusterCidr,
    pub node_prefix: u8,
}

/// Validated network configuration. Lists are in flag order: the first entry's family is the
/// cluster's primary family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    pub service_cidrs: Vec<ServiceCidr>,
    pub cluster_ranges: Vec<ClusterRange>,
    pub node_port_range: PortRange,
}

impl NetworkConfig {
    pub fn primary_family(&self) -> IpFamily {
        self.service_cidrs[0].family()
    }

    pub fn from_flags(f: &NetworkFlags) -> Result<Self, FlagError> {
        let service_cidrs = service_ranges(&f.service_cluster_ip_range)?;
        let cluster = cluster_cidrs(&f.cluster_cidr)?;
        let masks = node_masks(f, &cluster)?;
        let mut cluster_ranges = Vec::new();
        for (cidr, mask) in cluster.into_iter().zip(masks) {
            if cidr.net().prefix_len() > mask {
                return Err(FlagError {
                    flag: "cluster-cidr",
                    value: f.cluster_cidr.clone(),
                    message: "Controller: Invalid --cluster-cidr, mask size of cluster CIDR must be less than or equal to --node-cidr-mask-size configured for CIDR family".into(),
                });
            }
            // duostack goes beyond Kubernetes' 16-bit IPv6 limit, up to the cidrset's own.
            if let Err(e) = crate::alloc::cidrset::CidrSet::new(cidr, mask) {
                return Err(FlagError {
                    flag: "cluster-cidr",
                    value: f.cluster_cidr.clone(),
                    message: e.to_string(),
                });
            }
            cluster_ranges.push(ClusterRange {
                cidr,
                node_prefix: mask,
            });
        }
        let node_port_range =
            PortRange::parse(&f.service_node_port_range).map_err(|message| FlagError {
                flag: "service-node-port-range",
                value: f.service_node_port_range.clone(),
                message,
            })?;
        Ok(Self {
            service_cidrs,
            cluster_ranges,
            node_port_range,
        })
    }
}

fn service_ranges(value: &str) -> Result<Vec<ServiceCidr>, FlagError> {
    let err = |message: String| FlagError {
        flag: "service-cluster-ip-range",
        value: value.to_owned(),
        message,
    };
    let entries: Vec<&str> = if value.is_empty() {
        Vec::new()
    } else {
        value.split(',').collect()
    };
    if entries.is_empty() {
        return Err(err(
            "--service-cluster-ip-range must contain at least one valid cidr".into(),
        ));
    }
    if entries.len() > 2 {
        return Err(err(
            "--service-cluster-ip-range must not contain more than two entries".into(),
        ));
    }
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let net = parse_cidr_sloppy(e)
            .ok_or_else(|| err(format!("service-cluster-ip-range[{i}] is not a valid cidr")))?;
        let cidr = ServiceCidr(net);
        let name = if i == 0 {
            "--service-cluster-ip-range".to_owned()
        } else {
            format!("--service-cluster-ip-range[{i}]")
        };
        // IPv4 keeps Kubernetes' 20-bit cap; IPv6 goes up to /64 (docs/cli.md).
        let min_prefix = match cidr.family() {
            IpFamily::IPv4 => 12,
            IpFamily::IPv6 => 64,
        };
        if net.prefix_len() < min_prefix {
            return Err(err(format!(
                "specified {name} is too large; for {}-bit addresses, the mask must be >= {min_prefix}",
                cidr.family().bits()
            )));
        }
        out.push(cidr);
    }
    if out.len() == 2 && out[0].family() == out[1].family() {
        return Err(err(
            "--service-cluster-ip-range[0] and --service-cluster-ip-range[1] must be of different IP family".into(),
        ));
    }
    Ok(out)
}

fn cluster_cidrs(value: &str) -> Result<Vec<ClusterCidr>, FlagError> {
    let err = |message: String| FlagError {
        flag: "cluster-cidr",
        value: value.to_owned(),
        message,
    };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(err(
            "Controller: Must specify --cluster-cidr if --allocate-node-cidrs is set".into(),
        ));
    }
    let mut out = Vec::new();
    for (i, e) in trimmed.split(',').enumerate() {
        let net = parse_cidr_sloppy(e).ok_or_else(|| {
            err(format!(
                "invalid CIDR[{i}]: <nil> (invalid CIDR address: {e})"
            ))
        })?;
        out.push(ClusterCidr(net));
    }
    let dual = out.iter().any(|c| c.family() == IpFamily::IPv4)
        && out.iter().any(|c| c.family() == IpFamily::IPv6);
    if out.len() > 1 && !dual {
        return Err(err(format!(
            "len of ClusterCIDRs=={} and they are not configured as dual stack (at least one from each IPFamily",
            out.len()
        )));
    }
    if out.len() > 2 {
        return Err(err(format!(
            "length of clusterCIDRs is:{} more than max allowed of 2",
            out.len()
        )));
    }
    Ok(out)
}

fn node_masks(f: &NetworkFlags, cluster: &[ClusterCidr]) -> Result<Vec<u8>, FlagError> {
    let generic = f.node_cidr_mask_size;
    let (v4, v6) = (f.node_cidr_mask_size_ipv4, f.node_cidr_mask_size_ipv6);
    let err = |flag: &'static str, value: u8, message: &str| FlagError {
        flag,
        value: value.to_string(),
        message: message.to_owned(),
    };
    let (mask4, mask6) = if cluster.len() > 1 {
        if generic != 0 {
            return Err(err(
                "node-cidr-mask-size",
                generic,
                "usage of --node-cidr-mask-size is not allowed with dual-stack clusters",
            ));
        }
        (if v4 != 0 { v4 } else { 24 }, if v6 != 0 { v6 } else { 64 })
    } else {
        if generic != 0 && (v4 != 0 || v6 != 0) {
            return Err(err(
                "node-cidr-mask-size",
                generic,
                "usage of --node-cidr-mask-size-ipv4 and --node-cidr-mask-size-ipv6 is not allowed if --node-cidr-mask-size is set. For dual-stack clusters please unset it and use IPFamily specific flags",
            ));
        }
        match cluster.first().map(|c| c.family()) {
            Some(IpFamily::IPv6) if v4 != 0 => {
                return Err(err(
                    "node-cidr-mask-size-ipv4",
                    v4,
                    "usage of --node-cidr-mask-size-ipv4 is not allowed for a single-stack IPv6 cluster",
                ));
            }
            Some(IpFamily::IPv4) if v6 != 0 => {
                return Err(err(
                    "node-cidr-mask-size-ipv6",
                    v6,
                    "usage of --node-cidr-mask-size-ipv6 is not allowed for a single-stack IPv4 cluster",
                ));
            }
            _ => {}
        }
        let g = (generic != 0).then_some(generic);
        (
            g.or((v4 != 0).then_some(v4)).unwrap_or(24),
            g.or((v6 != 0).then_some(v6)).unwrap_or(64),
        )
    };
    let flag_of = |fam: IpFamily| match (generic != 0, fam) {
        (true, _) => "node-cidr-mask-size",
        (false, IpFamily::IPv4) => "node-cidr-mask-size-ipv4",
        (false, IpFamily::IPv6) => "node-cidr-mask-size-ipv6",
    };
    cluster
        .iter()
        .map(|c| {
            let fam = c.family();
            let mask = if fam == IpFamily::IPv4 { mask4 } else { mask6 };
            if mask > fam.bits() {
                return Err(err(
                    flag_of(fam),
                    mask,
                    &format!("must be at most {} for {fam}", fam.bits()),
                ));
            }
            Ok(mask)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(svc: &str, cluster: &str) -> NetworkFlags {
        NetworkFlags {
            service_cluster_ip_range: svc.into(),
            cluster_cidr: cluster.into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_dual_stack_ipv4_primary() {
        let c = NetworkConfig::from_flags(&NetworkFlags::default()).unwrap();
        assert_eq!(c.primary_family(), IpFamily::IPv4);
        assert_eq!(c.service_cidrs.len(), 2);
        assert_eq!(c.cluster_ranges[0].node_prefix, 24);
        assert_eq!(c.cluster_ranges[1].node_prefix, 64);
        assert_eq!(c.node_port_range.size, 2768);
    }

    #[test]
    fn order_sets_the_primary_family() {
        let c = NetworkConfig::from_flags(&flags(
            "fd00:10:96::/112,10.96.0.0/16",
            "fd00:10:244::/56,10.244.0.0/16",
        ))
        .unwrap();
        assert_eq!(c.primary_family(), IpFamily::IPv6);
        assert_eq!(c.cluster_ranges[0].cidr.family(), IpFamily::IPv6);
    }

    #[test]
    fn service_range_errors() {
        let cases = [
            (
                "",
                "--service-cluster-ip-range must contain at least one valid cidr",
            ),
            (
                "10.0.0.0/16,fd00::/112,10.1.0.0/16",
                "--service-cluster-ip-range must not contain more than two entries",
            ),
            (
                "10.0.0.0/16,10.1.0.0/16",
                "--service-cluster-ip-range[0] and --service-cluster-ip-range[1] must be of different IP family",
            ),
            ("garbage", "service-cluster-ip-range[0] is not a valid cidr"),
            (
                "10.0.0.0/16,nope",
                "service-cluster-ip-range[1] is not a valid cidr",
            ),
            (
                "10.0.0.0/8",
                "specified --service-cluster-ip-range is too large; for 32-bit addresses, the mask must be >= 12",
            ),
            (
                "10.0.0.0/16,fd00::/48",
                "specified --service-cluster-ip-range[1] is too large; for 128-bit addresses, the mask must be >= 64",
            ),
        ];
        for (v, want) in cases {
            let e = NetworkConfig::from_flags(&flags(v, "10.244.0.0/16")).unwrap_err();
            assert_eq!(e.flag, "service-cluster-ip-range", "{v}");
            assert_eq!(e.message, want, "{v}");
            assert!(e.to_string().contains(&format!("{v:?}")));
        }
        assert!(NetworkConfig::from_flags(&flags("fd00::/64", "fd00:1::/48")).is_ok());
        // A /32 cut into /64s is fine (Kubernetes stops at 16 bits); 2^65 node ranges are not.
        assert!(NetworkConfig::from_flags(&flags("fd00::/112", "2001:db8::/32")).is_ok());
        let e = NetworkConfig::from_flags(&NetworkFlags {
            node_cidr_mask_size_ipv6: 80,
            ..flags("fd00::/112", "fd00::/15")
        })
        .unwrap_err();
        assert_eq!(
            e.message,
            "New CIDR set failed; the node CIDR size is too big"
        );
    }

    #[test]
    fn cluster_cidr_and_mask_errors() {
        let e = NetworkConfig::from_flags(&flags("10.96.0.0/16", "10.0.0.0/16,10.1.0.0/16"))
            .unwrap_err();
        assert_eq!(
            e.message,
            "len of ClusterCIDRs==2 and they are not configured as dual stack (at least one from each IPFamily"
        );
        let e =
            NetworkConfig::from_flags(&flags("10.96.0.0/16", "10.0.0.0/16,fd00::/48,10.1.0.0/16"))
                .unwrap_err();
        assert_eq!(
            e.message,
            "length of clusterCIDRs is:3 more than max allowed of 2"
        );
        let e = NetworkConfig::from_flags(&flags("10.96.0.0/16", "x")).unwrap_err();
        assert_eq!(
            e.message,
            "invalid CIDR[0]: <nil> (invalid CIDR address: x)"
        );
        let e = NetworkConfig::from_flags(&flags("10.96.0.0/16", "10.0.0.0/25")).unwrap_err();
        assert!(e.message.starts_with("Controller: Invalid --cluster-cidr"));

        let mut f = NetworkFlags {
            node_cidr_mask_size: 26,
            ..Default::default()
        };
        assert_eq!(
            NetworkConfig::from_flags(&f).unwrap_err().message,
            "usage of --node-cidr-mask-size is not allowed with dual-stack clusters"
        );
        f.cluster_cidr = "10.244.0.0/16".into();
        assert_eq!(
            NetworkConfig::from_flags(&f).unwrap().cluster_ranges[0].node_prefix,
            26
        );
        f.node_cidr_mask_size_ipv4 = 25;
        assert!(
            NetworkConfig::from_flags(&f)
                .unwrap_err()
                .message
                .starts_with("usage of --node-cidr-mask-size-ipv4 and")
        );
        let f = NetworkFlags {
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask_size_ipv6: 80,
            ..Default::default()
        };
        assert_eq!(
            NetworkConfig::from_flags(&f).unwrap_err().message,
            "usage of --node-cidr-mask-size-ipv6 is not allowed for a single-stack IPv4 cluster"
        );
        let f = NetworkFlags {
            cluster_cidr: "fd00::/48".into(),
            node_cidr_mask_size_ipv4: 24,
            ..Default::default()
        };
        assert_eq!(
            NetworkConfig::from_flags(&f).unwrap_err().message,
            "usage of --node-cidr-mask-size-ipv4 is not allowed for a single-stack IPv6 cluster"
        );
        // Equal prefix is allowed: exactly one node range.
        assert!(NetworkConfig::from_flags(&flags("10.96.0.0/16", "10.0.0.0/24")).is_ok());
        let e = NetworkConfig::from_flags(&NetworkFlags {
            service_node_port_range: "5-1".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.flag, "service-node-port-range");
    }

    /// Every rule of spec sections A.2-A.4, in table form: the flags, then the node prefix
    /// of each cluster range in flag order, or the flag blamed and Kubernetes' message.
    #[test]
    fn cluster_cidr_and_mask_table() {
        type Case = (
            &'static str,
            (u8, u8, u8),
            Result<&'static [u8], (&'static str, &'static str)>,
        );
        const NOT_DUAL: &str = "len of ClusterCIDRs==2 and they are not configured as dual stack (at least one from each IPFamily";
        const GENERIC_DUAL: &str =
            "usage of --node-cidr-mask-size is not allowed with dual-stack clusters";
        const GENERIC_AND_FAMILY: &str = "usage of --node-cidr-mask-size-ipv4 and --node-cidr-mask-size-ipv6 is not allowed if --node-cidr-mask-size is set. For dual-stack clusters please unset it and use IPFamily specific flags";
        const TOO_SHORT: &str = "Controller: Invalid --cluster-cidr, mask size of cluster CIDR must be less than or equal to --node-cidr-mask-size configured for CIDR family";
        let cases: &[Case] = &[
            // Defaults, kept in flag order.
            ("10.244.0.0/16", (0, 0, 0), Ok(&[24])),
            ("fd00::/48", (0, 0, 0), Ok(&[64])),
            ("10.244.0.0/16,fd00::/48", (0, 0, 0), Ok(&[24, 64])),
            ("fd00::/48,10.244.0.0/16", (0, 0, 0), Ok(&[64, 24])),
            // The whole value is trimmed once; elements are not.
            (" 10.244.0.0/16,fd00::/48 ", (0, 0, 0), Ok(&[24, 64])),
            (
                "10.244.0.0/16, fd00::/48",
                (0, 0, 0),
                Err((
                    "cluster-cidr",
                    "invalid CIDR[1]: <nil> (invalid CIDR address:  fd00::/48)",
                )),
            ),
            (
                "10.244.0.0/16,",
                (0, 0, 0),
                Err((
                    "cluster-cidr",
                    "invalid CIDR[1]: <nil> (invalid CIDR address: )",
                )),
            ),
            (
                "",
                (0, 0, 0),
                Err((
                    "cluster-cidr",
                    "Controller: Must specify --cluster-cidr if --allocate-node-cidrs is set",
                )),
            ),
            (
                "  ",
                (0, 0, 0),
                Err((
                    "cluster-cidr",
                    "Controller: Must specify --cluster-cidr if --allocate-node-cidrs is set",
                )),
            ),
            // Family mix is checked before the count.
            (
                "10.0.0.0/16,10.1.0.0/16",
                (0, 0, 0),
                Err(("cluster-cidr", NOT_DUAL)),
            ),
            (
                "fd00::/48,fd01::/48",
                (0, 0, 0),
                Err(("cluster-cidr", NOT_DUAL)),
            ),
            (
                "10.0.0.0/16,fd00::/48,10.1.0.0/16",
                (0, 0, 0),
                Err((
                    "cluster-cidr",
                    "length of clusterCIDRs is:3 more than max allowed of 2",
                )),
            ),
            (
                "10.0.0.0/16,10.1.0.0/16,10.2.0.0/16",
                (0, 0, 0),
                Err((
                    "cluster-cidr",
                    "len of ClusterCIDRs==3 and they are not configured as dual stack (at least one from each IPFamily",
                )),
            ),
            // Dual-stack: per-family flags only.
            ("10.244.0.0/16,fd00::/48", (0, 26, 0), Ok(&[26, 64])),
            ("10.244.0.0/16,fd00::/48", (0, 0, 80), Ok(&[24, 80])),
            ("fd00::/48,10.244.0.0/16", (0, 26, 80), Ok(&[80, 26])),
            (
                "10.244.0.0/16,fd00::/48",
                (24, 0, 0),
                Err(("node-cidr-mask-size", GENERIC_DUAL)),
            ),
            (
                "10.244.0.0/16,fd00::/48",
                (24, 24, 64),
                Err(("node-cidr-mask-size", GENERIC_DUAL)),
            ),
            // Single-stack: the generic flag, or the matching family's.
            ("10.244.0.0/16", (26, 0, 0), Ok(&[26])),
            ("fd00::/48", (96, 0, 0), Ok(&[96])),
            ("10.244.0.0/16", (0, 26, 0), Ok(&[26])),
            ("fd00::/48", (0, 0, 96), Ok(&[96])),
            (
                "10.244.0.0/16",
                (26, 25, 0),
                Err(("node-cidr-mask-size", GENERIC_AND_FAMILY)),
            ),
            (
                "fd00::/48",
                (96, 0, 80),
                Err(("node-cidr-mask-size", GENERIC_AND_FAMILY)),
            ),
            (
                "fd00::/48",
                (0, 24, 0),
                Err((
                    "node-cidr-mask-size-ipv4",
                    "usage of --node-cidr-mask-size-ipv4 is not allowed for a single-stack IPv6 cluster",
                )),
            ),
            (
                "10.244.0.0/16",
                (0, 0, 64),
                Err((
                    "node-cidr-mask-size-ipv6",
                    "usage of --node-cidr-mask-size-ipv6 is not allowed for a single-stack IPv4 cluster",
                )),
            ),
            // Cluster prefix longer than the node mask; equal is one node range.
            ("10.0.0.0/30", (30, 0, 0), Ok(&[30])),
            ("10.0.0.0/25", (0, 0, 0), Err(("cluster-cidr", TOO_SHORT))),
            (
                "10.244.0.0/16,fd00::/72",
                (0, 0, 0),
                Err(("cluster-cidr", TOO_SHORT)),
            ),
            (
                "10.244.0.0/16,fd00::/48",
                (0, 15, 0),
                Err(("cluster-cidr", TOO_SHORT)),
            ),
        ];
        for (cluster, (generic, v4, v6), want) in cases {
            let f = NetworkFlags {
                service_cluster_ip_range: "10.96.0.0/16".into(),
                cluster_cidr: (*cluster).into(),
                node_cidr_mask_size: *generic,
                node_cidr_mask_size_ipv4: *v4,
                node_cidr_mask_size_ipv6: *v6,
                ..Default::default()
            };
            let got = NetworkConfig::from_flags(&f);
            let what = format!("{cluster:?} masks {generic}/{v4}/{v6}");
            match want {
                Ok(prefixes) => {
                    let c = got.unwrap_or_else(|e| panic!("{what}: {e}"));
                    let have: Vec<u8> = c.cluster_ranges.iter().map(|r| r.node_prefix).collect();
                    assert_eq!(have, *prefixes, "{what}");
                }
                Err((flag, message)) => {
                    let e = got.expect_err(&what);
                    assert_eq!((e.flag, e.message.as_str()), (*flag, *message), "{what}");
                }
            }
        }
    }
}
