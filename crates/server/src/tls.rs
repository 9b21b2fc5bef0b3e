//! Serving credentials: a CA and bearer token created on first start and kept in the data
//! directory, a serving certificate issued at every start for the addresses the server
//! listens on, and the admin kubeconfig.
//!
//! Files in `<data-dir>` (documented in docs/server.md): `ca.crt`, `ca.key`, `token`,
//! `kubeconfig`. Keys and the token are written with mode 0600.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a credential file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Generating or parsing a key or certificate failed.
    #[error("{what}: {message}")]
    Crypto { what: &'static str, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

fn crypto(what: &'static str) -> impl FnOnce(rcgen::Error) -> TlsError {
    move |e| TlsError::Crypto {
        what,
        message: e.to_string(),
    }
}

/// What the server needs to serve HTTPS and authenticate clients.
pub struct Credentials {
    pub server_config: Arc<rustls::ServerConfig>,
    pub token: String,
    pub ca_pem: String,
}

const CA_CN: &str = "duostack-ca";

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// The addresses the serving certificate must name for a listen address.
fn sans(listen: SocketAddr) -> Vec<String> {
    let mut out = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let ip = listen.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        out.push(ip.to_string());
    }
    out
}

/// The address clients should use: an unspecified listen address means loopback.
pub fn client_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(v6) if v6.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// Loads the CA and token from `dir`, creating them on first start, and issues a serving
/// certificate for `listen`.
pub fn load_or_create(dir: &Path, listen: SocketAddr) -> Result<Credentials, TlsError> {
    let ca_key_path = dir.join("ca.key");
    let ca_crt_path = dir.join("ca.crt");
    let token_path = dir.join("token");

    let (ca_key, ca_pem) = if ca_key_path.exists() && ca_crt_path.exists() {
        let key_pem = std::fs::read_to_string(&ca_key_path).map_err(io_err(&ca_key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(crypto("parse CA key"))?;
        let ca_pem = std::fs::read_to_string(&ca_crt_path).map_err(io_err(&ca_crt_path))?;
        (key, ca_pem)
    } else {
        let key = KeyPair::generate().map_err(crypto("generate CA key"))?;
        let cert = ca_params()
            .self_signed(&key)
            .map_err(crypto("sign CA certificate"))?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
        let pem = cert.pem();
        std::fs::write(&ca_crt_path, &pem).map_err(io_err(&ca_crt_path))?;
        (key, pem)
    };

    let token = if token_path.exists() {
        std::fs::read_to_string(&token_path)
            .map_err(io_err(&token_path))?
            .trim()
            .to_owned()
    } else {
        let bytes: [u8; 32] = rand::random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&token_path, token.as_bytes())?;
        token
    };

    // The CA's subject and key are all an issuer needs; its certificate need not be parsed.
    let issuer = Issuer::new(ca_params(), &ca_key);
    let server_key = KeyPair::generate().map_err(crypto("generate serving key"))?;
    let mut params = CertificateParams::new(sans(listen)).map_err(crypto("serving SANs"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "duostack-apiserver");
    params.distinguished_name = dn;
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .map_err(crypto("sign serving certificate"))?;

    let ca_der =
        rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes()).map_err(|e| {
            TlsError::Crypto {
                what: "parse CA certificate",
                message: e.to_string(),
            }
        })?;
    let chain: Vec<CertificateDer<'static>> = vec![server_cert.der().clone(), ca_der];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Crypto {
            what: "TLS versions",
            message: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Crypto {
            what: "serving certificate",
            message: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Credentials {
        server_config: Arc::new(config),
        token,
        ca_pem,
    })
}

/// Writes `<dir>/kubeconfig` for the admin user.
pub fn write_kubeconfig(
    dir: &Path,
    listen: SocketAddr,
    creds: &Credentials,
) -> Result<PathBuf, TlsError> {
    let path = dir.join("kubeconfig");
    let addr = client_address(listen);
    let ca = base64::engine::general_purpose::STANDARD.encode(creds.ca_pem.as_bytes());
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: duostack\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {ca}\ncontexts:\n- name: duostack\n  context:\n    cluster: duostack\n    user: admin\ncurrent-context: duostack\npreferences: {{}}\nusers:\n- name: admin\n  user:\n    token: {token}\n",
        token = creds.token
    );
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_persist_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let listen: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        let a = load_or_create(dir.path(), listen).unwrap();
        let b = load_or_create(dir.path(), "0.0.0.0:7000".parse().unwrap()).unwrap();
        assert_eq!(a.token, b.token);
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.token.len(), 64);
        let kc = write_kubeconfig(dir.path(), "0.0.0.0:7000".parse().unwrap(), &b).unwrap();
        let text = std::fs::read_to_string(kc).unwrap();
        assert!(text.contains("server: https://127.0.0.1:7000"));
        assert!(text.contains(&format!("token: {}", a.token)));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn ipv6_client_address() {
        assert_eq!(
            client_address("[::]:6443".parse().unwrap()).to_string(),
            "[::1]:6443"
        );
    }
}
