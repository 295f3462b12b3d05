//! shoal's certificate authority and the TLS half of interception.
//!
//! HTTPS-proxy mode (`CONNECT registry.ollama.ai:443`) and DNS mode (`--tls-listen`) both
//! terminate TLS for the *intercepted* hosts with a leaf certificate minted here, signed by
//! a CA that shoal generates once per data dir. Clients trust that CA (SSL_CERT_FILE or the
//! system store) and then talk to the cache as if it were the registry.
//!
//! The CA lives in `<data_dir>/ca/`: `ca.key` (PKCS#8, mode 0600) and `ca.pem`. It is
//! created when neither exists, in a temporary directory renamed into place so a crash
//! never leaves half a CA. When one is missing or unreadable start-up fails: regenerating
//! silently would break every client that trusts the old one. An admin may put their own
//! CA there instead (the key must be PKCS#8 PEM, the certificate a CA for it).
//!
//! Must not: decide anything about HTTP; `http::proxy` does that with `Policy`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

use crate::config::HostPattern;

/// Leaves are valid this long and re-minted after `REMINT_AFTER`, so a long-running node
/// never serves one near its end.
const LEAF_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
const REMINT_AFTER: Duration = Duration::from_secs(24 * 3600);
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{present} exists but {missing} does not; shoal never regenerates its CA silently \
         (clients trust the old one): restore {missing}, or remove {dir} to make a new CA"
    )]
    HalfCa {
        present: PathBuf,
        missing: PathBuf,
        dir: PathBuf,
    },
    #[error("{path}: {message}")]
    BadCa { path: PathBuf, message: String },
    #[error("cannot mint a certificate for {host}")]
    Mint {
        host: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot generate a key")]
    Key(#[source] rcgen::Error),
    #[error("TLS set-up")]
    Rustls(#[from] rustls::Error),
}

/// The CA: its certificate (PEM, as handed to clients) and what signs leaves.
pub struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Loads `<data_dir>/ca`, creating the CA when neither file exists.
    pub fn load_or_create(data_dir: &Path) -> Result<Ca, Error> {
        let dir = data_dir.join("ca");
        let (key_path, pem_path) = (dir.join("ca.key"), dir.join("ca.pem"));
        match (key_path.exists(), pem_path.exists()) {
            (true, true) => {}
            (false, false) => create(data_dir, &dir)?,
            (true, false) => {
                return Err(Error::HalfCa {
                    present: key_path,
                    missing: pem_path,
                    dir,
                })
            }
            (false, true) => {
                return Err(Error::HalfCa {
                    present: pem_path,
                    missing: key_path,
                    dir,
                })
            }
        }
        load(&key_path, &pem_path)
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A leaf for `host` (a DNS name or an IP address), signed by the CA.
    fn mint(&self, host: &str, key: &KeyPair) -> Result<CertificateDer<'static>, Error> {
        let mint_err = |source| Error::Mint {
            host: host.to_owned(),
            source,
        };
        let mut params = CertificateParams::new(vec![host.to_owned()]).map_err(mint_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        let now = time::OffsetDateTime::now_utc();
        // An hour of slack for clients whose clocks run behind.
        params.not_before = now - Duration::from_secs(3600);
        params.not_after = now + LEAF_VALIDITY;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&random_serial()));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(key, &self.issuer).map_err(mint_err)?;
        Ok(cert.der().clone())
    }
}

