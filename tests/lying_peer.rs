//! A peer that lies: it says it is fetching a blob from upstream for the LAN, and sends
//! garbage of the right length when asked for it. Nothing bad is ever cached or served as
//! complete, the liar is not asked for that blob again, and the next pull gets the real
//! blob from upstream.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;

const MIB: usize = 1 << 20;

/// A fake shoal node on 127.0.0.1 that claims to fetch `digest` and serves garbage.
async fn liar(digest: String, size: usize, asked: Arc<AtomicUsize>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let (digest, asked) = (digest.clone(), asked.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (digest, asked) = (digest.clone(), asked.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        let json = |v: serde_json::Value| {
                            Response::new(Full::new(Bytes::from(v.to_string())))
                        };
                        let resp = if path == "/_shoal/v1/catalog" {
                            json(serde_json::json!({
                                "node_id": "liar-node", "bt_addr": "127.0.0.1:9", "blobs": []
                            }))
                        } else if path == format!("/_shoal/v1/blobs/{digest}") {
                            json(serde_json::json!({
                                "node_id": "liar-node", "state": "filling",
                                "size": size, "upstream": true
                            }))
                        } else if path.ends_with(&format!("/blobs/{digest}")) {
                            asked.fetch_add(1, SeqCst);
                            let range = req
                                .headers()
                                .get("range")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.strip_prefix("bytes="))
                                .and_then(|v| v.split_once('-'))
                                .and_then(|(a, b)| {
                                    Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
                                });
                            match range {
                                Some((a, b)) if a <= b && b < size => Response::builder()
                                    .status(StatusCode::PARTIAL_CONTENT)
                                    .header("content-range", format!("bytes {a}-{b}/{size}"))
                                    .body(Full::new(Bytes::from(vec![0x5a; b - a + 1])))
                                    .unwrap(),
                                _ => Response::builder()
                                    .status(StatusCode::BAD_REQUEST)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            }
                        } else {
                            Response::builder()
                                .status(StatusCode::NO_CONTENT)
                                .body(Full::new(Bytes::new()))
                                .unwrap()
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_lying_about_a_blob_is_caught_and_not_asked_again() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(3 * MIB + 11, 111);
        let digest = up.add_blob(data.clone());
        let asked = Arc::new(AtomicUsize::new(0));
        let liar_url = liar(digest.clone(), data.len(), asked.clone()).await;
        let shoal = Shoal::start_with(&up.url(), |c| {
            c.peers = vec![liar_url.parse().unwrap()];
        })
        .await;
        let url = format!("{}/v2/library/x/blobs/{digest}", shoal.url());

        // The first pull is relayed from the liar: its bytes fail the digest, so the
        // client's whole-blob GET ends short (never complete with wrong bytes).
        let first = try_request(http::Method::GET, &url, &[]).await;
        assert!(
            !matches!(&first, Ok(r) if r.status == 200 && r.body.len() == data.len()),
            "a body with the liar's bytes must not complete"
        );
        assert!(asked.load(SeqCst) > 0, "the liar was asked");
        assert!(
            eventually(Duration::from_secs(10), async || shoal.stats().await
                ["fills_failed"]
                == 1)
            .await
        );
        assert_eq!(shoal.stats().await["blobs"], 0, "nothing bad is cached");

        // The next pull does not go to the liar: the real blob, from upstream.
        let before = asked.load(SeqCst);
        let r = get(&url, &[]).await;
        assert_eq!(r.status, 200);
        assert!(r.body == data);
        assert_eq!(asked.load(SeqCst), before, "the liar is not asked again");
        assert!(
            eventually(Duration::from_secs(10), async || shoal.stats().await
                ["blobs"]
                == 1)
            .await
        );
    })
    .await
    .expect("test timed out");
}
