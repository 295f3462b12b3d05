//! `ollama pull` through shoal, replayed by gopull: the Go stand-in for ollama's registry
//! client in `../shared/tools/ollama-pull` (Go's own net/http, ollama's part layout, stall
//! timer, retries and on-disk layout), run as a subprocess in mirror-name mode
//! (`-insecure 127.0.0.1:<port>/library/<model>:<tag>`).
//!
//! Needs the gopull source beside the repository and `go` (see `support/gopull.rs`);
//! without them every test prints `SKIPPED` and passes, except in CI.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use serde_json::Value;
use support::*;

const MIB: usize = 1 << 20;

/// The name ollama is given in mirror-name mode: `<shoal>/<repo>:<tag>`.
fn name(shoal: &Shoal, repo: &str, tag: &str) -> String {
    format!("{}/{repo}:{tag}", shoal.addr())
}

// ---------------------------------------------------------------------------------------
// Checks

/// Every blob of the model in the order ollama pulls them: layers, then the config.
fn blobs_of(m: &Model) -> Vec<&[u8]> {
    m.layers
        .iter()
        .map(|l| &l[..])
        .chain([&m.config[..]])
        .collect()
}

fn total_bytes(m: &Model) -> u64 {
    blobs_of(m).iter().map(|b| b.len() as u64).sum()
}

