//! End to end with a private upstream: Debian's `docker-registry` with htpasswd (Basic)
//! auth as `ghcr.io`, and the clients' own credentials forwarded through shoal.
//!
//! A small multi-platform image (`tests/e2e/oci_image.py`) is pushed to the private
//! registry as `owner/private` with `skopeo copy --dest-creds`, and another one to a second,
//! open registry (`docker.io`, for contrast: what is public is offered to peers). Then,
//! through one shoal (the default upstream a dead address):
//!
//! 1. an anonymous `curl` of the manifest gets 401 and upstream's challenge
//!    (`WWW-Authenticate: Basic realm="shoal-test"`), passed through;
//! 2. `curl -u alice:secret` gets it, the pushed digest;
//! 3. `ctr images pull` (linux/amd64, shoal as the `hosts.toml` mirror of ghcr.io) fails
//!    without `--user` (401) and succeeds with `--user alice:secret`: containerd answers
//!    the challenge with Basic credentials, which shoal forwards;
//! 4. the pulled blobs are now cached (a fetch costs no upstream bytes), but only a client
//!    upstream accepts gets them: anonymous and wrong credentials get 401, never the bytes;
//!    `alice:secret` gets the exact bytes;
//! 5. they are not offered to peers: not in `/_shoal/v1/catalog`, no `.torrent`, not
//!    among `/_shoal/v1/torrents`, and "none" to a peer's blob-state question; while a
//!    public blob fetched the same way is in all of them;
//! 6. with the private registry killed, anonymous requests are still refused.
//!
//! Needs docker-registry, htpasswd (apache2-utils), skopeo, python3, curl, and a containerd
//! (`ctr`) that this user can reach (root). Without them the test says what is missing and
//! passes, unless `REQUIRE_E2E_TOOLS=1` (CI) makes it fail.

// The fake upstream and in-process shoal that `support` offers are not used here.
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::registry::*;
use support::*;

const USER: &str = "alice";
const PASSWORD: &str = "secret";
const PRIVATE_REPO: &str = "owner/private";
const PUBLIC_REPO: &str = "library/public";
/// The whole scenario (a dozen client runs and some thirty curls).
const SCENARIO_LIMIT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------
// Prerequisites

struct Tools {
    registry: PathBuf,
    /// containerd's socket, for `ctr --address`.
    containerd: String,
}

async fn tools() -> Option<Tools> {
    let mut missing = Vec::new();
    let registry = need_docker_registry(&mut missing).await;
    if !htpasswd_available().await {
        missing.push(HTPASSWD_HINT.to_owned());
    }
    need("skopeo", "skopeo: apt-get install skopeo", &mut missing).await;
    need("python3", "python3", &mut missing).await;
    need("curl", "curl: apt-get install curl", &mut missing).await;
    let containerd = find_containerd(&mut missing).await;
    if missing.is_empty() {
        return Some(Tools {
            registry: registry?,
            containerd: containerd?,
        });
    }
    skip_for_missing("e2e_auth", &missing);
    None
}

// ---------------------------------------------------------------------------------------
// The images

struct Image {
    layout: PathBuf,
    index_digest: String,
    /// What a linux/amd64 pull fetches besides the manifests: digest -> (kind, size),
    /// kind "config" or "layer".
    amd64_blobs: Vec<(String, String, u64)>,
}

impl Image {
    fn amd64_bytes(&self) -> u64 {
        self.amd64_blobs.iter().map(|(_, _, s)| s).sum()
    }
}

async fn make_image(dir: &Path, tag: &str, label: &str) -> Image {
    let (layout, v) = oci_image(dir, tag, label).await;
    let s = |v: &Value| v.as_str().expect("a string").to_owned();
    let amd64_blobs = v["blobs"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, b)| b["platform"] == "amd64" || b["platform"] == "shared")
        .map(|(d, b)| (d.clone(), s(&b["kind"]), b["size"].as_u64().unwrap()))
        .collect();
    Image {
        layout,
        index_digest: s(&v["index"]["digest"]),
        amd64_blobs,
    }
}

/// A blob file of an OCI layout directory.
fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    std::fs::read(layout.join("blobs/sha256").join(hex))
        .unwrap_or_else(|e| panic!("{digest} in {}: {e}", layout.display()))
}

