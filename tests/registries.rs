//! Several registries on one node: the default (the ollama library's quirks) and `hf.co`
//! (a second fake on other addresses, whose blob redirects go through a signed bridge URL
//! before the CDN, as hf.co's do). Routing by path, by `?ns=` and by the host of an
//! intercepted tunnel; refusal of hosts that are not configured, with nothing fetched.

mod support;

use std::sync::atomic::Ordering::SeqCst;

use shoal::config::{RegistryEntry, RegistryName};
use support::*;

const MIB: usize = 1 << 20;
const UA: (&str, &str) = ("user-agent", "ollama/0.12.0");

struct Two {
    library: FakeUpstream,
    hf: FakeUpstream,
    granite: Model,
    gguf: Model,
}

async fn two_registries() -> Two {
    let library = FakeUpstream::start().await;
    let hf =
        FakeUpstream::start_on("127.0.0.3".parse().unwrap(), "127.0.0.4".parse().unwrap()).await;
    hf.faults.lock().unwrap().bridge = true;
    let granite = Model::new(vec![blob_bytes(3 * MIB + 11, 1), blob_bytes(1000, 2)]);
    let gguf = Model::with_config(
        vec![blob_bytes(4 * MIB + 5, 3)],
        br#"{"model_format":"gguf","model_family":"llama"}"#[..].into(),
    );
    library.add_model("library/granite-code", "8b", &granite);
    hf.add_model("bartowski/Llama-3.2-1B-GGUF", "Q4_K_M", &gguf);
    Two {
        library,
        hf,
        granite,
        gguf,
    }
}

fn with_hf(hf: &FakeUpstream) -> impl FnOnce(&mut shoal::config::Config) + '_ {
    move |c| {
        let name: RegistryName = "hf.co".parse().unwrap();
        c.registries.insert(
            name,
            RegistryEntry {
                url: Some(hf.url().parse().unwrap()),
            },
        );
    }
}

fn size(m: &Model) -> u64 {
    m.layers.iter().map(|l| l.len() as u64).sum::<u64>() + m.config.len() as u64
}