/// The models dir holds what ollama would: the byte-identical manifest under the mirror
/// name, every blob complete and hashing to its digest, no partial files left.
fn assert_models_dir(models: &Path, shoal: &Shoal, repo: &str, tag: &str, m: &Model) {
    let manifest = models
        .join("manifests")
        .join(shoal.addr().to_string())
        .join(repo)
        .join(tag);
    let got = std::fs::read(&manifest)
        .unwrap_or_else(|e| panic!("manifest file {}: {e}", manifest.display()));
    assert!(
        got == m.manifest,
        "manifest file must be byte-identical to upstream's"
    );
    let mut want = BTreeSet::new();
    for blob in blobs_of(m) {
        let hex = sha256_hex(blob);
        let path = models.join("blobs").join(format!("sha256-{hex}"));
        let data =
            std::fs::read(&path).unwrap_or_else(|e| panic!("blob file {}: {e}", path.display()));
        assert_eq!(data.len(), blob.len(), "{}", path.display());
        assert_eq!(sha256_hex(&data), hex, "{}", path.display());
        want.insert(format!("sha256-{hex}"));
    }
    let present: BTreeSet<String> = std::fs::read_dir(models.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(present, want, "only complete blobs, no partial files");
}

/// The JSON of a pull that downloaded every blob from shoal.
fn assert_downloaded_all(o: &Outcome, shoal: &Shoal, m: &Model) {
    let j = &o.json;
    assert_eq!(j["bytes"], total_bytes(m), "{j}");
    assert_eq!(
        j["manifest_sha256"].as_str(),
        Some(sha256_hex(&m.manifest).as_str()),
        "{j}"
    );
    let statuses = j["statuses"].as_object().unwrap();
    assert!(
        statuses.keys().all(|k| k == "206") && statuses.contains_key("206"),
        "every ranged part answered 206: {j}"
    );
    let registry = j["registry_statuses"].as_object().unwrap();
    assert!(
        registry.keys().all(|k| k == "200"),
        "manifest, HEAD and direct-URL requests answered 200: {j}"
    );
    let blobs = j["blobs"].as_array().unwrap();
    assert_eq!(blobs.len(), blobs_of(m).len(), "{j}");
    for (b, data) in blobs.iter().zip(blobs_of(m)) {
        assert_eq!(b["digest"], format!("sha256:{}", sha256_hex(data)), "{j}");
        assert_eq!(b["cached"], false, "{j}");
        assert_eq!(b["bytes"], data.len() as u64, "{j}");
        assert_eq!(
            b["direct_host"].as_str(),
            Some(shoal.addr().to_string().as_str()),
            "the direct URL stays on shoal: {j}"
        );
    }
}

/// Waits until shoal has no fill running and returns its stats.
async fn settled_stats(shoal: &Shoal) -> Value {
    let idle = eventually(Duration::from_secs(20), async || {
        shoal.stats().await["fills_running"] == 0
    })
    .await;
    let stats = shoal.stats().await;
    assert!(idle, "fills still running: {stats}");
    stats
}

fn model() -> Model {
    Model::new(vec![
        blob_bytes(6 * MIB + 12345, 11),
        blob_bytes(300_000, 12),
    ])
}

// ---------------------------------------------------------------------------------------
// Scenarios

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cold_pull() {
    let Some(bin) = gopull() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = model();
        up.add_model("library/granite-code", "8b", &m);
        let shoal = Shoal::start(&up.url()).await;
        let models = tempfile::tempdir().unwrap();

        let o = run_gopull(
            &bin,
            models.path(),
            &name(&shoal, "library/granite-code", "8b"),
            &["-stall", "10s"],
        )
        .await;
        o.expect_ok("cold pull");
        assert_downloaded_all(&o, &shoal, &m);
        assert_models_dir(models.path(), &shoal, "library/granite-code", "8b", &m);
        let j = &o.json;
        assert_eq!(j["retries"], 0, "{j}");
        assert_eq!(j["stalls"], 0, "{j}");
        assert_eq!(j["bytes_copied"], total_bytes(&m), "{j}");
        assert!(
            j["blobs"][0]["parts"].as_u64().unwrap() >= 16,
            "split like ollama: {j}"
        );
        assert_eq!(up.counts.blob_redirects.load(SeqCst), 3);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn warm_pull_stays_local() {
    let Some(bin) = gopull() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = model();
        up.add_model("library/granite-code", "8b", &m);
        let shoal = Shoal::start(&up.url()).await;
        let pull_name = name(&shoal, "library/granite-code", "8b");

        let cold = tempfile::tempdir().unwrap();
        run_gopull(&bin, cold.path(), &pull_name, &["-stall", "10s"])
            .await
            .expect_ok("cold pull");
        // Ranged readers do not wait for verification, so the last commit may trail the pull.
        let committed = eventually(Duration::from_secs(10), async || {
            shoal.stats().await["blobs"] == 3
        })
        .await;
        assert!(committed, "{}", shoal.stats().await);

        let cdn_gets = up.counts.cdn_gets.load(SeqCst);
        let cdn_heads = up.counts.cdn_heads.load(SeqCst);
        let redirects = up.counts.blob_redirects.load(SeqCst);
        let manifests = up.counts.manifest_gets.load(SeqCst);
        let upstream_bytes = shoal.stats().await["upstream_bytes"].clone();

        let warm = tempfile::tempdir().unwrap();
        let o = run_gopull(&bin, warm.path(), &pull_name, &["-stall", "10s"]).await;
        o.expect_ok("warm pull");
        assert_downloaded_all(&o, &shoal, &m);
        assert_models_dir(warm.path(), &shoal, "library/granite-code", "8b", &m);
        assert_eq!(up.counts.cdn_gets.load(SeqCst), cdn_gets);
        assert_eq!(up.counts.cdn_heads.load(SeqCst), cdn_heads);
        assert_eq!(up.counts.blob_redirects.load(SeqCst), redirects);
        assert!(
            up.counts.manifest_gets.load(SeqCst) <= manifests + 1,
            "at most one manifest revalidation"
        );
        let stats = shoal.stats().await;
        assert_eq!(stats["upstream_bytes"], upstream_bytes, "{stats}");
        assert!(stats["blob_hits"].as_u64().unwrap() >= 3, "{stats}");
    })
    .await
    .expect("test timed out");
}