// ---------------------------------------------------------------------------------------
// shoal's admin endpoints

/// `upstream_bytes` of one registry shoal knows.
fn registry_bytes(stats: &Value, host: &str) -> u64 {
    stats["registries"][host]["upstream_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("stats lack registries.{host}.upstream_bytes: {stats}"))
}

/// The digests of a list of objects with a `digest` field (`blobs` of the catalog,
/// `torrents` of the torrent list).
fn digests(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|x| x["digest"].as_str().unwrap_or_default().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// The scenario

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_credentials_reach_a_private_registry_through_shoal() {
    let Some(tools) = tools().await else { return };
    tokio::time::timeout(SCENARIO_LIMIT, scenario(tools))
        .await
        .expect("e2e scenario timed out");
}

async fn scenario(tools: Tools) {
    let work = tempfile::tempdir().unwrap();
    // curl's headers and bodies.
    let cd = &work.path().join("curl");
    std::fs::create_dir(cd).unwrap();
    // Unique per run: tags, containerd namespaces, and the images' bytes themselves (so
    // that containerd's store never already holds a blob of this run).
    let id = run_id();
    let tag = format!("e2e-{id}");
    let private_dir = work.path().join("private");
    let public_dir = work.path().join("public");
    std::fs::create_dir(&private_dir).unwrap();
    std::fs::create_dir(&public_dir).unwrap();
    let image = make_image(&private_dir, &tag, &format!("shoal e2e_auth private {id}")).await;
    let public = make_image(&public_dir, &tag, &format!("shoal e2e_auth public {id}")).await;
    assert_eq!(image.amd64_blobs.len(), 3, "a config and 2 layers");
    let right = format!("{USER}:{PASSWORD}");
    let wrong = format!("{USER}:wrong");
    let challenge = format!("realm=\"{REGISTRY_REALM}\"");

    // 0. The upstreams. The private one refuses anonymous requests with a Basic challenge
    // and takes alice's push; the public one is open.
    let users = htpasswd_entry(USER, PASSWORD).await;
    let mut registry = Registry::start_htpasswd(&tools.registry, &users).await;
    let r = curl(cd, &[], &format!("{}/v2/", registry.url())).await;
    assert_eq!(
        r.status,
        401,
        "private registry, anonymous: {}",
        r.describe()
    );
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic ") && h.contains(&challenge)),
        "private registry's challenge: {}",
        r.describe()
    );
    skopeo_copy(
        &image.layout,
        &registry.addr,
        PRIVATE_REPO,
        &tag,
        Some(&right),
    )
    .await;
    let private_manifest = format!("{}/v2/{PRIVATE_REPO}/manifests/{tag}", registry.url());
    let accept = format!("accept: {OCI_INDEX}");
    let r = curl(cd, &["-u", &right, "-H", &accept], &private_manifest).await;
    assert_eq!(r.status, 200, "pushed manifest, alice: {}", r.describe());
    assert_eq!(
        sha256(&r.body),
        image.index_digest,
        "skopeo changed the index"
    );
    let r = curl(cd, &["-H", &accept], &private_manifest).await;
    assert_eq!(
        r.status,
        401,
        "pushed manifest, anonymous: {}",
        r.describe()
    );
    let open = Registry::start(&tools.registry).await;
    skopeo_copy(&public.layout, &open.addr, PUBLIC_REPO, &tag, None).await;

    // shoal: ghcr.io is the private registry, docker.io the open one; the default upstream
    // is a dead address, so a request routed to it fails.
    let port = free_port();
    let log_path = work.path().join("shoal.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _log = LogOnPanic {
        what: "shoal",
        path: log_path,
    };
    let ghcr_io = format!("ghcr.io={}", registry.url());
    let docker_io = format!("docker.io={}", open.url());
    let shoal = spawn_shoal_opts(
        &work.path().join("shoal-data"),
        &dead_url(),
        port,
        &["--registry", &ghcr_io, "--registry", &docker_io],
        &[("RUST_LOG", "shoal=info,warn")],
        log.into(),
    )
    .await;
    let host = format!("127.0.0.1:{port}");
    let url = shoal.url.clone();
    let start = settled_stats(&url).await;
    assert_eq!(counter(&start, "upstream_bytes"), 0, "{start}");
    let manifest = format!("{url}/v2/ghcr.io/{PRIVATE_REPO}/manifests/{tag}");
    let blob = |d: &str| format!("{url}/v2/ghcr.io/{PRIVATE_REPO}/blobs/{d}");

    // 1. Anonymous: upstream's 401 and its challenge, so that a client knows to log in.
    let r = curl(cd, &["-H", &accept], &manifest).await;
    assert_eq!(
        r.status,
        401,
        "anonymous manifest through shoal: {}",
        r.describe()
    );
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic ") && h.contains(&challenge)),
        "shoal did not pass upstream's challenge (Basic {challenge}) through: {}",
        r.describe()
    );

    // 2. With alice's credentials, forwarded: the pushed index.
    let r = curl(cd, &["-u", &right, "-H", &accept], &manifest).await;
    assert_eq!(
        r.status,
        200,
        "alice's manifest through shoal: {}",
        r.describe()
    );
    assert_eq!(
        sha256(&r.body),
        image.index_digest,
        "the index through shoal is not the one pushed"
    );

    // 3. containerd, with shoal as the ghcr.io mirror: refused without credentials, pulls
    // with them.
    let hosts = ctr_hosts_dir(work.path(), "ghcr.io", &host);
    let hosts = hosts.to_str().unwrap();
    let ctr_ref = format!("ghcr.io/{PRIVATE_REPO}:{tag}");
    let ns = CtrNamespace {
        address: tools.containerd.clone(),
        name: format!("shoal-e2e-auth-{id}"),
    };
    let pull = [
        "images",
        "pull",
        "--hosts-dir",
        hosts,
        "--platform",
        "linux/amd64",
    ];
    let mut anon_args = pull.to_vec();
    anon_args.push(&ctr_ref);
    let out = exec("ctr", &ns.args(&anon_args)).await;
    assert!(
        !out.status.success(),
        "ctr pull without credentials succeeded: {}",
        out.describe()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401 Unauthorized"),
        "ctr pull without credentials did not fail on a 401: {}",
        out.describe()
    );
    let mut args = pull.to_vec();
    args.extend_from_slice(&["--user", &right, &ctr_ref]);
    let out = exec_ok("ctr", &ns.args(&args)).await;
    eprintln!(
        "ctr pull --user: {}",
        out.stdout_str().lines().last().unwrap_or_default()
    );
    let listed = exec_ok("ctr", &ns.args(&["images", "ls"]))
        .await
        .stdout_str();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&format!("{ctr_ref} ")) && l.contains(&image.index_digest)),
        "ctr images ls lacks {ctr_ref} at {}:\n{listed}",
        image.index_digest
    );
    let pulled = settled_stats(&url).await;
    eprintln!(
        "after ctr pull: ghcr.io upstream_bytes {} (the amd64 blobs: {})",
        registry_bytes(&pulled, "ghcr.io"),
        image.amd64_bytes()
    );
    assert!(registry_bytes(&pulled, "ghcr.io") > 0, "{pulled}");
    assert_eq!(registry_bytes(&pulled, "docker.io"), 0, "{pulled}");

    // ... and once shoal holds everything, still refused without credentials (a fresh
    // namespace: containerd has to ask shoal again).
    let ns_anon = CtrNamespace {
        address: tools.containerd.clone(),
        name: format!("shoal-e2e-auth-anon-{id}"),
    };
    let out = exec("ctr", &ns_anon.args(&anon_args)).await;
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("401 Unauthorized"),
        "ctr pull without credentials, the image cached in shoal, did not fail on a 401: {}",
        out.describe()
    );

    // 4. The blobs are cached (fetching them costs upstream nothing), and only alice gets
    // them.
    for (digest, kind, size) in &image.amd64_blobs {
        let bytes = layout_blob(&image.layout, digest);
        assert_eq!(bytes.len() as u64, *size, "{kind} {digest}");
        for (who, args) in [
            ("anonymous", vec![]),
            ("wrong password", vec!["-u", &wrong]),
        ] {
            let r = curl(cd, &args, &blob(digest)).await;
            assert_eq!(r.status, 401, "{kind} {digest}, {who}: {}", r.describe());
            assert!(
                r.body != bytes,
                "{kind} {digest}: the bytes went to a client without credentials ({who})"
            );
        }
        let r = curl(cd, &["-u", &right], &blob(digest)).await;
        assert_eq!(r.status, 200, "{kind} {digest}, alice: {}", r.describe());
        assert!(
            r.body == bytes,
            "{kind} {digest}, alice: got {} bytes (sha256 {}), pushed {size}",
            r.body.len(),
            sha256(&r.body)
        );
    }
    let served = settled_stats(&url).await;
    assert_eq!(
        counter(&served, "upstream_bytes"),
        counter(&pulled, "upstream_bytes"),
        "the blobs were fetched again instead of served from the cache: {pulled} -> {served}"
    );

    // 5. Peers hear of none of it. For contrast, a public blob fetched anonymously from the
    // open registry is offered (so the lists below are the real thing, and up to date).
    let (pub_digest, _, _) = public
        .amd64_blobs
        .iter()
        .find(|(_, kind, _)| kind == "layer")
        .expect("a public layer");
    let r = curl(
        cd,
        &[],
        &format!("{url}/v2/docker.io/{PUBLIC_REPO}/blobs/{pub_digest}"),
    )
    .await;
    assert_eq!(r.status, 200, "public layer: {}", r.describe());
    assert_eq!(&sha256(&r.body), pub_digest);
    settled_stats(&url).await;
    let torrent = |d: &str| format!("{url}/_shoal/v1/blobs/{d}/torrent");
    let r = get(&torrent(pub_digest), &[]).await;
    assert_eq!(r.status, 200, "public layer's .torrent: {:?}", r.body);
    let catalog = admin(&url, "/_shoal/v1/catalog").await;
    let torrents = admin(&url, "/_shoal/v1/torrents").await;
    let in_catalog = digests(&catalog["blobs"]);
    let offered = digests(&torrents["torrents"]);
    assert!(in_catalog.contains(pub_digest), "{catalog}");
    assert!(offered.contains(pub_digest), "{torrents}");
    for (digest, kind, _) in &image.amd64_blobs {
        let r = get(&torrent(digest), &[]).await;
        assert_ne!(
            r.status, 200,
            "private {kind} {digest}: a .torrent was offered"
        );
        let state = admin(&url, &format!("/_shoal/v1/blobs/{digest}")).await;
        assert_eq!(
            state["state"], "none",
            "private {kind} {digest}: a peer hears of it"
        );
    }
    // Read again: asking for a .torrent above must not have started a seed.
    let catalog = admin(&url, "/_shoal/v1/catalog").await;
    let torrents = admin(&url, "/_shoal/v1/torrents").await;
    let in_catalog = digests(&catalog["blobs"]);
    let offered = digests(&torrents["torrents"]);
    for (digest, kind, _) in &image.amd64_blobs {
        assert!(
            !in_catalog.contains(digest),
            "private {kind} {digest} in the peer catalog: {catalog}"
        );
        assert!(
            !offered.contains(digest),
            "private {kind} {digest} among the torrents: {torrents}"
        );
    }

    // 6. The private registry goes away: anonymous requests are still refused (whether
    // alice is served offline is not specified; shown only).
    registry.stop();
    assert!(
        try_request(http::Method::GET, &format!("{}/v2/", registry.url()), &[])
            .await
            .is_err(),
        "docker-registry still answers after being killed"
    );
    let r = curl(cd, &["-H", &accept], &manifest).await;
    assert_ne!(
        r.status,
        200,
        "offline, anonymous manifest: {}",
        r.describe()
    );
    for (digest, kind, _) in &image.amd64_blobs {
        let r = curl(cd, &[], &blob(digest)).await;
        assert_ne!(r.status, 200, "offline, anonymous {kind}: {}", r.describe());
        let r = curl(cd, &["-u", &right], &blob(digest)).await;
        eprintln!("offline, alice, {kind} {digest}: {}", r.status);
    }

    drop(shoal);
}
