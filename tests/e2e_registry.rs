//! End to end with the real software users run around shoal: Debian's `docker-registry`
//! (distribution 2.8) as the upstream, oras-py (PyPI `oras`) as the OCI client, and curl
//! for plain, ranged and HEAD requests.
//!
//! An artifact of two layers is pushed straight to the registry, then pulled through
//! shoal cold, warm, and once more with the registry stopped (stale-if-error); each pull
//! is compared byte for byte with what was pushed, and shoal's stats must show that the
//! blobs crossed from upstream once.
//!
//! Needs `apt-get install docker-registry curl` and `pip install oras`. Without them the
//! test says what is missing and passes, unless `REQUIRE_E2E_TOOLS=1` (CI) makes it fail.

// The fake upstream that `support` re-exports is not used here: the registry is real.
mod support;

use std::path::PathBuf;
use std::time::Duration;

use http::Method;
use serde_json::Value;
use support::registry::*;
use support::*;

const REPO: &str = "e2e/artifact";
const TAG: &str = "v1";
/// What OCI clients send for a manifest (oras, containerd and docker send this or more).
const MANIFEST_ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

// ---------------------------------------------------------------------------------------
// Prerequisites

struct Tools {
    registry: PathBuf,
}

/// The third-party programs this test runs, or `None` (after saying what is missing) when
/// the test should be skipped. Panics instead when `REQUIRE_E2E_TOOLS=1`.
async fn tools() -> Option<Tools> {
    let mut missing = Vec::new();
    let registry = registry_tools(&mut missing).await;
    need("curl", "curl: apt-get install curl", &mut missing).await;
    if missing.is_empty() {
        return registry.map(|registry| Tools { registry });
    }
    skip_for_missing("e2e_registry", &missing);
    None
}

// ---------------------------------------------------------------------------------------
// The scenario

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oras_pulls_an_artifact_from_docker_registry_through_shoal() {
    let Some(tools) = tools().await else { return };
    tokio::time::timeout(TEST_TIMEOUT, scenario(tools))
        .await
        .expect("e2e scenario timed out");
}

