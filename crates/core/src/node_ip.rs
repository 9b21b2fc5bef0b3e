//! A node's own IPs as kubelet takes them (spec section B.1): the `--node-ip` flag, the
//! `alpha.kubernetes.io/provided-node-ip` annotation, and the sanity check applied to a
//! chosen node IP. The agent reads these; the rules live here so they are tested once.

use std::net::IpAddr;

use thiserror::Error;

use crate::net::{IpFamily, parse_ip_sloppy};

/// The annotation kubelet sets to the node IPs it was given when a cloud provider owns the
/// node's addresses.
pub const PROVIDED_NODE_IP_ANNOTATION: &str = "alpha.kubernetes.io/provided-node-ip";

/// Why a list of node IPs is refused. The messages are kubelet's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NodeIpError {
    #[error("must contain either a single IP or a dual-stack pair of IPs")]
    NotSingleOrDualPair,
    #[error("dual-stack not supported in this configuration")]
    DualStackNotSupported,
    #[error("dual-stack node IP cannot include '0.0.0.0' or '::'")]
    DualStackUnspecified,
    /// Only the strict (annotation) form refuses an unparseable element.
    #[error("could not parse {0:?}")]
    CouldNotParse(String),
}

/// What `--node-ip` gave: the IPs, and the elements that did not parse (kubelet logs and
/// ignores those rather than refusing to start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeIps {
    pub ips: Vec<IpAddr>,
    pub invalid: Vec<String>,
}

impl NodeIps {
    /// The family autodetection prefers: IPv6 only when the first IP is IPv6 (`::` included).
    pub fn preferred_family(&self) -> IpFamily {
        match self.ips.first() {
            Some(ip) => IpFamily::of(ip),
            None => IpFamily::IPv4,
        }
    }

    /// Primary and secondary, as far as they are given and not unspecified.
    pub fn specified(&self) -> (Option<IpAddr>, Option<IpAddr>) {
        let get = |i: usize| self.ips.get(i).copied().filter(|ip| !ip.is_unspecified());
        (get(0), get(1))
    }
}

/// Whether dual-stack node IPs are allowed with this `--cloud-provider`: with none, or an
/// external one (KEP-3705); legacy in-tree providers take a single IP.
pub fn dual_stack_allowed(cloud_provider: &str) -> bool {
    cloud_provider.is_empty() || cloud_provider == "external"
}

/// kubelet's `--node-ip` value. Empty means autodetect. Elements are trimmed; those that
/// do not parse are set aside in `invalid` and do not count.
pub fn parse_node_ip_argument(value: &str, cloud_provider: &str) -> Result<NodeIps, NodeIpError> {
    let mut out = NodeIps::default();
    if !value.is_empty() {
        for elem in value.split(',') {
            let elem = elem.trim();
            match parse_ip_sloppy(elem) {
                Some(ip) => out.ips.push(ip),
                None => out.invalid.push(elem.to_owned()),
            }
        }
    }
    check(&out.ips, dual_stack_allowed(cloud_provider))?;
    Ok(out)
}

/// The `alpha.kubernetes.io/provided-node-ip` annotation: the same rules, but strict (no
/// trimming, an element that does not parse is an error, and so is the empty string), and
/// dual-stack always allowed.
pub fn parse_node_ip_annotation(value: &str) -> Result<Vec<IpAddr>, NodeIpError> {
    let mut ips = Vec::new();
    for elem in value.split(',') {
        ips.push(parse_ip_sloppy(elem).ok_or_else(|| NodeIpError::CouldNotParse(elem.into()))?);
    }
    check(&ips, true)?;
    Ok(ips)
}

fn check(ips: &[IpAddr], allow_dual: bool) -> Result<(), NodeIpError> {
    match ips {
        [a, b] if IpFamily::of(a) == IpFamily::of(b) => Err(NodeIpError::NotSingleOrDualPair),
        [_, _, _, ..] => Err(NodeIpError::NotSingleOrDualPair),
        [_, _] if !allow_dual => Err(NodeIpError::DualStackNotSupported),
        [a, b] if a.is_unspecified() || b.is_unspecified() => {
            Err(NodeIpError::DualStackUnspecified)
        }
        _ => Ok(()),
    }
}

/// Why an IP cannot be a node's IP. The messages are kubelet's `validateNodeIP`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NodeIpInvalid {
    #[error("nodeIP can't be loopback address")]
    Loopback,
    #[error("nodeIP can't be a multicast address")]
    Multicast,
    #[error("nodeIP can't be a link-local unicast address")]
    LinkLocal,
    #[error("nodeIP can't be an all zeros address")]
    Unspecified,
    #[error("node IP: \"{0}\" not found in the host's network interfaces")]
    NotLocal(IpAddr),
}

