use super::*;
use rustls::client::danger::ServerCertVerifier;

fn policy() -> Policy {
    let patterns =
        |l: &[&str]| -> Vec<HostPattern> { l.iter().map(|h| h.parse().unwrap()).collect() };
    Policy::new(
        &patterns(&["registry.ollama.ai", "*.r2.cloudflarestorage.com"]),
        &patterns(&["ollama.com", "example.org:8443"]),
        [&url::Url::parse("http://registry.lan:5000").unwrap()],
    )
}

#[test]
fn decisions() {
    let p = policy();
    assert_eq!(p.decide("registry.ollama.ai", 443), Decision::Intercept);
    assert_eq!(p.decide("Registry.Ollama.AI.", 443), Decision::Intercept);
    assert_eq!(p.decide("registry.ollama.ai", 80), Decision::Refuse);
    assert_eq!(
        p.decide("abc.r2.cloudflarestorage.com", 443),
        Decision::Intercept
    );
    assert_eq!(p.decide("r2.cloudflarestorage.com", 443), Decision::Refuse);
    assert_eq!(
        p.decide("evilr2.cloudflarestorage.com", 443),
        Decision::Refuse
    );
    assert_eq!(p.decide("registry.lan", 5000), Decision::Intercept);
    assert_eq!(p.decide("registry.lan", 443), Decision::Refuse);
    assert_eq!(p.decide("ollama.com", 443), Decision::Tunnel);
    assert_eq!(p.decide("example.org", 8443), Decision::Tunnel);
    assert_eq!(p.decide("example.org", 443), Decision::Refuse);
    assert_eq!(p.decide("github.com", 443), Decision::Refuse);
    assert_eq!(p.default_host(), Some("registry.lan"));
}

#[test]
fn ca_is_created_once_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let a = Ca::load_or_create(dir.path()).unwrap();
    let b = Ca::load_or_create(dir.path()).unwrap();
    assert_eq!(a.pem(), b.pem());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A leaf from the reloaded CA chains to the original certificate.
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = b.mint("registry.ollama.ai", &leaf_key).unwrap();
    let ca_der: CertificateDer =
        rustls::pki_types::pem::PemObject::from_pem_slice(a.pem().as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .unwrap();
    let name = rustls::pki_types::ServerName::try_from("registry.ollama.ai").unwrap();
    verifier
        .verify_server_cert(&leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())
        .expect("leaf verifies against the CA");
    let other = rustls::pki_types::ServerName::try_from("github.com").unwrap();
    assert!(verifier
        .verify_server_cert(&leaf, &[], &other, &[], rustls::pki_types::UnixTime::now())
        .is_err());
}

#[test]
fn half_a_ca_is_refused_not_regenerated() {
    let dir = tempfile::tempdir().unwrap();
    Ca::load_or_create(dir.path()).unwrap();
    let pem = dir.path().join("ca/ca.pem");
    std::fs::remove_file(&pem).unwrap();
    let err = Ca::load_or_create(dir.path()).err().unwrap().to_string();
    assert!(err.contains("never regenerates"), "{err}");
    assert!(!pem.exists());
}

#[test]
fn a_certificate_for_another_key_is_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    Ca::load_or_create(a.path()).unwrap();
    Ca::load_or_create(b.path()).unwrap();
    std::fs::copy(b.path().join("ca/ca.pem"), a.path().join("ca/ca.pem")).unwrap();
    let err = Ca::load_or_create(a.path()).err().unwrap().to_string();
    assert!(err.contains("is not the certificate of"), "{err}");
}