fn random_serial() -> [u8; 16] {
    let mut s = [0u8; 16];
    s.iter_mut().for_each(|b| *b = fastrand::u8(..));
    // Positive and non-zero, as RFC 5280 asks.
    s[0] = (s[0] & 0x7f) | 0x01;
    s
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn create(data_dir: &Path, dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
    let key = KeyPair::generate().map_err(Error::Key)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "shoal");
    // A per-CA suffix, so two sites' CAs are told apart in a trust store.
    let tag = hex::encode(&random_serial()[..4]);
    dn.push(DnType::CommonName, format!("shoal cache CA {tag}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(24 * 3600);
    params.not_after = now + CA_VALIDITY;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&random_serial()));
    let cert = params.self_signed(&key).map_err(Error::Key)?;

    let tmp = data_dir.join(format!("ca.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    write_private(&tmp.join("ca.key"), key.serialize_pem().as_bytes())?;
    write_synced(&tmp.join("ca.pem"), cert.pem().as_bytes(), 0o644)?;
    match std::fs::rename(&tmp, dir) {
        Ok(()) => {
            tracing::info!(path = %dir.display(), "created shoal's CA; clients must trust ca.pem");
            Ok(())
        }
        // Another process (`shoal ca` beside `shoal serve`) created it first: use theirs.
        Err(_) if dir.join("ca.key").exists() && dir.join("ca.pem").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => Err(io_err(dir)(e)),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_synced(path, bytes, 0o600)
}

fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn load(key_path: &Path, pem_path: &Path) -> Result<Ca, Error> {
    let key_pem = std::fs::read_to_string(key_path).map_err(io_err(key_path))?;
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(key_path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %key_path.display(), "the CA key is readable by other users; chmod 600 it");
        }
    }
    let key = KeyPair::from_pem(&key_pem).map_err(|e| Error::BadCa {
        path: key_path.to_owned(),
        message: format!("not a PKCS#8 PEM private key: {e}"),
    })?;
    let pem = std::fs::read_to_string(pem_path).map_err(io_err(pem_path))?;
    let bad = |message: String| Error::BadCa {
        path: pem_path.to_owned(),
        message,
    };
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: CertificateDer<'static>| c)
        .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
    // The certificate must be for this key, or every leaf would fail verification. Its
    // SubjectPublicKeyInfo carries the raw public key bytes, so finding them is the check.
    let public = key.public_key_raw();
    if !der.windows(public.len()).any(|w| w == public) {
        return Err(bad(format!(
            "is not the certificate of {}",
            key_path.display()
        )));
    }
    let issuer = Issuer::from_ca_cert_der(&der, key)
        .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    Ok(Ca { pem, issuer })
}

/// What happens to a `CONNECT host:port` (or a TLS connection naming `host` in DNS mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Terminate TLS with a minted leaf and serve the registry API from the cache.
    Intercept,
    /// Splice bytes to the real host, unseen.
    Tunnel,
    /// Neither: shoal is not an open proxy.
    Refuse,
}

/// The intercept and allow lists, as `(host or *.domain, port)`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    intercept: Vec<HostPattern>,
    allow: Vec<HostPattern>,
}

impl Policy {
    /// From the configuration's lists (already validated) plus each registry's URL host
    /// (`host[:port]`), always intercepted. The default registry's URL comes last.
    pub fn new<'a>(
        intercept: &[HostPattern],
        allow: &[HostPattern],
        registries: impl IntoIterator<Item = &'a url::Url>,
    ) -> Policy {
        let mut intercept = intercept.to_vec();
        for url in registries {
            if let Some(host) = url.host_str() {
                intercept.push(HostPattern {
                    host: host.trim_matches(['[', ']']).to_ascii_lowercase(),
                    port: url.port_or_known_default().unwrap_or(443),
                });
            }
        }
        Policy {
            intercept,
            allow: allow.to_vec(),
        }
    }

    pub fn decide(&self, host: &str, port: u16) -> Decision {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let hit = |list: &[HostPattern]| list.iter().any(|p| p.matches(&host, port));
        if hit(&self.intercept) {
            Decision::Intercept
        } else if hit(&self.allow) {
            Decision::Tunnel
        } else {
            Decision::Refuse
        }
    }

    /// The name assumed for a TLS client that sends no SNI: the upstream's host (added last),
    /// else the last plain host of the list.
    pub fn default_host(&self) -> Option<&str> {
        self.intercept
            .iter()
            .rev()
            .map(|p| p.host.as_str())
            .find(|h| !h.starts_with("*."))
    }
}

/// Mints and caches one rustls server configuration per intercepted host.
pub struct Interceptor {
    ca: Ca,
    policy: Policy,
    /// One key for every leaf: generating a key per host buys nothing, since they all sit
    /// in this process anyway.
    leaf_key: KeyPair,
    provider: Arc<rustls::crypto::CryptoProvider>,
    configs: Mutex<HashMap<String, (Instant, Arc<ServerConfig>)>>,
}

impl Interceptor {
    pub fn new(ca: Ca, policy: Policy) -> Result<Interceptor, Error> {
        Ok(Interceptor {
            ca,
            policy,
            leaf_key: KeyPair::generate().map_err(Error::Key)?,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            configs: Mutex::new(HashMap::new()),
        })
    }

    pub fn ca_pem(&self) -> &str {
        self.ca.pem()
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The server side of TLS for `host`: a leaf for it, ALPN h2 and http/1.1 (Go clients,
    /// ollama among them, prefer h2).
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, Error> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(configs) = self.configs.lock() {
            if let Some((at, cfg)) = configs.get(&host) {
                if at.elapsed() < REMINT_AFTER {
                    return Ok(cfg.clone());
                }
            }
        }
        let leaf = self.ca.mint(&host, &self.leaf_key)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let mut cfg = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf], key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        if let Ok(mut configs) = self.configs.lock() {
            // Bounded by the intercept list, except for `*.domain` patterns; a client
            // inventing names under one only costs a small entry each, dropped when stale.
            configs.retain(|_, (at, _)| at.elapsed() < REMINT_AFTER);
            configs.insert(host.clone(), (Instant::now(), cfg.clone()));
        }
        tracing::debug!(%host, "minted a leaf certificate");
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests;
