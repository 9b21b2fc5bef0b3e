//! `duostack-bench`: load against a real `duostack server` process over HTTPS.
//!
//! `duostack-bench api` measures Service create and get throughput and latency with 1 and 16
//! concurrent clients (each with its own keep-alive connection) against the embedded store,
//! and the server's idle resident memory. Every acknowledged create is fsynced by the server.
//! Results are printed as Markdown for BENCHMARKS.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use duostack_testkit::{ApiClient, Cluster, cpu_seconds};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Dual-stack Service creates (PreferDualStack on a dual-stack cluster) with 1 and 16
    /// clients, then RSS with `--total` dual-stack Services stored.
    Services {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 10_000)]
        total: usize,
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Nodes created by 16 clients until every one has a podCIDR of each family.
    Nodes {
        #[arg(long, default_value_t = 5000)]
        nodes: usize,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// EndpointSlice reconcile latency: `--services` dual-stack Services with `--pods` ready
    /// dual-stack pods each; then, one at a time, a pod's status changes and the time until
    /// both of its Service's slices show the change is measured.
    Endpointslices {
        #[arg(long, default_value_t = 1000)]
        services: usize,
        #[arg(long, default_value_t = 10)]
        pods: usize,
        #[arg(long, default_value_t = 200)]
        samples: usize,
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Create/get throughput and latency, and idle RSS.
    Api {
        /// Concurrent clients per run.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        clients: Vec<usize>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The duostack binary (default: next to this one).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
}

fn default_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating this binary")?;
    let bin = me.with_file_name("duostack");
    if !bin.exists() {
        bail!(
            "{} not found; build it with `cargo build --release -p duostack`",
            bin.display()
        );
    }
    Ok(bin)
}

/// Latency samples and a count.
struct Run {
    /// Server CPU seconds used during the run.
    server_cpu: f64,
    ops: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    errors: u64,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    /// Server CPU per operation, in microseconds.
    fn cpu_us(&self) -> f64 {
        self.server_cpu * 1e6 / self.ops.max(1) as f64
    }
    /// Share of the machine's cores the server used.
    fn cpu_share(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        self.server_cpu / self.elapsed.as_secs_f64() / cores * 100.0
    }
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i] as f64 / 1000.0
    }
}

/// Runs `op` in a loop on `clients` connections for `seconds`. `op` takes the connection and
/// hands it back with whether the operation succeeded.
async fn run_load<F, Fut>(
    cluster: &Cluster,
    clients: usize,
    seconds: u64,
    op: F,
) -> anyhow::Result<Run>
where
    F: Fn(usize, u64, ApiClient) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (bool, ApiClient)> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let cpu_before = cluster.pid().and_then(cpu_seconds).unwrap_or(0.0);
    let started = Instant::now();
    for c in 0..clients {
        let mut client = cluster.client()?;
        client.get("/readyz").await?;
        let op = op.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let (ok, back) = op(c, i, client).await;
                client = back;
                if ok {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
            lat
        }));
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await?);
    }
    let elapsed = started.elapsed();
    let server_cpu = cluster.pid().and_then(cpu_seconds).unwrap_or(0.0) - cpu_before;
    Ok(Run {
        server_cpu,
        ops: latencies_us.len() as u64,
        elapsed,
        latencies_us,
        errors: errors.load(Ordering::Relaxed),
    })
}

