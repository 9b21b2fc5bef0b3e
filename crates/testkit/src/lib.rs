//! Support for duostack's integration tests and benchmarks: a `duostack server` process in a
//! throwaway data directory, the real `kubectl` pointed at it, and a small HTTPS client.
//!
//! Everything listens on and talks to 127.0.0.1 only.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub mod layouts;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

/// Whether missing prerequisites must fail instead of skip (CI sets `CI=true`).
pub fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports a test that cannot run. Under `CI=true` this fails the test; otherwise it prints a
/// line the test script counts and the test returns early.
pub fn skip(test: &str, why: &str) {
    if strict() {
        panic!("{test}: prerequisite missing under CI=true: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    // cargo test hides a passing test's output; the test script reads this file instead.
    if let Some(path) = std::env::var_os("DUOSTACK_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = writeln!(f, "SKIPPED {test}: {why}");
        }
    }
}

/// The kubectl binary, if installed.
pub fn kubectl_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
}

/// A free loopback port (bound then released; good enough for tests run serially per port).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// A `duostack server` process with its own data directory.
pub struct Cluster {
    pub binary: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub args: Vec<String>,
    child: Option<Child>,
    kube_cache: tempfile::TempDir,
}

impl Cluster {
    /// Starts a server with extra flags and waits until it answers.
    pub fn start(binary: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("temp data dir")?;
        let mut c = Self {
            binary: binary.to_owned(),
            dir,
            port: free_port(),
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
            kube_cache: tempfile::tempdir().context("temp kube cache")?,
        };
        c.spawn()?;
        Ok(c)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("kubeconfig")
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .context("server log")?;
        let child = Command::new(&self.binary)
            .arg("server")
            .arg("--listen")
            .arg(self.addr().to_string())
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.args)
            .env("DUOSTACK_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("server exited with {status} during start:\n{}", self.log());
            }
            if self.kubeconfig().exists() && std::net::TcpStream::connect(self.addr()).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("server did not become ready:\n{}", self.log())
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same data directory and port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        // A stale kubeconfig must not count as readiness.
        let _ = std::fs::remove_file(self.kubeconfig());
        self.spawn()
    }

    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.kube_cache.path())
            .env_remove("KUBECTL_EXTERNAL_DIFF");
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    /// Runs kubectl, panicking with its output if it fails; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl with `input` on its stdin (for `-f -`), panicking if it fails.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .expect("write kubectl stdin");
        }
        let out = child.wait_with_output().expect("wait for kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdin: {input}\nstderr: {}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn kubectl_err(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// An HTTPS client with the admin token.
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        ApiClient::from_data_dir(&self.data_dir(), self.addr())
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid()?)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// CPU time (user + system) a process has used, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // Linux reports clock ticks, which are 1/100 s on every supported configuration.
    Some((utime + stime) / 100.0)
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A response as raw parts.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTPS client: one HTTP/1.1 keep-alive connection per client, trusting the
/// cluster CA, sending the bearer token.
pub struct ApiClient {
    addr: SocketAddr,
    token: String,
    tls: Arc<rustls::ClientConfig>,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl ApiClient {
    pub fn from_data_dir(dir: &Path, addr: SocketAddr) -> anyhow::Result<Self> {
        let token = std::fs::read_to_string(dir.join("token"))
            .context("reading token")?
            .trim()
            .to_owned();
        let ca = std::fs::read(dir.join("ca.crt")).context("reading ca.crt")?;
        Self::new(addr, token, &ca)
    }

    /// From a kubeconfig written by duostack (CA data and token inline).
    pub fn from_kubeconfig(path: &Path, addr: SocketAddr) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).context("reading kubeconfig")?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        let ca = base64::engine::general_purpose::STANDARD
            .decode(field("certificate-authority-data:").context("no CA in kubeconfig")?)
            .context("CA data")?;
        let token = field("token:").context("no token in kubeconfig")?;
        Self::new(addr, token, &ca)
    }

    fn new(addr: SocketAddr, token: String, ca_pem: &[u8]) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.context("CA PEM")?).context("adding CA")?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            addr,
            token,
            tls: Arc::new(tls),
            sender: None,
        })
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = token.to_owned();
        self
    }

    async fn connect(&mut self) -> anyhow::Result<()> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .context("connect")?;
        tcp.set_nodelay(true)?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let tls = connector
            .connect(ServerName::IpAddress(self.addr.ip().into()), tcp)
            .await
            .context("TLS handshake")?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends one request and reads the whole response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Reply> {
        let headers: Vec<(&str, &str)> = content_type
            .map(|ct| vec![("content-type", ct)])
            .unwrap_or_default();
        self.request_with(method, path, &headers, body).await
    }

    /// Sends one request with extra headers (an `accept` here replaces the default JSON one).
    pub async fn request_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Reply> {
        let body = body.into();
        for attempt in 0..2 {
            if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
                self.connect().await?;
            }
            let sender = self.sender.as_mut().expect("connected");
            sender.ready().await.ok();
            let mut req = http::Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, self.addr.to_string())
                .header(
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", self.token),
                );
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
            {
                req = req.header(http::header::ACCEPT, "application/json");
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = req.body(Full::new(body.clone()))?;
            match sender.send_request(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = body.collect().await?.to_bytes();
                    return Ok(Reply {
                        status: parts.status.as_u16(),
                        headers: parts.headers,
                        body,
                    });
                }
                Err(e) if attempt == 0 && e.is_closed() => {
                    self.sender = None;
                }
                Err(e) => return Err(e.into()),
            }
        }
        bail!("connection closed twice")
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Reply> {
        self.request("GET", path, None, Bytes::new()).await
    }

    pub async fn post_json(
        &mut self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<Reply> {
        self.request(
            "POST",
            path,
            Some("application/json"),
            serde_json::to_vec(body)?,
        )
        .await
    }

    /// Opens a watch and returns a reader of its event lines.
    pub async fn watch(&mut self, path: &str) -> anyhow::Result<WatchReader> {
        let mut fresh = ApiClient {
            addr: self.addr,
            token: self.token.clone(),
            tls: self.tls.clone(),
            sender: None,
        };
        fresh.connect().await?;
        let sender = fresh.sender.as_mut().expect("connected");
        let req = http::Request::builder()
            .method("GET")
            .uri(path)
            .header(http::header::HOST, self.addr.to_string())
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .body(Full::new(Bytes::new()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        Ok(WatchReader {
            status,
            body: resp.into_body(),
            buf: Vec::new(),
            _client: fresh,
        })
    }
}

/// Reads newline-delimited watch events.
pub struct WatchReader {
    pub status: u16,
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    _client: ApiClient,
}

impl WatchReader {
    /// The next event, or `None` at the end of the stream or after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return serde_json::from_slice(&line).ok();
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??;
            if let Ok(data) = frame.ok()?.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }
}