/// The CDN sent the model once: its bytes plus the one byte of each blob's location probe.
fn sent_once(up: &FakeUpstream, m: &Model) {
    let sent = up.counts.cdn_bytes.load(SeqCst);
    let probes = m.layers.len() as u64 + 1;
    assert!(
        (size(m)..=size(m) + probes).contains(&sent),
        "the CDN sent {sent} bytes for a model of {}",
        size(m)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_mode_routes_by_path_then_ns_then_default() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let t = two_registries().await;
        let shoal = Shoal::start_with(&t.library.url(), with_hf(&t.hf)).await;
        let base = shoal.url();

        // The default registry: a name without a host.
        let p = ollama_pull(&base, "library/granite-code", "8b", PullOptions::default())
            .await
            .expect("library pull");
        assert_eq!(p.manifest, t.granite.manifest);
        // hf.co by a host-prefixed path, the way Docker names it.
        let p = ollama_pull(
            &base,
            "hf.co/bartowski/Llama-3.2-1B-GGUF",
            "Q4_K_M",
            PullOptions::default(),
        )
        .await
        .expect("hf.co pull");
        assert_eq!(p.manifest, t.gguf.manifest);
        for (b, want) in p.blobs.iter().zip(t.gguf.layers.iter()) {
            assert!(b.data == *want, "blob {} whole and right", b.digest);
        }
        shoal.settle().await;
        // Each registry was asked only for its own; each blob crossed once.
        assert_eq!(t.library.counts.manifest_gets.load(SeqCst), 1);
        assert_eq!(t.hf.counts.manifest_gets.load(SeqCst), 1);
        sent_once(&t.library, &t.granite);
        sent_once(&t.hf, &t.gguf);

        // containerd's ?ns= names the same repository: served from the cache.
        let r = get(
            &format!("{base}/v2/bartowski/Llama-3.2-1B-GGUF/manifests/Q4_K_M?ns=hf.co"),
            &[UA, ("accept", OLLAMA_ACCEPT)],
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(r.body == t.gguf.manifest);
        let layer = t.gguf.layer_digest(0);
        let r = get(
            &format!("{base}/v2/bartowski/Llama-3.2-1B-GGUF/blobs/{layer}?ns=hf.co"),
            &[],
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(r.body == t.gguf.layers[0]);
        assert_eq!(
            t.hf.counts.manifest_gets.load(SeqCst),
            1,
            "tag fresh: cached"
        );
        sent_once(&t.hf, &t.gguf);

        // The tag is filed under hf.co, and the models list names it so.
        let models = get(&format!("{base}/_shoal/v1/models"), &[]).await.json();
        let names: Vec<&str> = models["models"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["name"].as_str())
            .collect();
        assert!(
            names.contains(&"hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M"),
            "{models}"
        );
        assert!(names.contains(&"granite-code:8b"), "{models}");
        let stats = shoal.stats().await;
        assert_eq!(
            stats["registries"]["hf.co"]["upstream_bytes"],
            size(&t.gguf),
            "{stats}"
        );

        // Hosts that are not configured are refused, and nothing is fetched anywhere.
        let before = (
            t.library.counts.manifest_gets.load(SeqCst),
            t.hf.counts.manifest_gets.load(SeqCst),
        );
        for path in [
            "/v2/evil.example/x/y/manifests/latest".to_owned(),
            "/v2/x/y/manifests/latest?ns=evil.example".to_owned(),
            format!("/v2/evil.example/x/blobs/{layer}"),
            format!("/v2/x/blobs/{layer}?ns=evil.example"),
        ] {
            let r = get(&format!("{base}{path}"), &[UA]).await;
            assert_eq!(r.status, 404, "{path}");
            assert_eq!(r.oci_code(), "NAME_UNKNOWN", "{path}");
            let body = String::from_utf8_lossy(&r.body).to_string();
            assert!(body.contains("evil.example"), "{path}: {body}");
        }
        assert_eq!(
            (
                t.library.counts.manifest_gets.load(SeqCst),
                t.hf.counts.manifest_gets.load(SeqCst),
            ),
            before
        );
    })
    .await
    .expect("test timed out");
}

async fn ca_file(shoal: &Shoal, dir: &std::path::Path) -> std::path::PathBuf {
    let r = get(&format!("{}/_shoal/v1/ca.pem", shoal.url()), &[]).await;
    assert_eq!(r.status, 200);
    let path = dir.join("shoal-ca.pem");
    std::fs::write(&path, &r.body).unwrap();
    path
}

/// `ollama pull hf.co/...` and `ollama pull granite-code:8b` through one shoal as
/// HTTPS_PROXY (both ollama clients); a second box peered to it gets the hf.co model
/// from it, so hf.co sends it once for the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_proxy_pulls_hf_co_and_the_library_through_one_box() {
    let Some(bin) = gopull() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let t = two_registries().await;
        let a = Shoal::start_with(&t.library.url(), with_hf(&t.hf)).await;
        let b = Shoal::start_with(&t.library.url(), |c| {
            with_hf(&t.hf)(c);
            c.peers = vec![a.peer_url()];
        })
        .await;
        let tmp = tempfile::tempdir().unwrap();
        for (i, (shoal, client)) in [(&a, "legacy"), (&b, "v040")].into_iter().enumerate() {
            let ca = ca_file(shoal, tmp.path()).await;
            let proxy = shoal.url();
            let env = [
                ("HTTPS_PROXY", proxy.as_str()),
                ("SSL_CERT_FILE", ca.to_str().unwrap()),
            ];
            for name in [
                "hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M",
                "granite-code:8b",
            ] {
                let models = tempfile::tempdir().unwrap();
                let o =
                    run_gopull_with(&bin, models.path(), name, &["-client", client], &env).await;
                o.expect_ok(&format!("box {i}: {name} with the {client} client"));
                let total = if name.starts_with("hf.co") {
                    size(&t.gguf)
                } else {
                    size(&t.granite)
                };
                assert_eq!(o.json["bytes"], total, "{name}");
            }
            shoal.settle().await;
        }
        // Each registry sent its model once for the two boxes.
        sent_once(&t.hf, &t.gguf);
        sent_once(&t.library, &t.granite);
        let stats = a.stats().await;
        assert_eq!(
            stats["registries"]["hf.co"]["upstream_bytes"],
            size(&t.gguf),
            "{stats}"
        );
    })
    .await
    .expect("test timed out");
}

