//! Bad input gets a clear 4xx with an OCI error body (none on ranged requests), never a
//! panic, never a file outside the data dir, never a 401.

mod support;

use http::Method;
use support::*;

const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_paths_names_and_digests() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let shoal = Shoal::start(&up.url()).await;
        let base = shoal.url();
        let cases: &[(&str, u16, &str)] = &[
            ("/v2/../../etc/passwd/manifests/latest", 400, "NAME_INVALID"),
            ("/v2/a/%2e%2e/b/manifests/latest", 400, "NAME_INVALID"),
            ("/v2/a/%2E%2E/blobs/sha256:x", 400, "NAME_INVALID"),
            ("/v2/..%2f..%2fetc/blobs/sha256:x", 400, "NAME_INVALID"),
            ("/v2/a/manifests/..", 400, "TAG_INVALID"),
            ("/v2/a/manifests/sha256:abc", 400, "DIGEST_INVALID"),
            ("/v2/a/blobs/sha256:abc", 400, "DIGEST_INVALID"),
            ("/v2/a/blobs/sha256:..", 400, "DIGEST_INVALID"),
            ("/v2/a/blobs/sha512:abcd", 400, "DIGEST_INVALID"),
            (
                "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e",
                400,
                "DIGEST_INVALID",
            ),
            ("/v2/.hidden/manifests/latest", 400, "NAME_INVALID"),
            ("/v2/a//b/manifests/latest", 400, "NAME_INVALID"),
            ("/v2/a/blobs/uploads/", 405, "UNSUPPORTED"),
            ("/v2/_catalog", 405, "UNSUPPORTED"),
            ("/v2/a/tags/list?n=-1", 400, "PAGINATION_NUMBER_INVALID"),
            ("/v2/a/tags/list?last=..", 400, "PAGINATION_NUMBER_INVALID"),
            ("/v2/evil.example/a/manifests/latest", 404, "NAME_UNKNOWN"),
            (
                "/v2/a/manifests/latest?ns=evil.example",
                404,
                "NAME_UNKNOWN",
            ),
            ("/v2/a", 404, "UNSUPPORTED"),
            ("/etc/passwd", 404, "UNSUPPORTED"),
            ("/_shoal/v1/nope", 404, "UNSUPPORTED"),
        ];
        for (path, status, code) in cases {
            let r = get(&format!("{base}{path}"), &[]).await;
            assert_eq!(r.status, *status, "{path}");
            assert_eq!(
                r.oci_code(),
                *code,
                "{path}: {}",
                String::from_utf8_lossy(&r.body)
            );
            assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
            let msg = r.json()["errors"][0]["message"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            assert!(!msg.is_empty(), "{path}: error messages say what was wrong");
        }
        // Nothing reached upstream for any of those.
        assert_eq!(
            up.counts
                .manifest_gets
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        // Still healthy afterwards.
        assert_eq!(
            get(&format!("{base}/_shoal/v1/health"), &[]).await.status,
            200
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_other_than_get_and_head_are_refused() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let shoal = Shoal::start(&up.url()).await;
        let url = format!("{}/v2/a/blobs/sha256:{HEX}", shoal.url());
        for m in [Method::PUT, Method::POST, Method::DELETE, Method::PATCH] {
            let r = request(m.clone(), &url, &[]).await;
            assert_eq!(r.status, 405, "{m}");
            assert_eq!(r.oci_code(), "UNSUPPORTED");
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_malformed_and_unsatisfiable() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(1000, 5);
        let digest = up.add_blob(data.clone());
        let shoal = Shoal::start(&up.url()).await;
        let url = format!("{}/v2/a/blobs/{digest}", shoal.url());

        for bad in [
            "bytes=5-1",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "0-5",
            "bytes=+1-2",
        ] {
            let r = get(&url, &[("range", bad)]).await;
            assert_eq!(r.status, 400, "{bad}");
            // A ranged request never gets an error body: ollama would store it as data.
            assert!(r.body.is_empty(), "{bad}: body {:?}", r.body);
        }
        for unsat in [
            "bytes=1000-",
            "bytes=1000-2000",
            "bytes=5000-6000",
            "bytes=-0",
        ] {
            let r = get(&url, &[("range", unsat)]).await;
            assert_eq!(r.status, 416, "{unsat}");
            assert_eq!(r.header("content-range"), Some("bytes */1000"), "{unsat}");
            assert!(r.body.is_empty());
        }
        // Satisfiable ranges are exact, cold and warm.
        for _ in 0..2 {
            for (h, a, b) in [
                ("bytes=0-0", 0, 1),
                ("bytes=0-999", 0, 1000),
                ("bytes=999-", 999, 1000),
                ("bytes=-10", 990, 1000),
                ("bytes=10-19", 10, 20),
                ("bytes=900-5000", 900, 1000),
            ] {
                let r = get(&url, &[("range", h)]).await;
                assert_eq!(r.status, 206, "{h}");
                assert_eq!(&r.body[..], &data[a..b], "{h}");
                assert_eq!(
                    r.header("content-range").unwrap(),
                    format!("bytes {a}-{}/1000", b - 1),
                    "{h}"
                );
                assert_eq!(r.header("content-length").unwrap(), (b - a).to_string());
            }
        }
        // Multi-range and other units are ignored: the whole blob, 200.
        for h in ["bytes=0-1,5-6", "items=0-5"] {
            let r = get(&url, &[("range", h)]).await;
            assert_eq!(r.status, 200, "{h}");
            assert_eq!(r.body, data);
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_things_are_404_and_never_401() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let shoal = Shoal::start(&up.url()).await;
        let base = shoal.url();

        let r = get(&format!("{base}/v2/a/blobs/sha256:{HEX}"), &[]).await;
        assert_eq!((r.status, r.oci_code().as_str()), (404, "BLOB_UNKNOWN"));
        let msg = r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            msg.contains("not known upstream") && !msg.contains("127.0.0."),
            "{msg}"
        );
        let stats = shoal.stats().await;
        assert_eq!(stats["fills_started"], 0, "an unknown blob starts no fill");
        let r = head(&format!("{base}/v2/a/blobs/sha256:{HEX}"), &[]).await;
        assert_eq!(r.status, 404);
        assert!(r.body.is_empty());
        let r = get(
            &format!("{base}/v2/a/blobs/sha256:{HEX}"),
            &[("range", "bytes=0-9")],
        )
        .await;
        assert_eq!(r.status, 404);
        assert!(r.body.is_empty(), "no error body on a ranged GET");
        let r = get(
            &format!("{base}/v2/library/none/manifests/latest"),
            &[("user-agent", OLLAMA_UA)],
        )
        .await;
        assert_eq!(r.status, 404, "upstream's 404 passes through");

        // registry.ollama.ai gates manifests on the User-Agent: its 412 passes through.
        up.add_manifest("library/m", "1", r#"{"schemaVersion":2}"#);
        let r = get(
            &format!("{base}/v2/library/m/manifests/1"),
            &[("user-agent", "curl/8")],
        )
        .await;
        assert_eq!(r.status, 412);
        assert!(String::from_utf8_lossy(&r.body).contains("newer version"));
        // ... and with ollama's User-Agent the same manifest is served.
        let r = get(
            &format!("{base}/v2/library/m/manifests/1"),
            &[("user-agent", OLLAMA_UA)],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], br#"{"schemaVersion":2}"#);

        // The API root answers like a registry (OCI clients probe it).
        let r = get(&format!("{base}/v2/"), &[]).await;
        assert_eq!(r.status, 200);
    })
    .await
    .expect("test timed out");
}

/// Sends `head` (a request head, raw) and returns the status of the answer, or 0 when the
/// connection closed without one.
async fn raw_status(addr: std::net::SocketAddr, head: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before it has read everything.
    let _ = s.write_all(head).await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_bodies_are_refused() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let shoal = Shoal::start(&up.url()).await;
        let base = shoal.url();
        let health = "GET /_shoal/v1/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n";

        // Within the bounds: answered.
        let ok = format!("{health}\r\n");
        assert_eq!(raw_status(shoal.addr(), ok.as_bytes()).await, 200);
        // Too many header fields, or one too long: 431, nothing parsed past the bound.
        let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
        let req = format!("{health}{many}\r\n");
        assert_eq!(raw_status(shoal.addr(), req.as_bytes()).await, 431);
        let long = format!("{health}x-long: {}\r\n\r\n", "a".repeat(1 << 20));
        assert_eq!(raw_status(shoal.addr(), long.as_bytes()).await, 431);

        // News past its bound, or from a node id shoal never makes: 400, nothing learnt.
        let news = format!("{base}/_shoal/v1/news");
        let huge = format!(
            r#"{{"node_id":"{}","http_port":1,"gone":[]}}"#,
            "a".repeat(70 << 10)
        );
        let bad_id = r#"{"node_id":"../x y","http_port":1}"#;
        for body in [huge.as_str(), bad_id] {
            let r = support::request_with_body(Method::POST, &news, body).await;
            assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
            assert_eq!(r.oci_code(), "UNSUPPORTED");
        }
        let peers = get(&format!("{base}/_shoal/v1/peers"), &[]).await;
        let learnt = peers.json()["peers"].as_array().map(Vec::len);
        assert_eq!(learnt, Some(0), "no peer learnt");

        assert_eq!(raw_status(shoal.addr(), ok.as_bytes()).await, 200);
    })
    .await
    .expect("test timed out");
}
