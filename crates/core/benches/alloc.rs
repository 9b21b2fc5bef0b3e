//! ClusterIP allocation cost: `cargo bench -p duostack-core --bench alloc`.
//!
//! For each range and fill level, times batches of `allocate_next` (each batch is released
//! again, untimed, so the fill level stays put) and reports nanoseconds per allocation.

use std::hint::black_box;
use std::time::{Duration, Instant};

use duostack_core::alloc::ip::IpAllocator;
use duostack_core::net::{ServiceCidr, parse_cidr_sloppy};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u128 {
        // xorshift64*: plenty for spreading start points.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let a = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (u128::from(a) << 64) | u128::from(self.0.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }
}

fn bench(cidr: &str, fill: u128, label: &str) {
    let mut a = IpAllocator::new(ServiceCidr(parse_cidr_sloppy(cidr).unwrap()));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..fill {
        a.allocate_next(rng.next()).unwrap();
    }
    let batch = ((a.free() / 2).min(1000)) as usize;
    let mut got = Vec::with_capacity(batch);
    let mut total = Duration::ZERO;
    let mut ops = 0u64;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let randoms: Vec<u128> = (0..batch).map(|_| rng.next()).collect();
        let t = Instant::now();
        for r in &randoms {
            got.push(black_box(a.allocate_next(*r).unwrap()));
        }
        total += t.elapsed();
        ops += batch as u64;
        for ip in got.drain(..) {
            a.release(ip);
        }
    }
    println!(
        "| {cidr} | {label} | {} of {} | {:.0} | {:.1} KiB |",
        a.used(),
        a.capacity(),
        total.as_nanos() as f64 / ops as f64,
        a.heap_bytes() as f64 / 1024.0
    );
}

fn main() {
    println!("| range | fill | allocated | ns/allocation | allocator memory |");
    println!("|---|---|---|---|---|");
    bench("10.96.0.0/16", 0, "empty");
    bench("10.96.0.0/16", 65534 * 99 / 100, "99% full");
    bench("fd00:10:96::/112", 0, "empty");
    bench("fd00:10:96::/112", 65535 * 99 / 100, "99% full");
    bench("fd00:10:96::/64", 0, "empty");
    // 99% of 2^64 cannot be held anywhere; a million scattered addresses is the largest
    // fill that means anything here.
    bench("fd00:10:96::/64", 1_000_000, "1,000,000 allocated");
}
