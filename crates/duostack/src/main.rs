//! The `duostack` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use duostack_core::config::{NetworkConfig, NetworkFlags};
use duostack_server::{ServerConfig, StoreConfig};

// The API server allocates many short-lived JSON values per request; glibc's malloc showed as
// a fifth of the server's CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "duostack",
    version,
    about = "IPv4/IPv6 dual-stack cluster networking"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: a Kubernetes-compatible API server and its controllers.
    Server(ServerArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    Embedded,
    Etcd,
}

#[derive(Parser)]
struct ServerArgs {
    /// ClusterIP ranges, `<cidr>[,<cidr>]`; the first range's family is the cluster default.
    #[arg(long, default_value = "10.96.0.0/16,fd00:10:96::/112")]
    service_cluster_ip_range: String,
    /// Pod ranges node podCIDRs are cut from, `<cidr>[,<cidr>]`, in podCIDRs order.
    #[arg(long, default_value = "10.244.0.0/16,fd00:10:244::/56")]
    cluster_cidr: String,
    /// Node podCIDR prefix length for a single-stack cluster (0 = unset).
    #[arg(long, default_value_t = 0)]
    node_cidr_mask_size: u8,
    /// Node podCIDR prefix length for IPv4 (0 = the default, 24).
    #[arg(long, default_value_t = 0)]
    node_cidr_mask_size_ipv4: u8,
    /// Node podCIDR prefix length for IPv6 (0 = the default, 64).
    #[arg(long, default_value_t = 0)]
    node_cidr_mask_size_ipv6: u8,
    /// Port range NodePorts are allocated from.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Where the store, credentials and kubeconfig live.
    #[arg(long, default_value = "./duostack-data")]
    data_dir: PathBuf,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Store backend.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    store: StoreKind,
    /// etcd client URLs, comma-separated (with --store=etcd).
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// Seconds between store compactions (history older than one interval is dropped).
    #[arg(long, default_value_t = 300, hide = true)]
    compaction_interval: u64,
    /// Seconds between bookmarks on idle watches that allow them.
    #[arg(long, default_value_t = 60, hide = true)]
    bookmark_interval: u64,
    /// Seconds between allocation repair passes (one also runs at start).
    #[arg(long, default_value_t = 180, hide = true)]
    repair_interval: u64,
}

fn validate(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
    let network = NetworkConfig::from_flags(&NetworkFlags {
        service_cluster_ip_range: args.service_cluster_ip_range.clone(),
        cluster_cidr: args.cluster_cidr.clone(),
        node_cidr_mask_size: args.node_cidr_mask_size,
        node_cidr_mask_size_ipv4: args.node_cidr_mask_size_ipv4,
        node_cidr_mask_size_ipv6: args.node_cidr_mask_size_ipv6,
        service_node_port_range: args.service_node_port_range.clone(),
    })?;
    let store = match args.store {
        StoreKind::Embedded => {
            if !args.etcd_servers.is_empty() {
                bail!(
                    "invalid value {:?} for flag --etcd-servers: only used with --store=etcd",
                    args.etcd_servers.join(",")
                );
            }
            StoreConfig::Embedded
        }
        StoreKind::Etcd => {
            if args.etcd_servers.is_empty() {
                bail!("flag --etcd-servers must be set when --store=etcd");
            }
            for url in &args.etcd_servers {
                let rest = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"));
                let ok = rest.is_some_and(|r| {
                    r.rsplit_once(':')
                        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                });
                if !ok {
                    bail!(
                        "invalid value {url:?} for flag --etcd-servers: each entry must be a URL like http://127.0.0.1:2379"
                    );
                }
            }
            StoreConfig::Etcd {
                servers: args.etcd_servers.clone(),
            }
        }
    };
    if args.compaction_interval == 0 {
        bail!("invalid value \"0\" for flag --compaction-interval: must be at least 1 second");
    }
    if args.repair_interval == 0 {
        bail!("invalid value \"0\" for flag --repair-interval: must be at least 1 second");
    }
    if args.bookmark_interval == 0 {
        bail!("invalid value \"0\" for flag --bookmark-interval: must be at least 1 second");
    }
    if args.data_dir.exists() && !args.data_dir.is_dir() {
        bail!(
            "invalid value {:?} for flag --data-dir: exists and is not a directory",
            args.data_dir.display().to_string()
        );
    }
    Ok(ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        store,
        compaction_interval: Duration::from_secs(args.compaction_interval),
        bookmark_interval: Duration::from_secs(args.bookmark_interval),
        network,
        repair_interval: Duration::from_secs(args.repair_interval),
    })
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    // Everything is validated before anything is written.
    let config = validate(&args)?;
    let server = duostack_server::start(config)
        .await
        .context("starting the server")?;
    eprintln!(
        "duostack server listening on https://{}; kubeconfig: {}",
        server.local_addr,
        server.kubeconfig.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DUOSTACK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Server(args) => runtime.block_on(run_server(args)),
    }
}
