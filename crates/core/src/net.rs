//! Addresses and CIDRs with Kubernetes' parsing rules, and a type per role so a pod range
//! can't be passed where a service range is meant.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// An IP family. Kubernetes spells them `IPv4` and `IPv6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    IPv4,
    IPv6,
}

impl IpFamily {
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::IPv4,
            IpAddr::V6(_) => Self::IPv6,
        }
    }
    pub fn of_net(net: &IpNet) -> Self {
        Self::of(&net.addr())
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IPv4 => "IPv4",
            Self::IPv6 => "IPv6",
        }
    }
    pub fn other(self) -> Self {
        match self {
            Self::IPv4 => Self::IPv6,
            Self::IPv6 => Self::IPv4,
        }
    }
    pub fn bits(self) -> u8 {
        match self {
            Self::IPv4 => 32,
            Self::IPv6 => 128,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IpFamily {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "IPv4" => Ok(Self::IPv4),
            "IPv6" => Ok(Self::IPv6),
            _ => Err(()),
        }
    }
}

/// Folds IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) into IPv4, as Go's parser does.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `ParseIPSloppy`: like Go's `net.ParseIP`, but IPv4 octets with leading zeros are read as
/// decimal (`010.1.1.1` is `10.1.1.1`).
pub fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if s.contains(':') {
        return s
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| normalize(IpAddr::V6(v6)));
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        // Go's parser reads any number of leading zeros.
        let digits = p.trim_start_matches('0');
        if p.is_empty() || digits.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        octets[i] = if digits.is_empty() {
            0
        } else {
            digits.parse::<u16>().ok().filter(|v| *v <= 255)? as u8
        };
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// `ParseCIDRSloppy`: the network of `addr/prefix`, host bits cleared, with sloppy IPv4.
pub fn parse_cidr_sloppy(s: &str) -> Option<IpNet> {
    let (addr, prefix) = s.split_once('/')?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    // A mapped IPv6 CIDR stays IPv6 in Go's ParseCIDR (it checks the text form).
    let net = if addr.contains(':') {
        IpNet::V6(Ipv6Net::new(addr.parse::<Ipv6Addr>().ok()?, prefix).ok()?)
    } else {
        match parse_ip_sloppy(addr)? {
            IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new(v4, prefix).ok()?),
            IpAddr::V6(_) => return None,
        }
    };
    Some(net.trunc())
}

macro_rules! cidr_role {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub IpNet);

        impl $name {
            pub fn net(&self) -> IpNet {
                self.0
            }
            pub fn family(&self) -> IpFamily {
                IpFamily::of_net(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

cidr_role!(
    /// A range ClusterIPs are allocated from (`--service-cluster-ip-range`).
    ServiceCidr
);
cidr_role!(
    /// A range node pod CIDRs are cut from (`--cluster-cidr`).
    ClusterCidr
);
cidr_role!(
    /// One node's pod range (`node.spec.podCIDRs[i]`).
    PodCidr
);

/// An inclusive range of ports (`--service-node-port-range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub base: u16,
    pub size: u32,
}

impl PortRange {
    pub fn first(&self) -> u16 {
        self.base
    }
    pub fn last(&self) -> u16 {
        (u32::from(self.base) + self.size - 1) as u16
    }
    pub fn contains(&self, port: u16) -> bool {
        port >= self.first() && port <= self.last()
    }

    /// Kubernetes' `ParsePortRange`: `a-b`, `a+n` (n ports after a) or a single port.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("port range is empty".into());
        }
        let num = |p: &str| -> Result<u32, String> {
            p.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 65535)
                .ok_or_else(|| format!("unable to parse port range: {s}: invalid port {p:?}"))
        };
        let (low, high) = if let Some((a, b)) = s.split_once('-') {
            (num(a)?, num(b)?)
        } else if let Some((a, n)) = s.split_once('+') {
            let a = num(a)?;
            let n = n
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("unable to parse port range: {s}: invalid offset {n:?}"))?;
            (a, a + n)
        } else {
            let a = num(s)?;
            (a, a)
        };
        if high > 65535 {
            return Err(format!(
                "unable to parse port range: {s}: end port {high} is out of range"
            ));
        }
        if high < low {
            return Err(format!(
                "unable to parse port range: {s}: end port is less than start port"
            ));
        }
        Ok(Self {
            base: low as u16,
            size: high - low + 1,
        })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first(), self.last())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sloppy_parsing() {
        assert_eq!(
            parse_ip_sloppy("010.001.1.004"),
            Some("10.1.1.4".parse().unwrap())
        );
        assert_eq!(
            parse_ip_sloppy("192.168.000.005"),
            Some("192.168.0.5".parse().unwrap())
        );
        assert_eq!(
            parse_ip_sloppy("::ffff:192.168.0.5"),
            Some("192.168.0.5".parse().unwrap())
        );
        assert_eq!(parse_ip_sloppy("1.2.3"), None);
        assert_eq!(parse_ip_sloppy("256.1.1.1"), None);
        // Go reads any number of leading zeros.
        assert_eq!(
            parse_ip_sloppy("0000010.1.1.00001"),
            Some("10.1.1.1".parse().unwrap())
        );
        assert_eq!(parse_ip_sloppy("0256.1.1.1"), None);
        assert_eq!(
            parse_cidr_sloppy("1.2.3.4/24").unwrap().to_string(),
            "1.2.3.0/24"
        );
        assert_eq!(
            parse_cidr_sloppy("fd00:10:96::1/112").unwrap().to_string(),
            "fd00:10:96::/112"
        );
        assert_eq!(parse_cidr_sloppy("10.0.0.0/33"), None);
        assert_eq!(parse_cidr_sloppy("10.0.0.0"), None);
        assert_eq!(parse_cidr_sloppy("10.0.0.0/"), None);
        assert_eq!(
            IpFamily::of_net(&parse_cidr_sloppy("::ffff:1.2.3.4/120").unwrap()),
            IpFamily::IPv6
        );
    }

    #[test]
    fn port_ranges() {
        let r = PortRange::parse("30000-32767").unwrap();
        assert_eq!((r.first(), r.last(), r.size), (30000, 32767, 2768));
        assert_eq!(PortRange::parse("30000+10").unwrap().last(), 30010);
        assert_eq!(PortRange::parse("80").unwrap().size, 1);
        assert!(PortRange::parse("5-1").is_err());
        assert!(PortRange::parse("1-70000").is_err());
        assert!(PortRange::parse("x").is_err());
    }
}