async fn api(clients: Vec<usize>, seconds: u64, binary: PathBuf) -> anyhow::Result<()> {
    let cluster = Cluster::start(&binary, &[])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = cluster.rss_kib().unwrap_or(0);
    println!("server: {} (pid {:?})", binary.display(), cluster.pid());
    println!("idle RSS after start: {:.1} MiB", idle_rss as f64 / 1024.0);
    println!();
    println!(
        "| operation | clients | ops/s | p50 ms | p99 ms | errors | server CPU µs/op | server share of all cores |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut created: Vec<(usize, usize, u64)> = Vec::new();
    for (round, &n) in clients.iter().enumerate() {
        let create = run_load(&cluster, n, seconds, move |c, i, mut client: ApiClient| {
            let body = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("bench-{round}-{c}-{i}"), "labels": {"app": "bench"}},
                "spec": {"selector": {"app": "bench"}, "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}});
            let body = serde_json::to_vec(&body).unwrap_or_default();
            async move {
                let r = client
                    .request("POST", "/api/v1/namespaces/default/services", Some("application/json"), body)
                    .await;
                (matches!(r, Ok(ref r) if r.status == 201), client)
            }
        })
        .await;
        let create = create?;
        println!(
            "| create Service | {n} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {:.0}% |",
            create.per_sec(),
            create.pct(0.5),
            create.pct(0.99),
            create.errors,
            create.cpu_us(),
            create.cpu_share()
        );
        created.push((round, n, create.ops));
    }
    let names: Arc<Vec<String>> = Arc::new({
        let mut c = cluster.client()?;
        let list = c
            .get("/api/v1/namespaces/default/services?limit=2000")
            .await?
            .json();
        list["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    });
    for &n in &clients {
        let names = names.clone();
        let get = run_load(&cluster, n, seconds, move |c, i, mut client: ApiClient| {
            let name = names[(c * 7919 + i as usize) % names.len()].clone();
            async move {
                let r = client
                    .get(&format!("/api/v1/namespaces/default/services/{name}"))
                    .await;
                (matches!(r, Ok(ref r) if r.status == 200), client)
            }
        })
        .await?;
        println!(
            "| get Service | {n} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {:.0}% |",
            get.per_sec(),
            get.pct(0.5),
            get.pct(0.99),
            get.errors,
            get.cpu_us(),
            get.cpu_share()
        );
    }
    let total: u64 = created.iter().map(|(_, _, n)| n).sum();
    println!();
    println!(
        "RSS after {total} creates and the get runs: {:.1} MiB",
        cluster.rss_kib().unwrap_or(0) as f64 / 1024.0
    );
    Ok(())
}

fn dual_stack_body(name: String) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"ipFamilyPolicy": "PreferDualStack", "selector": {"app": "bench"},
                 "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}}))
    .unwrap_or_default()
}

async fn services(seconds: u64, total: usize, binary: PathBuf) -> anyhow::Result<()> {
    // A /16 and a /108 hold the total many times over, so the runs measure creation, not a
    // full range.
    let cluster = Cluster::start(
        &binary,
        &["--service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/108"],
    )?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "idle RSS after start: {:.1} MiB",
        cluster.rss_kib().unwrap_or(0) as f64 / 1024.0
    );
    println!();
    println!("| operation | clients | ops/s | p50 ms | p99 ms | errors | server CPU µs/op |");
    println!("|---|---|---|---|---|---|---|");
    let mut created = 0u64;
    for (round, n) in [1usize, 16].into_iter().enumerate() {
        let run = run_load(&cluster, n, seconds, move |c, i, mut client: ApiClient| {
            let body = dual_stack_body(format!("ds-{round}-{c}-{i}"));
            async move {
                let r = client
                    .request("POST", "/api/v1/namespaces/default/services", Some("application/json"), body)
                    .await;
                let ok = matches!(&r, Ok(r) if r.status == 201 && r.json()["spec"]["clusterIPs"].as_array().is_some_and(|a| a.len() == 2));
                (ok, client)
            }
        })
        .await?;
        created += run.ops;
        println!(
            "| create dual-stack Service | {n} | {:.0} | {:.2} | {:.2} | {} | {:.0} |",
            run.per_sec(),
            run.pct(0.5),
            run.pct(0.99),
            run.errors,
            run.cpu_us()
        );
    }
    println!();
    println!(
        "RSS after the timed runs ({created} dual-stack Services stored): {:.1} MiB",
        cluster.rss_kib().unwrap_or(0) as f64 / 1024.0
    );
    drop(cluster);

    // A fresh server holding exactly `total` dual-stack Services.
    let cluster = Cluster::start(
        &binary,
        &["--service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/108"],
    )?;
    let per_client = total.div_ceil(16);
    let mut tasks = Vec::new();
    for c in 0..16 {
        let mut client = cluster.client()?;
        let n = per_client.min(total.saturating_sub(c * per_client));
        tasks.push(tokio::spawn(async move {
            let mut ok = 0usize;
            for i in 0..n {
                let body = dual_stack_body(format!("fill-{c}-{i}"));
                if let Ok(r) = client
                    .request(
                        "POST",
                        "/api/v1/namespaces/default/services",
                        Some("application/json"),
                        body,
                    )
                    .await
                    && r.status == 201
                {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut c = cluster.client()?;
    let m = c.get("/metrics").await?.text();
    for l in m
        .lines()
        .filter(|l| l.starts_with("kube_apiserver_clusterip_allocator_allocated_ips"))
    {
        println!("    {l}");
    }
    println!(
        "RSS with {stored} dual-stack Services stored (plus the kubernetes Service): {:.1} MiB",
        cluster.rss_kib().unwrap_or(0) as f64 / 1024.0
    );
    Ok(())
}

/// Runs `make(i)` requests for `i in 0..n` on `clients` connections; returns failures.
async fn fill(
    cluster: &Cluster,
    clients: usize,
    n: usize,
    make: impl Fn(usize) -> (&'static str, String, String, serde_json::Value)
    + Send
    + Sync
    + Clone
    + 'static,
) -> anyhow::Result<usize> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = cluster.client()?;
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for i in (c..n).step_by(clients) {
                let (method, path, ct, body) = make(i);
                let ok = client
                    .request(
                        method,
                        &path,
                        Some(&ct),
                        serde_json::to_vec(&body).unwrap_or_default(),
                    )
                    .await
                    .is_ok_and(|r| r.status < 300);
                if !ok {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await?;
    }
    Ok(failed)
}

fn pod_cidr_count(node: &serde_json::Value) -> usize {
    node["spec"]["podCIDRs"].as_array().map_or(0, Vec::len)
}

async fn nodes(n: usize, clients: usize, binary: PathBuf) -> anyhow::Result<()> {
    // Room for the nodes in both families: 16,384 /24s and 65,536 /64s.
    let cluster = Cluster::start(&binary, &["--cluster-cidr=10.64.0.0/10,fd00:10:244::/48"])?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = cluster.rss_kib().unwrap_or(0);
    let cpu_before = cluster.pid().and_then(cpu_seconds).unwrap_or(0.0);
    let mut client = cluster.client()?;
    let list = client.get("/api/v1/nodes").await?.json();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let mut watch = client
        .watch(&format!("/api/v1/nodes?watch=true&resourceVersion={rv}"))
        .await?;
    let started = Instant::now();
    let creator = {
        let cluster_clients: Vec<ApiClient> = (0..clients)
            .map(|_| cluster.client())
            .collect::<Result<_, _>>()?;
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for (c, mut client) in cluster_clients.into_iter().enumerate() {
                tasks.push(tokio::spawn(async move {
                    let mut failed = 0;
                    for i in (c..n).step_by(clients) {
                        let body = json!({"apiVersion": "v1", "kind": "Node",
                            "metadata": {"name": format!("node-{i:05}")}});
                        if !client
                            .post_json("/api/v1/nodes", &body)
                            .await
                            .is_ok_and(|r| r.status == 201)
                        {
                            failed += 1;
                        }
                    }
                    failed
                }));
            }
            let mut failed = 0;
            for t in tasks {
                failed += t.await.unwrap_or(1);
            }
            (failed, started.elapsed())
        })
    };
    let mut done = std::collections::HashSet::new();
    while done.len() < n {
        let Some(ev) = watch.next(Duration::from_secs(30)).await else {
            bail!("watch ended with {} of {n} nodes allocated", done.len());
        };
        let obj = &ev["object"];
        if pod_cidr_count(obj) == 2 {
            done.insert(obj["metadata"]["name"].as_str().unwrap_or("").to_owned());
        }
    }
    let all = started.elapsed();
    let (failed, created) = creator.await?;
    let cpu = cluster.pid().and_then(cpu_seconds).unwrap_or(0.0) - cpu_before;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = cluster.rss_kib().unwrap_or(0);
    // Check the result: every node has two ranges, none shared.
    let list = client.get("/api/v1/nodes").await?.json();
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    for node in &items {
        for c in node["spec"]["podCIDRs"].as_array().into_iter().flatten() {
            if !seen.insert(c.as_str().unwrap_or("").to_owned()) {
                bail!("podCIDR {c} handed out twice");
            }
        }
    }
    println!(
        "| nodes | clients | all created | all with both podCIDRs | failed creates | server CPU s | RSS before → after |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {n} | {clients} | {:.2} s | {:.2} s | {failed} | {cpu:.1} | {:.1} → {:.1} MiB |",
        created.as_secs_f64(),
        all.as_secs_f64(),
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    println!(
        "checked: {} nodes, {} distinct podCIDRs",
        items.len(),
        seen.len()
    );
    Ok(())
}

fn slice_addresses(slice: &serde_json::Value) -> Vec<String> {
    slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

fn pod_status(v4: &str, v6: &str) -> serde_json::Value {
    json!({"status": {"phase": "Running", "podIP": v4,
        "podIPs": [{"ip": v4}, {"ip": v6}],
        "conditions": [{"type": "Ready", "status": "True"}]}})
}

async fn endpointslices(
    services: usize,
    pods: usize,
    samples: usize,
    binary: PathBuf,
) -> anyhow::Result<()> {
    let cluster = Cluster::start(
        &binary,
        &["--service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/108"],
    )?;
    let ns = "/api/v1/namespaces/default";
    let setup = Instant::now();
    let failed = fill(&cluster, 16, services, move |i| {
        (
            "POST",
            format!("{ns}/services"),
            "application/json".into(),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}")},
            "spec": {"ipFamilyPolicy": "PreferDualStack", "selector": {"app": format!("svc-{i}")},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        )
    })
    .await?;
    let total = services * pods;
    let failed = failed
        + fill(&cluster, 16, total, move |i| {
            let (s, p) = (i / pods, i % pods);
            ("POST", format!("{ns}/pods"), "application/json".into(),
             json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("svc-{s}-pod-{p}"), "labels": {"app": format!("svc-{s}")}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))
        })
        .await?
        + fill(&cluster, 16, total, move |i| {
            let (s, p) = (i / pods, i % pods);
            let v4 = format!("10.{}.{}.{}", 100 + s / 250, s % 250, p + 1);
            let v6 = format!("fd00:10:244:{s:x}::{:x}", p + 1);
            ("PATCH", format!("{ns}/pods/svc-{s}-pod-{p}/status"),
             "application/merge-patch+json".into(), pod_status(&v4, &v6))
        })
        .await?;
    if failed > 0 {
        bail!("{failed} setup requests failed");
    }
    // Wait until the controller has caught up: every endpoint in a slice.
    let mut client = cluster.client()?;
    loop {
        let list = client
            .get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices")
            .await?
            .json();
        let n: usize = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| slice_addresses(s).len())
            .sum();
        if n == 2 * total {
            break;
        }
        if setup.elapsed() > Duration::from_secs(600) {
            bail!("after 600 s the slices hold {n} of {} addresses", 2 * total);
        }
        eprintln!("waiting for slices: {n} of {} addresses", 2 * total);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let setup = setup.elapsed();
    let rss = cluster.rss_kib().unwrap_or(0);

    let list = client
        .get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?limit=1")
        .await?
        .json();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let mut watch = client
        .watch(&format!(
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?watch=true&resourceVersion={rv}"
        ))
        .await?;
    let mut writer = cluster.client()?;
    let mut lat_us = Vec::with_capacity(samples);
    let mut write_us = Vec::with_capacity(samples);
    let cpu_before = cluster.pid().and_then(cpu_seconds).unwrap_or(0.0);
    for k in 0..samples {
        let s = (k * 7919) % services;
        let p = k % pods;
        let v4 = format!("10.250.{}.{}", k / 250, k % 250 + 1);
        let v6 = format!("fd00:99::{:x}", k + 1);
        let body = serde_json::to_vec(&pod_status(&v4, &v6))?;
        let t = Instant::now();
        let r = writer
            .request(
                "PATCH",
                &format!("{ns}/pods/svc-{s}-pod-{p}/status"),
                Some("application/merge-patch+json"),
                body,
            )
            .await?;
        if r.status != 200 {
            bail!("status write failed: {}", r.text());
        }
        write_us.push(t.elapsed().as_micros() as u64);
        let (mut seen4, mut seen6) = (false, false);
        while !(seen4 && seen6) {
            let Some(ev) = watch.next(Duration::from_secs(10)).await else {
                bail!("no slice update for svc-{s} within 10 s");
            };
            let obj = &ev["object"];
            if obj["metadata"]["labels"]["kubernetes.io/service-name"]
                != format!("svc-{s}").as_str()
            {
                continue;
            }
            let addrs = slice_addresses(obj);
            seen4 |= addrs.contains(&v4);
            seen6 |= addrs.contains(&v6);
        }
        lat_us.push(t.elapsed().as_micros() as u64);
    }
    let cpu = cluster.pid().and_then(cpu_seconds).unwrap_or(0.0) - cpu_before;
    let pct = |v: &mut Vec<u64>, p: f64| {
        v.sort_unstable();
        v[((v.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
    };
    println!(
        "setup: {services} dual-stack Services, {total} dual-stack pods, all in slices after {:.1} s; RSS {:.1} MiB",
        setup.as_secs_f64(),
        rss as f64 / 1024.0
    );
    println!();
    println!(
        "| samples | status write p50 ms | both slices updated p50 ms | p99 ms | max ms | server CPU ms per change |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {samples} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
        pct(&mut write_us, 0.5),
        pct(&mut lat_us, 0.5),
        pct(&mut lat_us, 0.99),
        pct(&mut lat_us, 1.0),
        cpu * 1000.0 / samples as f64
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Cmd::Services {
            seconds,
            total,
            binary,
        } => {
            let binary = match binary {
                Some(b) => b,
                None => default_binary()?,
            };
            rt.block_on(services(seconds, total, binary))
        }
        Cmd::Nodes {
            nodes: n,
            clients,
            binary,
        } => {
            let binary = match binary {
                Some(b) => b,
                None => default_binary()?,
            };
            rt.block_on(nodes(n, clients, binary))
        }
        Cmd::Endpointslices {
            services,
            pods,
            samples,
            binary,
        } => {
            let binary = match binary {
                Some(b) => b,
                None => default_binary()?,
            };
            rt.block_on(endpointslices(services, pods, samples, binary))
        }
        Cmd::Api {
            clients,
            seconds,
            binary,
        } => {
            let binary = match binary {
                Some(b) => b,
                None => default_binary()?,
            };
            rt.block_on(api(clients, seconds, binary))
        }
    }
}