/// A cached blob damaged on disk while shoal runs (the three ways an issue measured:
/// cut to a third, deleted, one byte flipped, replaced by another blob's file) costs the next `ollama pull` at most one
/// retry, and upstream sends that blob at most once more; no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damaged_blob_is_fetched_again() {
    let Some(bin) = gopull() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = model();
        up.add_model("library/granite-code", "8b", &m);
        let shoal = Shoal::start(&up.url()).await;
        let pull_name = name(&shoal, "library/granite-code", "8b");
        let first = tempfile::tempdir().unwrap();
        run_gopull(&bin, first.path(), &pull_name, &["-stall", "10s"])
            .await
            .expect_ok("cold pull");
        assert!(
            eventually(Duration::from_secs(10), async || shoal.stats().await
                ["blobs"]
                == 3)
            .await
        );
        let hex = sha256_hex(&m.layers[0]);
        let file = shoal
            .dir
            .path()
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(&hex);
        let size = m.layers[0].len() as u64;

        // What the CDN may send again: only the pieces (1 MiB here) the damage touched,
        // where the torrent's piece hashes can tell.
        let piece = MIB as u64;
        type Damage = fn(&Path);
        let damages: [(&str, u64, Damage); 4] = [
            ("cut to a third", size - 2 * piece, |f| {
                let len = std::fs::metadata(f).unwrap().len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(f)
                    .unwrap()
                    .set_len(len / 3)
                    .unwrap();
            }),
            ("deleted", size, |f| std::fs::remove_file(f).unwrap()),
            ("one byte flipped", piece, |f| {
                use std::os::unix::fs::FileExt;
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(f)
                    .unwrap();
                let mid = file.metadata().unwrap().len() / 2;
                let mut b = [0u8];
                file.read_exact_at(&mut b, mid).unwrap();
                file.write_all_at(&[!b[0]], mid).unwrap();
            }),
            ("replaced by another blob's file", size, |f| {
                // The model's second layer, as a hurried admin's `cp` would put it there.
                let dir = f.parent().unwrap().parent().unwrap();
                let other = std::fs::read_dir(dir)
                    .unwrap()
                    .flat_map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap())
                    .map(|e| e.unwrap().path())
                    .find(|p| p != f)
                    .unwrap();
                std::fs::copy(other, f).unwrap();
            }),
        ];
        for (i, (what, most, damage)) in damages.into_iter().enumerate() {
            damage(&file);
            let cdn_before = up.counts.cdn_bytes.load(SeqCst);
            let models = tempfile::tempdir().unwrap();
            let o = run_gopull(&bin, models.path(), &pull_name, &["-stall", "10s"]).await;
            o.expect_ok(&format!("pull after the blob was {what}"));
            assert_models_dir(models.path(), &shoal, "library/granite-code", "8b", &m);
            assert!(
                o.json["retries"].as_u64().unwrap() <= 1,
                "{what}: {}",
                o.json
            );
            let stats = settled_stats(&shoal).await;
            let cdn = up.counts.cdn_bytes.load(SeqCst) - cdn_before;
            assert!(
                cdn <= most,
                "{what}: the CDN sent {cdn} bytes for a {size}-byte blob (at most {most})"
            );
            assert!(cdn > 0, "{what}: fetched again");
            assert_eq!(stats["damaged_blobs"], i as u64 + 1, "{what}: {stats}");
            assert_eq!(stats["blobs"], 3, "{what}: held again: {stats}");
            assert_eq!(std::fs::read(&file).unwrap(), m.layers[0], "{what}: mended");
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_cold_pulls_fill_each_blob_once() {
    let Some(bin) = gopull() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = Model::new(vec![
            blob_bytes(10 * MIB + 777, 21),
            blob_bytes(500_000, 22),
        ]);
        up.add_model("library/tiny", "1b", &m);
        let shoal = Shoal::start(&up.url()).await;
        let pull_name = name(&shoal, "library/tiny", "1b");

        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let pulls = dirs
            .iter()
            .map(|d| run_gopull(&bin, d.path(), &pull_name, &["-stall", "10s"]));
        let outcomes = futures_util::future::join_all(pulls).await;
        for (o, d) in outcomes.iter().zip(&dirs) {
            o.expect_ok("concurrent pull");
            assert_downloaded_all(o, &shoal, &m);
            assert_models_dir(d.path(), &shoal, "library/tiny", "1b", &m);
        }
        assert_eq!(
            up.counts.blob_redirects.load(SeqCst),
            blobs_of(&m).len(),
            "one fill per blob for four pulls"
        );
        let stats = settled_stats(&shoal).await;
        assert_eq!(stats["fills_started"], blobs_of(&m).len(), "{stats}");
        let received = stats["upstream_bytes"].as_u64().unwrap();
        assert!(
            received < total_bytes(&m) * 3 / 2,
            "{received} bytes from upstream for {}: fills were not shared",
            total_bytes(&m)
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_stall_is_hidden_from_ollama() {
    let Some(bin) = gopull() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = model();
        up.add_model("library/granite-code", "8b", &m);
        let hex = sha256_hex(&m.layers[0]);
        // The first two CDN GETs of the big layer send 300 KB and then hang for a minute.
        up.faults
            .lock()
            .unwrap()
            .stall
            .insert(hex.clone(), (2, 300_000));
        let shoal = Shoal::start(&up.url()).await;
        let models = tempfile::tempdir().unwrap();

        // ollama's own 30 s stall timer: shoal (stall_timeout 2s in tests) must switch
        // connections long before it fires.
        let o = run_gopull(
            &bin,
            models.path(),
            &name(&shoal, "library/granite-code", "8b"),
            &["-stall", "30s"],
        )
        .await;
        o.expect_ok("pull over a stalling upstream");
        assert_eq!(
            o.json["stalls"], 0,
            "gopull's stall timer fired: {}",
            o.json
        );
        assert_eq!(o.json["retries"], 0, "{}", o.json);
        assert_downloaded_all(&o, &shoal, &m);
        assert_models_dir(models.path(), &shoal, "library/granite-code", "8b", &m);
        let left = up.faults.lock().unwrap().stall[&hex].0;
        assert_eq!(left, 0, "the stalling GETs were made");
        let secs = o.json["secs"].as_f64().unwrap();
        assert!(secs < 20.0, "took {secs}s");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_upstream_blob_is_never_cached() {
    let Some(bin) = gopull() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = Model::new(vec![blob_bytes(2 * MIB + 99, 31)]);
        up.add_model("library/granite-code", "8b", &m);
        let hex = sha256_hex(&m.layers[0]);
        let mut bad = m.layers[0].to_vec();
        for b in bad.iter_mut().skip(1000).step_by(4096) {
            *b ^= 0x5a;
        }
        up.faults.lock().unwrap().corrupt.insert(hex.clone(), bad);
        let shoal = Shoal::start(&up.url()).await;
        let models = tempfile::tempdir().unwrap();
        let pull_name = name(&shoal, "library/granite-code", "8b");
        // Short part retry sleeps: shoal may abort the ranged bodies of a failed fill.
        let flags = ["-stall", "10s", "-backoff-scale", "0.05"];

        let o = run_gopull(&bin, models.path(), &pull_name, &flags).await;
        assert!(!o.ok(), "a corrupt blob must fail the pull: {}", o.json);
        assert_eq!(o.code, Some(1), "{}\n{}", o.json, o.stderr);
        assert_eq!(o.json["ok"], false);
        assert!(
            !models
                .path()
                .join("blobs")
                .join(format!("sha256-{hex}"))
                .exists(),
            "gopull removed the bad blob"
        );

        // Only the config was cached; the corrupt layer was not.
        let stats = settled_stats(&shoal).await;
        assert_eq!(stats["blobs"], 1, "{stats}");
        assert_eq!(stats["cache_bytes"], m.config.len(), "{stats}");
        assert!(stats["fills_failed"].as_u64().unwrap() >= 1, "{stats}");

        // Upstream is fixed: the same pull, retried as a user would, now succeeds.
        up.faults.lock().unwrap().corrupt.remove(&hex);
        let o = run_gopull(&bin, models.path(), &pull_name, &flags).await;
        o.expect_ok("pull after the fault is gone");
        assert_models_dir(models.path(), &shoal, "library/granite-code", "8b", &m);
        let blobs = o.json["blobs"].as_array().unwrap();
        assert_eq!(blobs[0]["cached"], false, "{}", o.json);
        assert_eq!(
            blobs[1]["cached"], true,
            "the config stayed on disk: {}",
            o.json
        );
        let committed = eventually(Duration::from_secs(10), async || {
            shoal.stats().await["blobs"] == 2
        })
        .await;
        assert!(committed, "{}", shoal.stats().await);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_model_is_file_does_not_exist() {
    let Some(bin) = gopull() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        up.add_model("library/granite-code", "8b", &model());
        let shoal = Shoal::start(&up.url()).await;
        let models = tempfile::tempdir().unwrap();

        for (repo, tag) in [("library/nope", "1b"), ("library/granite-code", "70b")] {
            let o = run_gopull(&bin, models.path(), &name(&shoal, repo, tag), &[]).await;
            assert_eq!(o.code, Some(1), "{}\n{}", o.json, o.stderr);
            assert_eq!(o.json["ok"], false);
            assert!(
                o.error().contains("file does not exist"),
                "404 passed through to ollama: {}",
                o.json
            );
            assert_eq!(o.json["registry_statuses"]["404"], 1, "{}", o.json);
        }
        assert!(!models.path().join("manifests").exists());
        assert_eq!(shoal.stats().await["fills_started"], 0);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn library_style_names() {
    let Some(bin) = gopull() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = Model::new(vec![blob_bytes(300_000, 41)]);
        // Dots in model names, upper case and underscores in tags, a user namespace.
        let names = [
            ("library/llama3.1", "8b-instruct-q4_K_M"),
            ("library/qwen2.5-coder", "1.5b"),
            ("someuser/my_model", "latest"),
        ];
        for (repo, tag) in names {
            up.add_model(repo, tag, &m);
        }
        let shoal = Shoal::start(&up.url()).await;
        for (repo, tag) in names {
            let models = tempfile::tempdir().unwrap();
            let o = run_gopull(&bin, models.path(), &name(&shoal, repo, tag), &[]).await;
            o.expect_ok(&format!("{repo}:{tag}"));
            assert_models_dir(models.path(), &shoal, repo, tag, &m);
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_pull_then_restart() {
    let Some(bin) = gopull() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = Model::new(vec![blob_bytes(8 * MIB + 5, 51)]);
        up.add_model("library/granite-code", "8b", &m);
        let hex = sha256_hex(&m.layers[0]);
        // Every CDN GET of the layer sends 100 KB and then hangs: the fill crawls.
        up.faults
            .lock()
            .unwrap()
            .stall
            .insert(hex.clone(), (usize::MAX, 100_000));
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut first = Some(spawn_shoal(data.path(), &up.url(), port).await);
        let models = tempfile::tempdir().unwrap();
        let pull_name = format!("127.0.0.1:{port}/library/granite-code:8b");

        // ollama's part retries (1, 2, 4... s) outlast a restart on the same address.
        let restart = async {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            drop(first.take()); // SIGKILL mid-fill
            up.faults.lock().unwrap().stall.clear();
            spawn_shoal(data.path(), &up.url(), port).await
        };
        let (o, _second) = tokio::join!(
            run_gopull(&bin, models.path(), &pull_name, &["-stall", "30s"]),
            restart
        );
        o.expect_ok("pull across a kill -9 of shoal");
        assert!(
            o.json["retries"].as_u64().unwrap() > 0,
            "the kill happened mid-pull: {}",
            o.json
        );
        assert_eq!(o.json["stalls"], 0, "{}", o.json);
        let blob =
            std::fs::read(models.path().join("blobs").join(format!("sha256-{hex}"))).unwrap();
        assert_eq!(sha256_hex(&blob), hex);
        let manifest = models
            .path()
            .join("manifests")
            .join(format!("127.0.0.1:{port}"))
            .join("library/granite-code/8b");
        assert!(std::fs::read(manifest).unwrap() == m.manifest);
    })
    .await
    .expect("test timed out");
}
