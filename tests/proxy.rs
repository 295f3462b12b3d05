//! Transparent pulls: `ollama pull granite-code:8b` unchanged, through shoal as HTTPS proxy
//! (CONNECT + TLS interception with shoal's CA) and in DNS mode (`--tls-listen`, the
//! registry's name pointed at shoal). The client is gopull (Go's net/http, as ollama), so
//! HTTPS_PROXY, SSL_CERT_FILE, ALPN h2 and certificate checks are the real ones.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1 << 20;

fn model() -> Model {
    Model::new(vec![blob_bytes(5 * MIB + 777, 31), blob_bytes(200_000, 32)])
}

async fn ca_file(shoal: &Shoal, dir: &Path) -> std::path::PathBuf {
    let r = get(&format!("{}/_shoal/v1/ca.pem", shoal.url()), &[]).await;
    assert_eq!(r.status, 200);
    let pem = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let path = dir.join("shoal-ca.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

/// What ollama leaves on disk for `granite-code:8b`: the manifest under the registry's own
/// name, byte-identical, and every blob complete.
fn assert_filed_under_registry_name(models: &Path, m: &Model) {
    let manifest = models.join("manifests/registry.ollama.ai/library/granite-code/8b");
    let got = std::fs::read(&manifest)
        .unwrap_or_else(|e| panic!("manifest file {}: {e}", manifest.display()));
    assert!(got == m.manifest, "manifest byte-identical to upstream's");
    for blob in m.layers.iter().chain([&m.config]) {
        let path = models.join(format!("blobs/sha256-{}", sha256_hex(blob)));
        let data = std::fs::read(&path).unwrap();
        assert_eq!(sha256_hex(&data), sha256_hex(blob));
    }
}

fn assert_all_h2(j: &Value) {
    let protos = j["protos"].as_object().unwrap();
    assert!(
        !protos.is_empty() && protos.keys().all(|p| p == "HTTP/2.0"),
        "ranged parts over HTTP/2: {j}"
    );
    let statuses = j["statuses"].as_object().unwrap();
    assert!(statuses.keys().all(|s| s == "206"), "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_proxy_pull_with_the_plain_name() {
    let Some(bin) = gopull() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = model();
        up.add_model("library/granite-code", "8b", &m);
        let shoal = Shoal::start(&up.url()).await;
        let tmp = tempfile::tempdir().unwrap();
        let ca = ca_file(&shoal, tmp.path()).await;
        let proxy = shoal.url();
        let env = [
            ("HTTPS_PROXY", proxy.as_str()),
            ("SSL_CERT_FILE", ca.to_str().unwrap()),
        ];

        for round in 0..3 {
            let models = tempfile::tempdir().unwrap();
            let o = run_gopull_with(&bin, models.path(), "granite-code:8b", &[], &env).await;
            o.expect_ok(&format!("pull {round} through the proxy"));
            assert_filed_under_registry_name(models.path(), &m);
            assert_all_h2(&o.json);
            let total: usize = m.layers.iter().map(|l| l.len()).sum::<usize>() + m.config.len();
            assert_eq!(o.json["bytes"], total as u64);
        }
        // Upstream saw one fill per blob and one manifest fetch (the tag is fresh for 30 s).
        assert_eq!(up.counts.manifest_gets.load(SeqCst), 1);
        assert_eq!(
            up.counts.blob_redirects.load(SeqCst),
            3,
            "2 layers + config, once each"
        );
        let stats = shoal.stats().await;
        assert_eq!(stats["blobs"], 3, "{stats}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_ca_the_client_gets_a_certificate_error() {
    let Some(bin) = gopull() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        up.add_model("library/granite-code", "8b", &model());
        let shoal = Shoal::start(&up.url()).await;
        let models = tempfile::tempdir().unwrap();
        // An empty trust store stands for "a machine that never trusted shoal's CA".
        let empty = models.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let proxy = shoal.url();
        let o = run_gopull_with(
            &bin,
            models.path(),
            "granite-code:8b",
            &[],
            &[
                ("HTTPS_PROXY", proxy.as_str()),
                ("SSL_CERT_FILE", empty.to_str().unwrap()),
            ],
        )
        .await;
        assert!(!o.ok(), "{:?}", o.json);
        assert!(
            o.error().contains("certificate"),
            "a certificate error: {}",
            o.error()
        );
        assert_eq!(up.counts.manifest_gets.load(SeqCst), 0);
    })
    .await
    .expect("test timed out");
}

/// Sends a raw CONNECT and returns the status line and the stream (open when it was 200).
async fn raw_connect(proxy: std::net::SocketAddr, target: &str) -> (String, tokio::net::TcpStream) {
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Read the response head byte by byte so no tunnelled byte is swallowed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    (head.lines().next().unwrap_or("").to_owned(), s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_is_refused_except_to_intercepted_and_allowed_hosts() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        // An allowed host: a local echo server stands in for ollama.com.
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let up = FakeUpstream::start().await;
        let shoal = Shoal::start_with(&up.url(), |c| {
            c.proxy.allow = vec![format!("127.0.0.1:{}", echo_addr.port()).parse().unwrap()];
        })
        .await;

        let (status, _) = raw_connect(shoal.addr(), "github.com:443").await;
        assert!(status.contains(" 403 "), "{status}");
        let (status, _) = raw_connect(shoal.addr(), "registry.ollama.ai:80").await;
        assert!(
            status.contains(" 403 "),
            "intercepted host, other port: {status}"
        );

        let (status, mut tunnel) =
            raw_connect(shoal.addr(), &format!("127.0.0.1:{}", echo_addr.port())).await;
        assert!(status.contains(" 200 "), "{status}");
        tunnel.write_all(b"through the tunnel").await.unwrap();
        let mut back = [0u8; 18];
        tunnel.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"through the tunnel");

        let (status, _) = raw_connect(shoal.addr(), "registry.ollama.ai:443").await;
        assert!(status.contains(" 200 "), "intercepted: {status}");
    })
    .await
    .expect("test timed out");
}

