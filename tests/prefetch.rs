//! `shoal prefetch NAME` against a running `shoal serve` (the real binaries) and a fake
//! ollama-like upstream: a cold prefetch fills the cache from upstream, a warm one reads it
//! from the cache, and failures (unknown model, no server, wrong registry, bad bytes,
//! bad name) exit non-zero naming what is wrong.

mod support;

use std::sync::atomic::Ordering::SeqCst;

use support::*;

const MIB: usize = 1 << 20;

struct Run {
    code: Option<i32>,
    out: String,
    err: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.out, self.err
        )
    }
}

impl Run {
    /// The plain line printed for a finished blob (stderr is not a terminal here).
    fn blob_line(&self, digest: &str) -> Option<&str> {
        self.err.lines().find(|l| l.starts_with(digest))
    }
}

async fn shoal_run(args: &[&str]) -> Run {
    let mut cmd = shoal_command();
    cmd.args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("binary runs"))
        .await
        .unwrap();
    Run {
        code: out.status.code(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn prefetch(server: &str, name: &str, extra: &[&str]) -> Run {
    let mut args = vec!["prefetch", name, "--server", server];
    args.extend_from_slice(extra);
    shoal_run(&args).await
}

async fn stats(server: &str) -> serde_json::Value {
    let r = get(&format!("{server}/_shoal/v1/stats"), &[]).await;
    assert_eq!(r.status, 200);
    r.json()
}

fn model() -> Model {
    Model::new(vec![
        blob_bytes(3 * MIB + 12345, 31),
        blob_bytes(200_000, 32),
    ])
}

fn digests(m: &Model) -> Vec<String> {
    let mut d: Vec<String> = (0..m.layers.len()).map(|i| m.layer_digest(i)).collect();
    d.push(format!("sha256:{}", sha256_hex(&m.config)));
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_then_warm_prefetch() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = model();
        up.add_model("library/tiny", "1b", &m);
        let total = (m.layers.iter().map(|l| l.len()).sum::<usize>() + m.config.len()) as u64;
        let data = tempfile::tempdir().unwrap();
        let shoal = spawn_shoal(data.path(), &up.url(), free_port()).await;

        // Cold: every blob comes from upstream, and is complete in the cache when the
        // command returns (a whole-blob GET ends only once the blob is verified).
        let run = prefetch(&shoal.url, "library/tiny:1b", &[]).await;
        assert_eq!(run.code, Some(0), "{run}");
        for d in digests(&m) {
            let line = run
                .blob_line(&d)
                .unwrap_or_else(|| panic!("no line for {d}: {run}"));
            assert!(line.contains("from upstream"), "{line}");
        }
        assert!(
            run.out.contains("prefetched library/tiny:1b: 3 blobs"),
            "{run}"
        );
        assert!(run.out.contains(&format!("{total} bytes")), "{run}");
        assert!(run.out.contains("0 from cache, 3 from upstream"), "{run}");
        let s = stats(&shoal.url).await;
        assert_eq!(s["blobs"], 3, "{s}");
        assert_eq!(s["cache_bytes"], total, "{s}");
        let upstream_bytes = s["upstream_bytes"].as_u64().unwrap();
        assert!(upstream_bytes >= total, "{s}");

        // Warm, named with the upstream's host: all from the cache, nothing new upstream.
        let cdn_gets = up.counts.cdn_gets.load(SeqCst);
        let full_name = format!("{}/library/tiny:1b", up.registry);
        let run = prefetch(&shoal.url, &full_name, &[]).await;
        assert_eq!(run.code, Some(0), "{run}");
        for d in digests(&m) {
            let line = run
                .blob_line(&d)
                .unwrap_or_else(|| panic!("no line for {d}: {run}"));
            assert!(line.contains("from cache"), "{line}");
        }
        assert!(run.out.contains("3 from cache, 0 from upstream"), "{run}");
        let s = stats(&shoal.url).await;
        assert_eq!(s["upstream_bytes"], upstream_bytes, "{s}");
        assert_eq!(s["blobs"], 3, "{s}");
        assert_eq!(up.counts.cdn_gets.load(SeqCst), cdn_gets);

        // The manifest was also cached the way ollama asks for it: with upstream failing,
        // ollama's own pull still completes from the cache.
        up.faults.lock().unwrap().registry_503 = true;
        let pull = ollama_pull(&shoal.url, "library/tiny", "1b", PullOptions::default())
            .await
            .expect("offline pull after prefetch");
        assert_eq!(pull.manifest, m.manifest);
        assert_eq!(pull.blobs[0].data, m.layers[0]);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_prefetch_uses_the_tag_as_ollama_pulled_it() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = model();
        up.add_model("library/tiny", "1b", &m);
        let data = tempfile::tempdir().unwrap();
        let shoal = spawn_shoal(data.path(), &up.url(), free_port()).await;
        ollama_pull(&shoal.url, "library/tiny", "1b", PullOptions::default())
            .await
            .expect("ollama pull");
        // ollama's ranged reads do not wait for the commit.
        let committed = eventually(std::time::Duration::from_secs(10), async || {
            stats(&shoal.url).await["blobs"] == 3
        })
        .await;
        assert!(committed);

        // Upstream failing: the manifest is cached only under ollama's Accept.
        up.faults.lock().unwrap().registry_503 = true;
        let run = prefetch(&shoal.url, "tiny:1b", &[]).await;
        assert_eq!(run.code, Some(0), "{run}");
        assert!(run.out.contains("3 from cache, 0 from upstream"), "{run}");
    })
    .await
    .expect("test timed out");
}