/// Checks a node IP the way kubelet does before using it: a usable unicast address that
/// one of the host's interfaces has (`local`, which the caller reads from the kernel).
pub fn validate_node_ip(ip: IpAddr, local: &[IpAddr]) -> Result<(), NodeIpInvalid> {
    // An IPv4-mapped IPv6 address is the IPv4 address to Go, and so here.
    let ip = ip.to_canonical();
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    if ip.is_loopback() {
        Err(NodeIpInvalid::Loopback)
    } else if ip.is_multicast() {
        Err(NodeIpInvalid::Multicast)
    } else if link_local {
        Err(NodeIpInvalid::LinkLocal)
    } else if ip.is_unspecified() {
        Err(NodeIpInvalid::Unspecified)
    } else if local.iter().any(|l| l.to_canonical() == ip) {
        Ok(())
    } else {
        Err(NodeIpInvalid::NotLocal(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    const SINGLE_OR_PAIR: &str = "must contain either a single IP or a dual-stack pair of IPs";
    const NOT_SUPPORTED: &str = "dual-stack not supported in this configuration";
    const UNSPECIFIED: &str = "dual-stack node IP cannot include '0.0.0.0' or '::'";

    /// (value, cloud provider, Ok(ips, invalid) or Err(message)).
    type ArgCase = (
        &'static str,
        &'static str,
        Result<(&'static [&'static str], &'static [&'static str]), &'static str>,
    );

    #[test]
    fn node_ip_argument() {
        let cases: &[ArgCase] = &[
            ("", "", Ok((&[], &[]))),
            ("", "gce", Ok((&[], &[]))),
            ("1.2.3.4", "", Ok((&["1.2.3.4"], &[]))),
            (" 1.2.3.4 ", "", Ok((&["1.2.3.4"], &[]))),
            ("abcd::1", "", Ok((&["abcd::1"], &[]))),
            ("0.0.0.0", "", Ok((&["0.0.0.0"], &[]))),
            ("::", "", Ok((&["::"], &[]))),
            ("1.2.3.4", "gce", Ok((&["1.2.3.4"], &[]))),
            ("1.2.3.4,abcd::1", "", Ok((&["1.2.3.4", "abcd::1"], &[]))),
            ("abcd::1, 1.2.3.4", "", Ok((&["abcd::1", "1.2.3.4"], &[]))),
            (
                "1.2.3.4,abcd::1",
                "external",
                Ok((&["1.2.3.4", "abcd::1"], &[])),
            ),
            // Leading zeros are accepted, as Kubernetes' sloppy parser does.
            ("001.002.003.004", "", Ok((&["1.2.3.4"], &[]))),
            // An IPv4-mapped IPv6 address counts as IPv4.
            (
                "::ffff:1.2.3.4,abcd::1",
                "",
                Ok((&["1.2.3.4", "abcd::1"], &[])),
            ),
            // Garbage is set aside, not refused.
            ("1.2.3.4,garbage", "", Ok((&["1.2.3.4"], &["garbage"]))),
            ("1.2.3", "", Ok((&[], &["1.2.3"]))),
            ("1.2.3.0/24", "", Ok((&[], &["1.2.3.0/24"]))),
            ("1.2.3.4,", "", Ok((&["1.2.3.4"], &[""]))),
            (
                "1.2.3.4,abcd::1,garbage",
                "",
                Ok((&["1.2.3.4", "abcd::1"], &["garbage"])),
            ),
            ("1.2.3.4,5.6.7.8", "", Err(SINGLE_OR_PAIR)),
            ("abcd::1,abcd::2", "", Err(SINGLE_OR_PAIR)),
            ("1.2.3.4,abcd::1,5.6.7.8", "", Err(SINGLE_OR_PAIR)),
            ("1.2.3.4,abcd::1,abcd::2", "external", Err(SINGLE_OR_PAIR)),
            ("1.2.3.4,abcd::1", "gce", Err(NOT_SUPPORTED)),
            ("1.2.3.4,abcd::1", "aws", Err(NOT_SUPPORTED)),
            ("0.0.0.0,abcd::1", "", Err(UNSPECIFIED)),
            ("1.2.3.4,::", "", Err(UNSPECIFIED)),
            ("::,0.0.0.0", "external", Err(UNSPECIFIED)),
            // Same family is checked before the cloud provider.
            ("1.2.3.4,5.6.7.8", "gce", Err(SINGLE_OR_PAIR)),
        ];
        for (value, cloud, want) in cases {
            let got = parse_node_ip_argument(value, cloud);
            match want {
                Ok((want_ips, want_invalid)) => {
                    let got = got.unwrap_or_else(|e| panic!("{value:?} ({cloud:?}): {e}"));
                    assert_eq!(got.ips, ips(want_ips), "{value:?} ({cloud:?})");
                    assert_eq!(got.invalid, *want_invalid, "{value:?} ({cloud:?})");
                }
                Err(msg) => {
                    let e = got.expect_err(value);
                    assert_eq!(e.to_string(), *msg, "{value:?} ({cloud:?})");
                }
            }
        }
    }

    #[test]
    fn node_ip_annotation() {
        let ok: &[(&str, &[&str])] = &[
            ("1.2.3.4", &["1.2.3.4"]),
            ("abcd::1", &["abcd::1"]),
            ("1.2.3.4,abcd::1", &["1.2.3.4", "abcd::1"]),
            ("abcd::1,1.2.3.4", &["abcd::1", "1.2.3.4"]),
            ("0.0.0.0", &["0.0.0.0"]),
        ];
        for (value, want) in ok {
            assert_eq!(parse_node_ip_annotation(value), Ok(ips(want)), "{value:?}");
        }
        let bad: &[(&str, &str)] = &[
            ("", r#"could not parse """#),
            ("garbage", r#"could not parse "garbage""#),
            // No trimming in the strict form.
            (" 1.2.3.4", r#"could not parse " 1.2.3.4""#),
            ("1.2.3.4, abcd::1", r#"could not parse " abcd::1""#),
            ("1.2.3.4,", r#"could not parse """#),
            ("1.2.3.0/24", r#"could not parse "1.2.3.0/24""#),
            ("1.2.3.4,5.6.7.8", SINGLE_OR_PAIR),
            ("1.2.3.4,abcd::1,abcd::2", SINGLE_OR_PAIR),
            ("::,1.2.3.4", UNSPECIFIED),
        ];
        for (value, msg) in bad {
            let e = parse_node_ip_annotation(value).expect_err(value);
            assert_eq!(e.to_string(), *msg, "{value:?}");
        }
    }

    #[test]
    fn preferred_family_and_specified() {
        let p = |v: &str| parse_node_ip_argument(v, "").unwrap();
        assert_eq!(p("").preferred_family(), IpFamily::IPv4);
        assert_eq!(p("0.0.0.0").preferred_family(), IpFamily::IPv4);
        assert_eq!(p("::").preferred_family(), IpFamily::IPv6);
        assert_eq!(p("abcd::1,1.2.3.4").preferred_family(), IpFamily::IPv6);
        assert_eq!(p("::").specified(), (None, None));
        let a: IpAddr = "abcd::1".parse().unwrap();
        let b: IpAddr = "1.2.3.4".parse().unwrap();
        assert_eq!(p("abcd::1,1.2.3.4").specified(), (Some(a), Some(b)));
        assert_eq!(p("1.2.3.4").specified(), (Some(b), None));
    }

    #[test]
    fn validate() {
        let local = ips(&["10.0.0.5", "2001:db8::5", "127.0.0.1", "::1"]);
        let cases: &[(&str, Result<(), &str>)] = &[
            ("10.0.0.5", Ok(())),
            ("2001:db8::5", Ok(())),
            ("::ffff:10.0.0.5", Ok(())),
            ("127.0.0.1", Err("nodeIP can't be loopback address")),
            ("127.1.2.3", Err("nodeIP can't be loopback address")),
            ("::1", Err("nodeIP can't be loopback address")),
            ("239.0.0.254", Err("nodeIP can't be a multicast address")),
            ("ff02::1", Err("nodeIP can't be a multicast address")),
            (
                "169.254.0.0",
                Err("nodeIP can't be a link-local unicast address"),
            ),
            (
                "fe80::1",
                Err("nodeIP can't be a link-local unicast address"),
            ),
            ("0.0.0.0", Err("nodeIP can't be an all zeros address")),
            ("::", Err("nodeIP can't be an all zeros address")),
            (
                "114.114.114.114",
                Err(r#"node IP: "114.114.114.114" not found in the host's network interfaces"#),
            ),
            (
                "2001:db8::6",
                Err(r#"node IP: "2001:db8::6" not found in the host's network interfaces"#),
            ),
        ];
        for (ip, want) in cases {
            let got = validate_node_ip(ip.parse().unwrap(), &local).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "{ip}");
        }
    }
}
