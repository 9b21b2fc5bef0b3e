//! duostack's control plane: a Kubernetes-compatible API server over HTTPS, backed by a
//! [`duostack_store::Store`], with its controllers.
//!
//! [`start`] opens the store, loads or creates the serving credentials, writes the admin
//! kubeconfig, creates the built-in namespaces and serves until the returned [`Server`] is
//! dropped or [`Server::shutdown`] is called.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use duostack_core::kinds;
use duostack_core::openapi::OpenApi;
use duostack_store::Store;
use duostack_store::embedded::{EmbeddedOptions, EmbeddedStore};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub mod allocations;
pub mod controllers;
pub mod discovery;
pub mod endpointslices;
pub mod events;
pub mod handler;
pub mod hooks;
pub mod informer;
pub mod node_ipam;
pub mod pod_host_ips;
pub mod registry;
pub mod repair;
pub mod reply;
pub mod request;
pub mod tls;
pub mod watch;

mod bootstrap;

/// Which store backs the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    Embedded,
    Etcd { servers: Vec<String> },
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    /// How often history is compacted (kube-apiserver's `--etcd-compaction-interval`).
    pub compaction_interval: Duration,
    /// How often idle watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Service and pod ranges, validated.
    pub network: duostack_core::config::NetworkConfig,
    /// How often the allocation repair pass runs (it also runs at start).
    pub repair_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("opening the {backend} store: {source}")]
    Store {
        backend: &'static str,
        source: duostack_store::StoreError,
    },
    /// The requested store backend is not available in this build.
    #[error("store backend {0} is not available yet")]
    UnsupportedStore(&'static str),
    /// Credentials could not be loaded or created.
    #[error("serving credentials: {0}")]
    Tls(#[from] tls::TlsError),
    /// The listen address could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Creating the built-in objects failed.
    #[error("creating built-in objects: {0}")]
    Bootstrap(duostack_core::error::ApiError),
}

/// A running server.
pub struct Server {
    pub local_addr: SocketAddr,
    pub kubeconfig: PathBuf,
    pub registry: Arc<registry::Registry>,
    pub allocations: Arc<allocations::ServiceAllocations>,
    pub node_ipam: Arc<node_ipam::NodeIpam>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Stops accepting connections and background loops.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops (it stops only on shutdown).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

fn create_data_dir(dir: &std::path::Path) -> Result<(), ServerError> {
    use std::os::unix::fs::DirBuilderExt;
    let err = |source| ServerError::DataDir {
        path: dir.to_owned(),
        source,
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    Ok(())
}

pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
    create_data_dir(&config.data_dir)?;
    let store: Arc<dyn Store> = match &config.store {
        StoreConfig::Embedded => {
            let dir = config.data_dir.join("store");
            let s = tokio::task::spawn_blocking(move || {
                EmbeddedStore::open(&dir, EmbeddedOptions::default())
            })
            .await
            .map_err(|e| ServerError::Store {
                backend: "embedded",
                source: duostack_store::StoreError::Backend {
                    backend: "embedded",
                    operation: "open",
                    message: e.to_string(),
                },
            })?
            .map_err(|source| ServerError::Store {
                backend: "embedded",
                source,
            })?;
            Arc::new(s)
        }
        StoreConfig::Etcd { .. } => return Err(ServerError::UnsupportedStore("etcd")),
    };

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let creds = tls::load_or_create(&config.data_dir, local_addr)?;

    let kinds = kinds::all();
    let allocations = Arc::new(allocations::ServiceAllocations::new(config.network.clone()));
    let node_ipam = Arc::new(
        node_ipam::NodeIpam::new(&config.network)
            .map_err(|e| ServerError::Bootstrap(duostack_core::error::ApiError::internal(e)))?,
    );
    let registry = Arc::new(
        registry::Registry::new(store, kinds.clone())
            .with_hooks(
                &duostack_core::resource::SERVICES,
                Arc::new(allocations::ServiceHooks {
                    alloc: allocations.clone(),
                }),
            )
            .with_hooks(
                &duostack_core::resource::NODES,
                Arc::new(node_ipam::NodeHooks {
                    ipam: node_ipam.clone(),
                }),
            ),
    );
    bootstrap::ensure_builtins(&registry)
        .await
        .map_err(ServerError::Bootstrap)?;
    // Repair before serving: memory is rebuilt from the store, and anything a crash or an
    // older version left inconsistent is fixed and reported.
    let reported = Arc::new(repair::Reported::default());
    let report = repair::repair(&registry, &allocations, &reported, true)
        .await
        .map_err(ServerError::Bootstrap)?;
    if report != repair::RepairReport::default() {
        tracing::warn!(?report, "allocation repair at start found problems");
    }
    let report = node_ipam::repair(&registry, &node_ipam, &config.network, &reported, true)
        .await
        .map_err(ServerError::Bootstrap)?;
    if report != node_ipam::PodCidrReport::default() {
        tracing::warn!(?report, "podCIDR repair at start found problems");
    }
    bootstrap::ensure_kubernetes_service(&registry, &config.network, local_addr.port())
        .await
        .map_err(ServerError::Bootstrap)?;
    let version = discovery::version();
    let openapi = OpenApi::build(&kinds, version["gitVersion"].as_str().unwrap_or("v1.37.0"));
    let server_allocations = allocations.clone();
    let state = Arc::new(handler::State {
        registry: registry.clone(),
        allocations: allocations.clone(),
        node_ipam: node_ipam.clone(),
        bookmark_interval: config.bookmark_interval,
        token: creds.token.clone(),
        openapi,
        server_address: tls::client_address(local_addr).to_string(),
    });
    // The kubeconfig is written last: its presence tells scripts the server is ready.
    let kubeconfig = tls::write_kubeconfig(&config.data_dir, local_addr, &creds)?;

    let (shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let acceptor = tokio_rustls::TlsAcceptor::from(creds.server_config.clone());
    let bg_registry = registry.clone();
    let compaction = config.compaction_interval;
    let repair_interval = config.repair_interval;
    let bg_ipam = node_ipam.clone();
    let network = config.network.clone();
    let apiserver_network = config.network.clone();
    let task = tokio::spawn(async move {
        let ns = tokio::spawn(controllers::namespace_controller(bg_registry.clone()));
        let repairer = tokio::spawn(repair::repair_loop(
            bg_registry.clone(),
            allocations,
            bg_ipam.clone(),
            network,
            reported,
            repair_interval,
        ));
        let ipam_controller = tokio::spawn(node_ipam::controller(bg_registry.clone(), bg_ipam));
        let host_ips = tokio::spawn(pod_host_ips::controller(bg_registry.clone()));
        let slices = tokio::spawn(endpointslices::controller(bg_registry.clone()));
        let apiserver_service = tokio::spawn(bootstrap::kubernetes_service_controller(
            bg_registry.clone(),
            apiserver_network,
            local_addr.port(),
        ));
        let compactor = tokio::spawn(controllers::compactor(bg_registry, compaction));
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, peer)) = accepted else { continue };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let state = state.clone();
                    tokio::spawn(async move {
                        let tls = match acceptor.accept(tcp).await {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                        };
                        let service = hyper::service::service_fn(move |req| {
                            let state = state.clone();
                            async move { Ok::<_, std::convert::Infallible>(handler::handle(state, req).await) }
                        });
                        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                _ = shutdown_rx.changed() => break,
            }
        }
        ns.abort();
        compactor.abort();
        repairer.abort();
        ipam_controller.abort();
        host_ips.abort();
        slices.abort();
        apiserver_service.abort();
    });
    tracing::info!(%local_addr, kubeconfig = %kubeconfig.display(), "duostack server listening");
    Ok(Server {
        local_addr,
        kubeconfig,
        registry,
        allocations: server_allocations,
        node_ipam,
        shutdown,
        task,
    })
}