/// `shoal prefetch hf.co/...` against a server started with `--registry hf.co=URL`: the
/// model comes from that registry and is filed under it; a host the server does not
/// cache is refused, naming the flag that would add it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_of_any_configured_registry() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let hf = FakeUpstream::start_on("127.0.0.3".parse().unwrap(), "127.0.0.4".parse().unwrap())
            .await;
        let m = model();
        hf.add_model("bartowski/gguf", "Q4_K_M", &m);
        let data = tempfile::tempdir().unwrap();
        let flag = format!("hf.co={}", hf.url());
        let shoal =
            spawn_shoal_with(data.path(), &up.url(), free_port(), &["--registry", &flag]).await;
        let run = prefetch(&shoal.url, "hf.co/bartowski/gguf:Q4_K_M", &[]).await;
        assert_eq!(run.code, Some(0), "{run}");
        for d in digests(&m) {
            assert!(
                run.blob_line(&d).is_some_and(|l| l.contains("upstream")),
                "{d}: {run}"
            );
        }
        assert_eq!(
            up.counts.manifest_gets.load(SeqCst),
            0,
            "the default was not asked"
        );
        let s = stats(&shoal.url).await;
        assert_eq!(s["blobs"], 3, "{s}");
        assert!(
            s["registries"]["hf.co"]["upstream_bytes"].as_u64() > Some(0),
            "{s}"
        );
        let ls = get(&format!("{}/_shoal/v1/models", shoal.url), &[])
            .await
            .json();
        assert_eq!(
            ls["models"][0]["name"], "hf.co/bartowski/gguf:Q4_K_M",
            "{ls}"
        );

        let run = prefetch(&shoal.url, "ghcr.io/owner/app:1", &[]).await;
        assert_eq!(run.code, Some(1), "{run}");
        assert!(run.err.contains("--registry ghcr.io"), "{run}");
        assert!(run.err.contains("hf.co"), "lists what it caches: {run}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_name_what_is_wrong() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = model();
        up.add_model("library/tiny", "1b", &m);
        let data = tempfile::tempdir().unwrap();
        let shoal = spawn_shoal(data.path(), &up.url(), free_port()).await;

        // A model upstream does not know.
        let run = prefetch(&shoal.url, "nope:1b", &[]).await;
        assert_eq!(run.code, Some(1), "{run}");
        assert!(run.err.contains("library/nope:1b"), "{run}");
        assert!(run.err.contains("not known"), "{run}");

        // A name on another registry than the server's upstream: refused before any
        // request reaches upstream.
        let manifests = up.counts.manifest_gets.load(SeqCst);
        let run = prefetch(&shoal.url, "registry.ollama.ai/library/tiny:1b", &[]).await;
        assert_eq!(run.code, Some(1), "{run}");
        assert!(run.err.contains("registry.ollama.ai"), "{run}");
        assert!(
            run.err.contains(&up.url()),
            "names the server's upstream: {run}"
        );
        assert_eq!(up.counts.manifest_gets.load(SeqCst), manifests);

        // No server there.
        let dead = dead_url();
        let run = prefetch(&dead, "library/tiny:1b", &[]).await;
        assert_eq!(run.code, Some(1), "{run}");
        assert!(run.err.contains(&dead), "{run}");

        // A bad name, or a bad server URL: usage errors naming the part.
        let run = prefetch(&shoal.url, "library/bad name:1b", &[]).await;
        assert_eq!(run.code, Some(64), "{run}");
        assert!(run.err.contains("\"bad name\""), "{run}");
        let run = prefetch(&shoal.url, "library/tiny:-x", &[]).await;
        assert_eq!(run.code, Some(64), "{run}");
        assert!(run.err.contains("tag \"-x\""), "{run}");
        let run = prefetch("ftp://x", "library/tiny:1b", &[]).await;
        assert_eq!(run.code, Some(64), "{run}");
        assert!(run.err.contains("ftp://x"), "{run}");

        // Upstream sends bytes that do not match a digest: the server refuses to finish
        // that blob, prefetch says which one and fails; nothing bad is cached.
        let bad = m.layer_digest(1);
        let mut wrong = m.layers[1].to_vec();
        wrong[100] ^= 0xff;
        up.faults
            .lock()
            .unwrap()
            .corrupt
            .insert(sha256_hex(&m.layers[1]), wrong);
        let run = prefetch(&shoal.url, "library/tiny:1b", &[]).await;
        assert_eq!(run.code, Some(1), "{run}");
        let line = run
            .blob_line(&bad)
            .unwrap_or_else(|| panic!("no line for {bad}: {run}"));
        assert!(line.contains("failed"), "{line}");
        assert!(run.err.contains("1 of 3 blobs"), "{run}");
        assert_eq!(stats(&shoal.url).await["blobs"], 2);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_is_followed_to_the_chosen_platform() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let amd = Model::new(vec![blob_bytes(300_000, 41)]);
        let arm = Model::new(vec![blob_bytes(300_001, 42)]);
        up.add_model("library/app", "amd64", &amd);
        up.add_model("library/app", "arm64", &arm);
        let entry = |m: &Model, arch: &str| {
            format!(
                r#"{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#,
                m.manifest_digest(),
                m.manifest.len()
            )
        };
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}}"#,
            entry(&amd, "amd64"),
            entry(&arm, "arm64")
        );
        up.add_manifest("library/app", "2", index);
        let data = tempfile::tempdir().unwrap();
        let shoal = spawn_shoal(data.path(), &up.url(), free_port()).await;

        let run = prefetch(&shoal.url, "app:2", &["--platform", "linux/arm64"]).await;
        assert_eq!(run.code, Some(0), "{run}");
        assert!(run.blob_line(&arm.layer_digest(0)).is_some(), "{run}");
        assert!(run.blob_line(&amd.layer_digest(0)).is_none(), "{run}");
        // The two images share their config blob.
        assert!(run.out.contains(": 2 blobs"), "{run}");
        assert_eq!(stats(&shoal.url).await["blobs"], 2);

        let run = prefetch(&shoal.url, "app:2", &["--platform", "windows/amd64"]).await;
        assert_eq!(run.code, Some(1), "{run}");
        assert!(run.err.contains("linux/amd64, linux/arm64"), "{run}");

        let run = prefetch(&shoal.url, "app:2", &["--platform", "all"]).await;
        assert_eq!(run.code, Some(0), "{run}");
        assert!(run.out.contains(": 3 blobs"), "{run}");
        assert!(run.out.contains("2 from cache, 1 from upstream"), "{run}");
        assert_eq!(stats(&shoal.url).await["blobs"], 3);
    })
    .await
    .expect("test timed out");
}
