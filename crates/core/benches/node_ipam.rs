//! Node podCIDR allocation cost: `cargo bench -p duostack-core --bench node_ipam`.
//!
//! Times `RangeAllocator::allocate_node` for 5,000 dual-stack nodes on a fresh allocator
//! (one IPv4 and one IPv6 range per node), best and median of 50 runs, and the heap the
//! used-range index takes afterwards. The cluster CIDRs are chosen to show both ends: a
//! 16-bit IPv6 split (Kubernetes' limit) and a 32-bit one (a /32 cut into /64s), which
//! Kubernetes' bitmap can't hold at all.

use std::hint::black_box;
use std::time::{Duration, Instant};

use duostack_core::net::{ClusterCidr, parse_cidr_sloppy};
use duostack_core::node_ipam::RangeAllocator;

const NODES: usize = 5000;
const RUNS: usize = 50;

fn allocator(ranges: &[(&str, u8)]) -> RangeAllocator {
    let cluster: Vec<(ClusterCidr, u8)> = ranges
        .iter()
        .map(|(c, p)| (ClusterCidr(parse_cidr_sloppy(c).unwrap()), *p))
        .collect();
    RangeAllocator::new(&cluster, &[]).unwrap().0
}

fn bench(label: &str, ranges: &[(&str, u8)]) {
    let mut runs: Vec<Duration> = Vec::with_capacity(RUNS);
    let mut heap = 0;
    for _ in 0..RUNS {
        let mut a = allocator(ranges);
        let t = Instant::now();
        for _ in 0..NODES {
            black_box(a.allocate_node().unwrap());
        }
        runs.push(t.elapsed());
        heap = a.sets().iter().map(|s| s.heap_bytes()).sum::<usize>();
    }
    runs.sort();
    println!(
        "| {label} | {:.2} | {:.2} | {:.0} | {:.1} |",
        runs[0].as_secs_f64() * 1e3,
        runs[RUNS / 2].as_secs_f64() * 1e3,
        runs[RUNS / 2].as_nanos() as f64 / NODES as f64,
        heap as f64 / 1024.0
    );
}

fn main() {
    println!(
        "| cluster CIDRs (node mask) | best ms for {NODES} nodes | median ms | ns/node | heap KiB after |"
    );
    println!("|---|---|---|---|---|");
    bench(
        "10.0.0.0/8 (/24), fd00::/48 (/64)",
        &[("10.0.0.0/8", 24), ("fd00::/48", 64)],
    );
    bench(
        "fd00::/48 (/64), 10.0.0.0/8 (/24)",
        &[("fd00::/48", 64), ("10.0.0.0/8", 24)],
    );
    bench(
        "10.0.0.0/8 (/24), 2001:db8::/32 (/64)",
        &[("10.0.0.0/8", 24), ("2001:db8::/32", 64)],
    );
}
