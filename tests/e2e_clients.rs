//! End to end with the container clients people point at shoal: skopeo, containerd's
//! `ctr`, the Docker engine and oras-py, through one shoal that mirrors one Debian
//! `docker-registry` under two host names, `docker.io` and `ghcr.io`.
//!
//! A small but real multi-platform image (an OCI index of linux/amd64 and linux/arm64,
//! each with gzip'd tar layers and a config whose diff_ids match them; made locally by
//! `tests/e2e/oci_image.py`) is pushed to the registry as `library/app` and `owner/app`,
//! and an oras artifact as `owner/notes`. Then, through shoal:
//!
//! - `ctr images pull` (linux/amd64) of `docker.io/library/app` with shoal as the
//!   `hosts.toml` mirror: routed by containerd's `?ns=docker.io`, so its bytes count
//!   under `registries.docker.io`;
//! - `skopeo copy --all` of `<shoal>/ghcr.io/owner/app`: the index and both platforms
//!   arrive with the digests pushed, and only the arm64 blobs are new (under `ghcr.io`);
//! - `skopeo inspect` (which lists the tags), oras pull of `<shoal>/ghcr.io/owner/notes`,
//!   `docker pull <shoal>/docker.io/library/app`;
//! - a host that is not configured (`quay.io`) is refused with 404 NAME_UNKNOWN and
//!   fetches nothing;
//! - with the registry stopped, `docker pull` (after `docker rmi`) and `skopeo inspect`
//!   each work 20 times in a row;
//! - each blob crossed from upstream once: `upstream_bytes` is the sum of the distinct
//!   blobs' sizes.
//!
//! Needs docker-registry, skopeo, python3 with oras-py, and a containerd (`ctr`) and a
//! Docker engine that this user can reach (root). Without them the test says what is missing and passes, unless
//! `REQUIRE_E2E_TOOLS=1` (CI) makes it fail.

// The fake upstream and in-process shoal that `support` offers are not used here.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::registry::*;
use support::*;

/// Runs of the offline loops.
const OFFLINE_PULLS: usize = 20;
/// The whole scenario (about 40 Docker pulls and 50 other client runs).
const SCENARIO_LIMIT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------
// Prerequisites

struct Tools {
    registry: PathBuf,
    /// containerd's socket, for `ctr --address`.
    containerd: String,
}

async fn tools() -> Option<Tools> {
    let mut missing = Vec::new();
    let registry = registry_tools(&mut missing).await;
    need("skopeo", "skopeo: apt-get install skopeo", &mut missing).await;
    need("python3", "python3", &mut missing).await;

    let containerd = find_containerd(&mut missing).await;

    let mut cmd = Command::new("docker");
    cmd.args(["version", "--format", "{{.Server.Version}}"]);
    if !runs(cmd, Duration::from_secs(20)).await {
        missing.push("a Docker engine that `docker` can reach (docker version failed)".to_owned());
    }

    if missing.is_empty() {
        return Some(Tools {
            registry: registry?,
            containerd: containerd?,
        });
    }
    skip_for_missing("e2e_clients", &missing);
    None
}

// ---------------------------------------------------------------------------------------
// Clients

/// Removes a Docker image when dropped (also when the test fails).
struct DockerImage(String);

impl Drop for DockerImage {
    fn drop(&mut self) {
        run_blocking("docker", &["rmi", "-f", &self.0], Duration::from_secs(60));
    }
}

// ---------------------------------------------------------------------------------------
// The image

struct Image {
    layout: PathBuf,
    index_digest: String,
    /// Manifest digest and diff_ids, by architecture.
    manifests: BTreeMap<String, (String, Vec<String>)>,
    /// Configs and layers: digest -> (size, platform: "amd64", "arm64" or "shared").
    blobs: BTreeMap<String, (u64, String)>,
}

impl Image {
    /// The size of the blobs a pull of `arch` alone needs (its config and layers).
    fn platform_bytes(&self, arch: &str) -> u64 {
        self.blobs
            .values()
            .filter(|(_, p)| p == arch || p == "shared")
            .map(|(s, _)| s)
            .sum()
    }

    fn only_bytes(&self, arch: &str) -> u64 {
        self.blobs
            .values()
            .filter(|(_, p)| p == arch)
            .map(|(s, _)| s)
            .sum()
    }

    fn total_bytes(&self) -> u64 {
        self.blobs.values().map(|(s, _)| s).sum()
    }
}

