//! Clients' own credentials: forwarded upstream, and what they fetch stays private. A
//! private blob is served to another client only after upstream serves it to that client
//! (its credentials, or none); private manifests never answer anonymous requests; peers
//! neither hear of private blobs nor get them.

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use http::Method;
use support::*;

/// `alice:secret`, as curl and containerd send it.
const ALICE: &str = "Basic YWxpY2U6c2VjcmV0";
/// `alice:wrong`.
const WRONG: &str = "Basic YWxpY2U6d3Jvbmc=";

fn private_upstream(up: &FakeUpstream) {
    up.faults.lock().unwrap().private = Some(("private/".into(), ALICE.into()));
}

/// Bytes of blob a probe (`Range: bytes=0-0`) takes from the CDN, with slack for a few:
/// less than this is "no blob bytes".
const PROBES: u64 = 16;

/// A request as ollama sends it (the fake registry gates manifests on the User-Agent),
/// with `auth` as its `Authorization`.
async fn status(method: Method, url: &str, auth: Option<&str>) -> Resp {
    let mut headers = vec![("user-agent", "ollama/0.5.7")];
    headers.extend(auth.map(|a| ("authorization", a)));
    request(method, url, &headers).await
}

async fn catalog_digests(node: &Shoal) -> Vec<String> {
    let cat = get(&format!("{}/_shoal/v1/catalog", node.url()), &[])
        .await
        .json();
    cat["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_content_is_served_only_to_whom_upstream_serves_it() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        private_upstream(&up);
        let layer = blob_bytes(3 << 20, 91);
        let m = Model::new(vec![layer.clone()]);
        up.add_model("private/app", "1", &m);
        let digest = format!("sha256:{}", sha256_hex(&layer));
        let manifest_digest = format!("sha256:{}", sha256_hex(&m.manifest));
        let shoal = Shoal::start(&up.url()).await;
        let base = shoal.url();
        let manifest = format!("{base}/v2/private/app/manifests/1");
        let blob = format!("{base}/v2/private/app/blobs/{digest}");

        // Anonymous: upstream's challenge comes back, for the client to answer.
        let r = status(Method::GET, &manifest, None).await;
        assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Basic realm="fake-private""#)
        );
        let r = status(Method::GET, &blob, None).await;
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Basic realm="fake-private""#)
        );
        assert!(r.body.len() < 1000, "an error, not the blob");

        // With credentials: forwarded upstream, and the pull works.
        let r = status(Method::GET, &manifest, Some(ALICE)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, m.manifest);
        let r = status(Method::GET, &blob, Some(ALICE)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, layer);
        shoal.settle().await;
        let cdn = up.counts.cdn_bytes.load(SeqCst);
        assert!(
            (layer.len() as u64..layer.len() as u64 + PROBES).contains(&cdn),
            "fetched once: {cdn}"
        );

        // Cached now, but still not for anyone else: not anonymous, not wrong credentials,
        // not a HEAD, not the manifest by digest.
        for auth in [None, Some(WRONG)] {
            let r = status(Method::GET, &blob, auth).await;
            assert_eq!(r.status, 401, "{auth:?}");
            assert!(r.body.len() < 1000, "{auth:?} got the blob");
            assert_eq!(status(Method::HEAD, &blob, auth).await.status, 401);
            let by_digest = format!("{base}/v2/private/app/manifests/{manifest_digest}");
            let r = status(Method::GET, &by_digest, auth).await;
            assert_eq!(r.status, 401, "{auth:?}");
            assert_ne!(r.body, m.manifest);
            let r = status(Method::GET, &manifest, auth).await;
            assert_eq!(r.status, 401, "{auth:?}");
        }
        // Alice again: from the cache, upstream asked only to confirm.
        let r = status(Method::GET, &blob, Some(ALICE)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, layer);
        assert!(
            up.counts.cdn_bytes.load(SeqCst) < cdn + PROBES,
            "no new blob bytes"
        );

        // The operator sees the fill, marked private.
        let fills = get(&format!("{base}/_shoal/v1/torrents"), &[]).await.json();
        let fill = fills["fills"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["digest"] == digest.as_str())
            .cloned()
            .unwrap_or_default();
        assert_eq!(fill["private"], true, "{fills}");

        // Never offered to peers: not in the catalog, no torrent.
        assert!(!catalog_digests(&shoal).await.contains(&digest));
        let torrent = format!("{base}/_shoal/v1/blobs/{digest}/torrent");
        assert_eq!(get(&torrent, &[]).await.status, 404);

        // Private survives a restart.
        let dir = shoal.stop().await;
        let shoal = Shoal::start_in(dir, &up.url(), |_| {}).await;
        let base = shoal.url();
        let blob = format!("{base}/v2/private/app/blobs/{digest}");
        assert_eq!(status(Method::GET, &blob, None).await.status, 401);
        assert!(!catalog_digests(&shoal).await.contains(&digest));

        // The repository goes public upstream: the first anonymous read is confirmed
        // there, and from then on the blob is the LAN's like any other.
        up.faults.lock().unwrap().private = None;
        let r = status(Method::GET, &blob, None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, layer);
        assert!(catalog_digests(&shoal).await.contains(&digest));
        let torrent = format!("{base}/_shoal/v1/blobs/{digest}/torrent");
        assert_eq!(get(&torrent, &[]).await.status, 200);
        assert!(
            up.counts.cdn_bytes.load(SeqCst) < cdn + PROBES,
            "still fetched once"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_never_get_a_private_blob() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        private_upstream(&up);
        let layer = blob_bytes(2 << 20, 92);
        let digest = up.add_blob(layer.clone());
        let a = Shoal::start(&up.url()).await;
        let b = Shoal::start_with(&up.url(), |c| c.peers = vec![a.peer_url()]).await;
        let on = |node: &Shoal| format!("{}/v2/private/app/blobs/{digest}", node.url());

        assert_eq!(status(Method::GET, &on(&a), Some(ALICE)).await.body, layer);
        a.settle().await;
        let denied_before = up.counts.denied.load(SeqCst);

        // B's anonymous client: A does not offer it, so B asks upstream, which refuses.
        let r = status(Method::GET, &on(&b), None).await;
        assert_eq!(r.status, 401);
        assert!(
            up.counts.denied.load(SeqCst) > denied_before,
            "upstream decided"
        );
        // A peer asking A directly, as a peer would, is anonymous too.
        let r = request(Method::GET, &on(&a), &[(shoal::p2p::lan::PEER_HEADER, "1")]).await;
        assert_eq!(r.status, 401);

        // B's client with credentials gets it, from upstream (A never offers it).
        let before = up.counts.cdn_bytes.load(SeqCst);
        assert_eq!(status(Method::GET, &on(&b), Some(ALICE)).await.body, layer);
        b.settle().await;
        let fetched = up.counts.cdn_bytes.load(SeqCst) - before;
        assert!(
            (layer.len() as u64..layer.len() as u64 + PROBES).contains(&fetched),
            "{fetched}"
        );
        assert!(
            !catalog_digests(&a).await.contains(&digest),
            "A's catalog lists a private blob"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_requests_on_an_intercepted_host_reach_its_registry() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut curl = std::process::Command::new("curl");
        curl.arg("--version");
        if !support::registry::runs(curl, Duration::from_secs(10)).await {
            support::registry::skip_for_missing("token passthrough", &["curl".to_owned()]);
            return;
        }
        let up = FakeUpstream::start().await;
        let shoal = Shoal::start(&up.url()).await;
        let tmp = tempfile::tempdir().unwrap();
        let r = get(&format!("{}/_shoal/v1/ca.pem", shoal.url()), &[]).await;
        let ca = tmp.path().join("ca.pem");
        std::fs::write(&ca, &r.body).unwrap();

        // ollama answering a 401 from registry.ollama.ai, behind HTTPS_PROXY: its signed
        // request reaches the registry with its credentials and query, and the token
        // comes back as the registry sent it.
        let mut curl = std::process::Command::new("curl");
        curl.args(["-sS", "--fail-with-body", "--proxy", &shoal.url(), "--cacert"])
            .arg(&ca)
            .args([
                "-H",
                "Authorization: ssh-ed25519-key:signature",
                "https://registry.ollama.ai/v2/token?service=ollama.com&scope=repository:me/private:pull",
            ]);
        let out = support::registry::run(curl, Duration::from_secs(30)).await.unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{body} {}", String::from_utf8_lossy(&out.stderr));
        let token: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            token["token"],
            "for ssh-ed25519-key:signature service=ollama.com&scope=repository:me/private:pull"
        );
        assert_eq!(up.counts.token_requests.load(SeqCst), 1);

        // On shoal's plain port there is no registry host to pass it to.
        assert_eq!(get(&format!("{}/v2/token", shoal.url()), &[]).await.status, 404);
        assert_eq!(up.counts.token_requests.load(SeqCst), 1);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cdn_refusal_is_upstream_failing_not_a_denial() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let digest = up.add_blob(blob_bytes(1 << 20, 93));
        // Every presigned URL is refused (403 AccessDenied), whoever asks: that is the
        // CDN failing, not upstream judging the client's credentials.
        up.faults.lock().unwrap().min_sig_generation = u64::MAX;
        let shoal = Shoal::start(&up.url()).await;
        let blob = format!("{}/v2/library/x/blobs/{digest}", shoal.url());
        for auth in [None, Some(ALICE)] {
            let r = status(Method::GET, &blob, auth).await;
            assert_eq!(
                r.status,
                502,
                "{auth:?}: {}",
                String::from_utf8_lossy(&r.body)
            );
            assert_eq!(r.header("www-authenticate"), None);
        }
        assert!(up.counts.refused_sigs.load(SeqCst) > 0, "the CDN was asked");
    })
    .await
    .expect("test timed out");
}