/// DNS mode: the client resolves registry.ollama.ai to shoal's TLS listener (here through a
/// private /etc/hosts in its own mount namespace), and shoal reaches its upstream by a
/// pinned address, not by DNS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dns_mode_with_the_name_pinned_to_the_tls_listener() {
    let Some(bin) = gopull() else { return };
    let unshare = std::process::Command::new("unshare")
        .args(["--mount", "true"])
        .status();
    if !unshare.is_ok_and(|s| s.success()) {
        let msg = "DNS-mode test needs root and `unshare --mount` (util-linux)";
        assert!(
            std::env::var("REQUIRE_E2E_TOOLS").as_deref() != Ok("1"),
            "{msg}"
        );
        println!("SKIPPED: {msg}");
        return;
    }
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = model();
        up.add_model("library/granite-code", "8b", &m);
        // A loopback address of its own, so port 443 is free whatever else runs.
        let ip = format!("127.{}.{}.{}", 100 + fastrand::u8(..100), fastrand::u8(1..250), fastrand::u8(1..250));
        // The upstream by a name nothing resolves: only the pin gets shoal there.
        let upstream = format!("http://registry.upstream.invalid:{}", up.registry.port());
        let shoal = Shoal::start_with(&upstream, |c| {
            c.tls_listen = Some(format!("{ip}:443").parse().unwrap());
            c.resolve = vec!["registry.upstream.invalid=127.0.0.1".parse().unwrap()];
        })
        .await;
        let tmp = tempfile::tempdir().unwrap();
        let ca = ca_file(&shoal, tmp.path()).await;
        let hosts = tmp.path().join("hosts");
        std::fs::write(&hosts, format!("127.0.0.1 localhost\n{ip} registry.ollama.ai\n")).unwrap();
        let wrapper = tmp.path().join("with-hosts.sh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec unshare --mount sh -c 'mount --bind {} /etc/hosts && exec {} \"$@\"' gopull \"$@\"\n",
                hosts.display(),
                bin.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();

        let models = tempfile::tempdir().unwrap();
        let o = run_gopull_with(
            &wrapper,
            models.path(),
            "granite-code:8b",
            &[],
            &[("SSL_CERT_FILE", ca.to_str().unwrap())],
        )
        .await;
        o.expect_ok("pull in DNS mode");
        assert_filed_under_registry_name(models.path(), &m);
        assert_all_h2(&o.json);
        assert_eq!(up.counts.manifest_gets.load(SeqCst), 1);
        assert_eq!(up.counts.blob_redirects.load(SeqCst), 3);
    })
    .await
    .expect("test timed out");
}

/// A TLS client trusting only shoal's CA, over a CONNECT tunnel to `target`, asking for
/// `sni`: whether the handshake (and so the certificate for that name) succeeds.
async fn handshake_through(shoal: &Shoal, target: &str, sni: &str) -> Result<(), String> {
    let r = get(&format!("{}/_shoal/v1/ca.pem", shoal.url()), &[]).await;
    let ca: rustls::pki_types::CertificateDer =
        rustls::pki_types::pem::PemObject::from_pem_slice(&r.body).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (status, tunnel) = raw_connect(shoal.addr(), target).await;
    assert!(status.contains(" 200 "), "{status}");
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tunnel)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leaf_follows_sni_only_for_intercepted_names() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let shoal = Shoal::start(&up.url()).await;
        handshake_through(&shoal, "registry.ollama.ai:443", "registry.ollama.ai")
            .await
            .expect("the registry's own name");
        // The CDN host (intercepted as *.r2.cloudflarestorage.com) inside a tunnel opened
        // for the registry: the leaf is minted for the name the client asked for.
        handshake_through(
            &shoal,
            "registry.ollama.ai:443",
            "abc.r2.cloudflarestorage.com",
        )
        .await
        .expect("an intercepted name by SNI");
        // Never a certificate for a name shoal does not intercept.
        let err = handshake_through(&shoal, "registry.ollama.ai:443", "github.com")
            .await
            .expect_err("github.com must get no certificate");
        assert!(!err.is_empty());
    })
    .await
    .expect("test timed out");
}