async fn make_image(dir: &Path, tag: &str, label: &str) -> Image {
    let (layout, v) = oci_image(dir, tag, label).await;
    let s = |v: &Value| v.as_str().expect("a string").to_owned();
    let manifests = v["manifests"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(arch, m)| {
            let diff_ids = m["diff_ids"].as_array().unwrap().iter().map(s).collect();
            (arch.clone(), (s(&m["digest"]), diff_ids))
        })
        .collect();
    let blobs = v["blobs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(d, b)| (d.clone(), (b["size"].as_u64().unwrap(), s(&b["platform"]))))
        .collect();
    Image {
        layout,
        index_digest: s(&v["index"]["digest"]),
        manifests,
        blobs,
    }
}

/// The blob files of an OCI layout directory: digest -> bytes.
fn layout_blobs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                format!("sha256:{}", e.file_name().to_string_lossy()),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// shoal's stats

/// `upstream_bytes` of each registry shoal knows.
fn registry_bytes(stats: &Value) -> BTreeMap<String, u64> {
    stats["registries"]
        .as_object()
        .unwrap_or_else(|| panic!("stats lack registries: {stats}"))
        .iter()
        .map(|(k, v)| (k.clone(), v["upstream_bytes"].as_u64().unwrap_or(u64::MAX)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The scenario

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn container_clients_pull_through_one_shoal_for_two_registries() {
    let Some(tools) = tools().await else { return };
    tokio::time::timeout(SCENARIO_LIMIT, scenario(tools))
        .await
        .expect("e2e scenario timed out");
}

async fn scenario(tools: Tools) {
    let work = tempfile::tempdir().unwrap();
    // Unique per run: image tag, containerd namespace, and the image's bytes themselves
    // (so no local store of Docker or containerd already holds a blob of this run).
    let id = run_id();
    let tag = format!("e2e-{id}");
    let image = make_image(work.path(), &tag, &format!("shoal e2e_clients {id}")).await;
    assert_eq!(image.blobs.len(), 5, "2 configs, 3 layers");

    // 1. The upstream, with the image under two names and an oras artifact.
    let mut registry = Registry::start(&tools.registry).await;
    for repo in ["library/app", "owner/app"] {
        skopeo_copy(&image.layout, &registry.addr, repo, &tag, None).await;
        let r = get(
            &format!("{}/v2/{repo}/manifests/{tag}", registry.url()),
            &[("accept", OCI_INDEX)],
        )
        .await;
        assert_eq!(r.status, 200, "{repo}:{tag} in the registry");
        assert_eq!(
            r.header("docker-content-digest"),
            Some(image.index_digest.as_str()),
            "skopeo changed the index while pushing {repo}"
        );
    }
    let notes_dir = work.path().join("notes");
    std::fs::create_dir(&notes_dir).unwrap();
    let note_a = format!("shoal e2e_clients {id}: first file\n").repeat(40);
    let note_b = format!("shoal e2e_clients {id}: second file\n");
    let notes: [(&str, &[u8]); 2] = [("a.txt", note_a.as_bytes()), ("b.txt", note_b.as_bytes())];
    for (name, data) in &notes {
        std::fs::write(notes_dir.join(name), data).unwrap();
    }
    let notes_target = format!("owner/notes:{tag}");
    oras(
        &[
            "push",
            "--registry",
            &registry.addr,
            "--target",
            &notes_target,
            "a.txt",
            "b.txt",
        ],
        &notes_dir,
    )
    .await;
    let notes_bytes = (note_a.len() + note_b.len()) as u64;

    // 2. shoal: the registry under two names; the default registry is a dead address, so
    // a request routed to it (neither host in the path nor ns) fails. Tags are revalidated
    // at every pull, so that the offline part runs on stale-if-error.
    let port = free_port();
    let log_path = work.path().join("shoal.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _log = LogOnPanic {
        what: "shoal",
        path: log_path,
    };
    let docker_io = format!("docker.io={}", registry.url());
    let ghcr_io = format!("ghcr.io={}", registry.url());
    let shoal = spawn_shoal_opts(
        &work.path().join("shoal-data"),
        &dead_url(),
        port,
        &["--registry", &docker_io, "--registry", &ghcr_io],
        &[
            ("SHOAL_MANIFESTS__TAG_TTL", "1ms"),
            ("RUST_LOG", "shoal=info,warn"),
        ],
        log.into(),
    )
    .await;
    let host = format!("127.0.0.1:{port}");
    let url = shoal.url.clone();
    let start = settled_stats(&url).await;
    assert_eq!(counter(&start, "upstream_bytes"), 0, "{start}");

    // 3. containerd, with shoal as the docker.io mirror (hosts.toml). The fallback server
    // is a dead address too: nothing may come from anywhere but shoal.
    let hosts = ctr_hosts_dir(work.path(), "docker.io", &host);
    let ns = CtrNamespace {
        address: tools.containerd.clone(),
        name: format!("shoal-e2e-{id}"),
    };
    let ctr_ref = format!("docker.io/library/app:{tag}");
    let out = exec_ok(
        "ctr",
        &ns.args(&[
            "images",
            "pull",
            "--hosts-dir",
            hosts.to_str().unwrap(),
            "--platform",
            "linux/amd64",
            &ctr_ref,
        ]),
    )
    .await;
    eprintln!(
        "ctr pull: {}",
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
    let after_ctr = settled_stats(&url).await;
    let amd64_bytes = image.platform_bytes("amd64");
    let by_reg = registry_bytes(&after_ctr);
    eprintln!("after ctr: upstream_bytes by registry {by_reg:?}");
    assert_eq!(
        by_reg.get("docker.io"),
        Some(&amd64_bytes),
        "containerd's ?ns=docker.io requests did not fill the amd64 blobs under docker.io: {after_ctr}"
    );
    assert_eq!(by_reg.get("ghcr.io"), Some(&0), "{after_ctr}");
    assert_eq!(
        counter(&after_ctr, "upstream_bytes"),
        amd64_bytes,
        "{after_ctr}"
    );

    // 4. skopeo copy --all through the ghcr.io name: the index and both platforms.
    let copied = work.path().join("copied");
    skopeo_ok(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{host}/ghcr.io/owner/app:{tag}"),
        &format!("oci:{}:{tag}", copied.display()),
    ])
    .await;
    let top: Value =
        serde_json::from_slice(&std::fs::read(copied.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        top["manifests"][0]["digest"].as_str(),
        Some(image.index_digest.as_str()),
        "skopeo's copy has another index: {top}"
    );
    let pushed = layout_blobs(&image.layout);
    let got = layout_blobs(&copied);
    assert_eq!(
        got.keys().collect::<BTreeSet<_>>(),
        pushed.keys().collect::<BTreeSet<_>>(),
        "skopeo's copy has other blobs"
    );
    for (digest, bytes) in &got {
        assert_eq!(&sha256(bytes), digest, "copied blob {digest} is corrupt");
    }
    let index: Value = serde_json::from_slice(&got[&image.index_digest]).unwrap();
    let platforms: BTreeMap<String, String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_owned(),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: BTreeMap<String, String> = image
        .manifests
        .iter()
        .map(|(a, (d, _))| (a.clone(), d.clone()))
        .collect();
    assert_eq!(platforms, want);
    let after_copy = settled_stats(&url).await;
    let by_reg = registry_bytes(&after_copy);
    eprintln!("after skopeo copy --all: upstream_bytes by registry {by_reg:?}");
    assert_eq!(
        by_reg.get("ghcr.io"),
        Some(&image.only_bytes("arm64")),
        "only the arm64 blobs were new: {after_copy}"
    );
    assert_eq!(by_reg.get("docker.io"), Some(&amd64_bytes), "{after_copy}");

    // 5. skopeo inspect (the tag list too).
    let inspect = async || {
        let out = skopeo_ok(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{host}/ghcr.io/owner/app:{tag}"),
        ])
        .await;
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("skopeo inspect: {e}: {}", out.describe()));
        assert_eq!(
            v["Digest"].as_str(),
            Some(image.index_digest.as_str()),
            "{v}"
        );
        assert!(
            v["RepoTags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == tag.as_str())),
            "skopeo inspect lacks tag {tag}: {v}"
        );
        v
    };
    let v = inspect().await;
    assert_eq!(v["Architecture"], "amd64", "{v}");
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(2), "{v}");

    // 6. oras through the ghcr.io name.
    let notes_out = work.path().join("notes-out");
    let report = oras(
        &[
            "pull",
            "--registry",
            &host,
            "--target",
            &format!("ghcr.io/{notes_target}"),
            "--outdir",
            notes_out.to_str().unwrap(),
        ],
        work.path(),
    )
    .await;
    check_pull(&report, &notes_out, &notes, &host);

    // 7. The Docker engine, through the docker.io name.
    let docker_ref = format!("{host}/docker.io/library/app:{tag}");
    let _docker_image = DockerImage(docker_ref.clone());
    let docker_pull = async || {
        let out = exec_ok("docker", &["pull", &docker_ref]).await;
        let text = out.stdout_str();
        assert!(
            text.contains(&format!("Digest: {}", image.index_digest)),
            "docker pull: {}",
            out.describe()
        );
        let out = exec_ok(
            "docker",
            &[
                "image",
                "inspect",
                "--format",
                "{{.Architecture}} {{json .RootFS.Layers}}",
                &docker_ref,
            ],
        )
        .await;
        let want = format!(
            "amd64 {}",
            serde_json::to_string(&image.manifests["amd64"].1).unwrap()
        );
        assert_eq!(out.stdout_str().trim(), want);
    };
    docker_pull().await;
    let online = settled_stats(&url).await;
    let by_reg = registry_bytes(&online);
    eprintln!("after oras and docker: upstream_bytes by registry {by_reg:?}");
    assert_eq!(
        by_reg.get("docker.io"),
        Some(&amd64_bytes),
        "docker pull fetched blobs already cached: {online}"
    );
    assert_eq!(
        by_reg.get("ghcr.io"),
        Some(&(image.only_bytes("arm64") + notes_bytes)),
        "{online}"
    );

    // 8. A registry that is not configured: refused, nothing fetched.
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{host}/quay.io/x/y:{tag}"),
    ])
    .await;
    assert!(
        !out.status.success(),
        "skopeo inspect of quay.io succeeded: {}",
        out.describe()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("name unknown"),
        "skopeo did not fail on shoal's NAME_UNKNOWN: {}",
        out.describe()
    );
    for path in [
        format!("/v2/quay.io/x/y/manifests/{tag}"),
        format!("/v2/x/y/manifests/{tag}?ns=quay.io"),
    ] {
        let r = get(&format!("{url}{path}"), &[("accept", OCI_INDEX)]).await;
        assert_eq!(r.status, 404, "GET {path}");
        assert_eq!(r.oci_code(), "NAME_UNKNOWN", "GET {path}: {:?}", r.body);
    }
    let refused = settled_stats(&url).await;
    assert_eq!(registry_bytes(&refused), by_reg, "{refused}");
    assert!(refused["registries"].get("quay.io").is_none(), "{refused}");
    for c in ["upstream_bytes", "fills_started", "blobs"] {
        assert_eq!(counter(&refused, c), counter(&online, c), "{c}: {refused}");
    }

    // 9. The registry goes away; what shoal holds keeps being served.
    registry.stop();
    assert!(
        get_fails(&format!("{}/v2/", registry.url())).await,
        "docker-registry still answers after being killed"
    );
    let before = stats(&url).await;
    for i in 0..OFFLINE_PULLS {
        let out = exec("docker", &["rmi", &docker_ref]).await;
        assert!(
            out.status.success(),
            "docker rmi before offline pull {i}: {}",
            out.describe()
        );
        docker_pull().await;
    }
    for _ in 0..OFFLINE_PULLS {
        inspect().await;
    }
    let after = settled_stats(&url).await;
    eprintln!(
        "offline: {OFFLINE_PULLS} docker pulls and skopeo inspects; blob_hits {} -> {}, \
         manifest_stale {} -> {}",
        counter(&before, "blob_hits"),
        counter(&after, "blob_hits"),
        counter(&before, "manifest_stale"),
        counter(&after, "manifest_stale")
    );
    // Each pull after `docker rmi` read the config and both layers again.
    assert!(
        counter(&after, "blob_hits") >= counter(&before, "blob_hits") + 3 * OFFLINE_PULLS as u64,
        "docker did not fetch the blobs again: {before} -> {after}"
    );
    assert!(
        counter(&after, "manifest_stale")
            >= counter(&before, "manifest_stale") + OFFLINE_PULLS as u64,
        "tags were not revalidated (and failed) while upstream was down: {before} -> {after}"
    );

    // 10. Each blob crossed once: the sum of the distinct blobs fetched, whatever the
    // clients and names.
    let want = image.total_bytes() + notes_bytes;
    let by_reg = registry_bytes(&after);
    eprintln!(
        "upstream_bytes {} (want {want}: image {} + oras {notes_bytes}); by registry {by_reg:?}; \
         served_bytes {}; blobs {}; fills_started {}",
        counter(&after, "upstream_bytes"),
        image.total_bytes(),
        counter(&after, "served_bytes"),
        counter(&after, "blobs"),
        counter(&after, "fills_started"),
    );
    assert_eq!(counter(&after, "upstream_bytes"), want, "{after}");
    assert_eq!(by_reg.values().sum::<u64>(), want, "{after}");
    assert_eq!(
        counter(&after, "blobs"),
        7,
        "5 image blobs, 2 oras layers: {after}"
    );
    assert_eq!(counter(&after, "fills_started"), 7, "{after}");
    assert_eq!(counter(&after, "fills_failed"), 0, "{after}");

    drop(shoal);
}

/// Whether a request to `url` fails to connect.
async fn get_fails(url: &str) -> bool {
    try_request(http::Method::GET, url, &[]).await.is_err()
}