/// `skopeo inspect` lists tags: passed through with paging, kept briefly, and served when
/// upstream is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_lists_pass_through_and_survive_upstream_down() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let t = two_registries().await;
        for tag in ["a", "b", "c"] {
            t.hf.add_manifest("o/app", tag, &b"{}"[..]);
        }
        let shoal = Shoal::start_with(&t.library.url(), with_hf(&t.hf)).await;
        let base = shoal.url();
        let list = |path: &str| {
            let url = format!("{base}{path}");
            async move { get(&url, &[]).await }
        };
        let r = list("/v2/hf.co/o/app/tags/list").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["tags"], serde_json::json!(["a", "b", "c"]));
        // A page, and the Link to the next one on the path the client used.
        let r = list("/v2/hf.co/o/app/tags/list?n=2").await;
        assert_eq!(r.json()["tags"], serde_json::json!(["a", "b"]));
        let link = r.header("link").unwrap_or_default().to_owned();
        assert_eq!(link, "</v2/hf.co/o/app/tags/list?n=2&last=b>; rel=\"next\"");
        let r = list("/v2/hf.co/o/app/tags/list?n=2&last=b").await;
        assert_eq!(r.json()["tags"], serde_json::json!(["c"]));
        assert_eq!(t.hf.counts.tag_lists.load(SeqCst), 3);
        // Fresh for a while: no second request upstream, and ?ns= is the same list.
        let r = list("/v2/o/app/tags/list?ns=hf.co").await;
        assert_eq!(r.json()["tags"], serde_json::json!(["a", "b", "c"]));
        assert_eq!(t.hf.counts.tag_lists.load(SeqCst), 3);
        // Bad input is refused before anything is asked; unknown repositories are 404.
        let r = list("/v2/hf.co/o/app/tags/list?n=many").await;
        assert_eq!(
            (r.status, r.oci_code().as_str()),
            (400, "PAGINATION_NUMBER_INVALID")
        );
        let r = list("/v2/hf.co/o/nothing/tags/list").await;
        assert_eq!((r.status, r.oci_code().as_str()), (404, "NAME_UNKNOWN"));
        assert_eq!(t.hf.counts.tag_lists.load(SeqCst), 4);
        drop(shoal);

        // Upstream down: a kept list is served however old (tag_ttl 0 here makes every
        // request revalidate).
        let shoal = Shoal::start_with(&t.library.url(), |c| {
            with_hf(&t.hf)(c);
            c.manifests.tag_ttl = std::time::Duration::from_millis(1);
        })
        .await;
        let url = format!("{}/v2/hf.co/o/app/tags/list", shoal.url());
        assert_eq!(get(&url, &[]).await.status, 200);
        // (503 to everything: set_down would leave the pooled connection working.)
        t.hf.faults.lock().unwrap().registry_503 = true;
        for _ in 0..20 {
            let r = get(&url, &[]).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.json()["tags"], serde_json::json!(["a", "b", "c"]));
        }
        let r = get(&format!("{}/v2/hf.co/o/other/tags/list", shoal.url()), &[]).await;
        assert_eq!(r.status, 502, "nothing kept, upstream down");
    })
    .await
    .expect("test timed out");
}