async fn scenario(tools: Tools) {
    let work = tempfile::tempdir().unwrap();
    let big = blob_bytes(5 * (1 << 20) + 4321, 7);
    let small = b"shoal e2e: a small second layer\n".to_vec();
    let files: [(&str, &[u8]); 2] = [("model.bin", &big), ("notes.txt", &small)];
    let total = (big.len() + small.len()) as u64;
    let target = format!("{REPO}:{TAG}");

    // 1. The upstream, with the artifact pushed straight to it.
    let mut registry = Registry::start(&tools.registry).await;
    let push_dir = work.path().join("push");
    std::fs::create_dir(&push_dir).unwrap();
    for (name, data) in &files {
        std::fs::write(push_dir.join(name), data).unwrap();
    }
    let pushed = oras(
        &[
            "push",
            "--registry",
            &registry.addr,
            "--target",
            &target,
            "model.bin",
            "notes.txt",
        ],
        &push_dir,
    )
    .await;
    let manifest_digest = pushed["digest"]
        .as_str()
        .expect("manifest digest")
        .to_owned();
    let big_digest = sha256(&big);
    let small_digest = sha256(&small);

    // 2. shoal in front of it; tags are revalidated at every pull (for step 6).
    let shoal = Shoal::start_with(&registry.url(), |c| {
        c.manifests.tag_ttl = Duration::from_millis(1);
    })
    .await;
    let shoal_host = shoal.addr().to_string();

    // 3. Cold pull through shoal.
    let pull = |n: u32| {
        let outdir = work.path().join(format!("pull-{n}"));
        let cwd = work.path().to_owned();
        let shoal_host = shoal_host.clone();
        let target = target.clone();
        async move {
            let report = oras(
                &[
                    "pull",
                    "--registry",
                    &shoal_host,
                    "--target",
                    &target,
                    "--outdir",
                    outdir.to_str().unwrap(),
                ],
                &cwd,
            )
            .await;
            (report, outdir)
        }
    };
    let (report, outdir) = pull(1).await;
    check_pull(&report, &outdir, &files, &shoal_host);

    // 4. Both layers are cached, fetched from upstream once (oras never fetches the
    // config blob of an artifact).
    let settled = eventually(Duration::from_secs(10), async || {
        let s = shoal.stats().await;
        counter(&s, "blobs") == 2 && counter(&s, "fills_running") == 0
    })
    .await;
    let cold = shoal.stats().await;
    eprintln!("stats after the cold pull: {cold}");
    assert!(settled, "fills did not complete: {cold}");
    assert_eq!(counter(&cold, "cache_bytes"), total, "{cold}");
    assert_eq!(counter(&cold, "fills_started"), 2, "{cold}");
    assert_eq!(counter(&cold, "fills_failed"), 0, "{cold}");
    let up = counter(&cold, "upstream_bytes");
    // A re-split of an in-flight range may read a little twice, never the whole blob.
    assert!(
        up >= total && up < total * 3 / 2,
        "upstream_bytes {up} for {total}: {cold}"
    );

    let (report, outdir) = pull(2).await;
    check_pull(&report, &outdir, &files, &shoal_host);
    let warm = shoal.stats().await;
    assert_eq!(
        counter(&warm, "upstream_bytes"),
        up,
        "warm pull fetched blobs: {warm}"
    );
    assert_eq!(
        counter(&warm, "fills_started"),
        2,
        "warm pull started fills: {warm}"
    );
    assert_eq!(
        counter(&warm, "blob_misses"),
        counter(&cold, "blob_misses"),
        "{warm}"
    );
    assert!(
        counter(&warm, "blob_hits") >= counter(&cold, "blob_hits") + 2,
        "blob hits did not grow: {cold} -> {warm}"
    );
    assert!(
        counter(&warm, "served_bytes") >= counter(&cold, "served_bytes") + total,
        "{cold} -> {warm}"
    );

    // 5. curl through shoal.
    let curl_dir = work.path().join("curl");
    std::fs::create_dir(&curl_dir).unwrap();
    let blob_url = format!("{}/v2/{REPO}/blobs/{big_digest}", shoal.url());

    let whole = curl(&curl_dir, &[], &blob_url).await;
    assert_eq!(whole.status, 200);
    assert_eq!(sha256(&whole.body), big_digest);
    assert_eq!(
        whole.header("content-length"),
        Some(big.len().to_string().as_str())
    );
    assert_eq!(
        whole.header("docker-content-digest"),
        Some(big_digest.as_str())
    );

    let part = curl(&curl_dir, &["-H", "Range: bytes=100-199"], &blob_url).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body.len(), 100);
    assert!(part.body == big[100..200], "wrong bytes for bytes=100-199");
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-199/{}", big.len()).as_str())
    );
    assert_eq!(part.header("content-length"), Some("100"));

    for (digest, len) in [(&big_digest, big.len()), (&small_digest, small.len())] {
        let url = format!("{}/v2/{REPO}/blobs/{digest}", shoal.url());
        let head = curl(&curl_dir, &["-I"], &url).await;
        assert_eq!(head.status, 200, "HEAD {digest}");
        assert_eq!(
            head.header("content-length"),
            Some(len.to_string().as_str()),
            "HEAD {digest}"
        );
        assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));
    }

    let accept = format!("Accept: {MANIFEST_ACCEPT}");
    let path = format!("/v2/{REPO}/manifests/{TAG}");
    let direct = curl(
        &curl_dir,
        &["-H", &accept],
        &format!("{}{path}", registry.url()),
    )
    .await;
    let via = curl(
        &curl_dir,
        &["-H", &accept],
        &format!("{}{path}", shoal.url()),
    )
    .await;
    assert_eq!(direct.status, 200);
    assert_eq!(via.status, 200);
    assert!(
        via.body == direct.body,
        "manifest differs from the registry's:\n{}\n---\n{}",
        String::from_utf8_lossy(&via.body),
        String::from_utf8_lossy(&direct.body)
    );
    assert_eq!(sha256(&via.body), manifest_digest);
    assert_eq!(
        via.header("docker-content-digest"),
        Some(sha256(&via.body).as_str())
    );
    assert_eq!(via.header("content-type"), direct.header("content-type"));
    let manifest: Value = serde_json::from_slice(&via.body).unwrap();
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["digest"].as_str())
        .collect();
    assert_eq!(layers, [big_digest.as_str(), small_digest.as_str()]);

    // 6. Upstream goes away; shoal keeps serving what it holds.
    registry.stop();
    assert!(
        try_request(Method::GET, &format!("{}/v2/", registry.url()), &[])
            .await
            .is_err(),
        "docker-registry still answers after being killed"
    );
    let before = shoal.stats().await;
    let (report, outdir) = pull(3).await;
    check_pull(&report, &outdir, &files, &shoal_host);
    let head = curl(
        &curl_dir,
        &["-I"],
        &format!("{}/v2/{REPO}/blobs/{small_digest}", shoal.url()),
    )
    .await;
    assert_eq!(head.status, 200, "HEAD with upstream down");
    assert_eq!(
        head.header("content-length"),
        Some(small.len().to_string().as_str())
    );
    // By digest too (what containerd asks for after resolving a tag): immutable, so
    // served from the store with no upstream at all.
    let by_digest = curl(
        &curl_dir,
        &["-H", &accept],
        &format!("{}/v2/{REPO}/manifests/{manifest_digest}", shoal.url()),
    )
    .await;
    assert_eq!(
        by_digest.status, 200,
        "manifest by digest with upstream down"
    );
    assert!(by_digest.body == direct.body, "manifest by digest differs");
    assert_eq!(
        by_digest.header("docker-content-digest"),
        Some(manifest_digest.as_str())
    );
    let after = shoal.stats().await;
    assert!(
        counter(&after, "manifest_stale") > counter(&before, "manifest_stale"),
        "the tag was not revalidated (and failed) while upstream was down: {before} -> {after}"
    );
    assert_eq!(counter(&after, "upstream_bytes"), up, "{after}");
    assert_eq!(counter(&after, "fills_started"), 2, "{after}");

    shoal.stop().await;
}
