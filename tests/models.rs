//! What a running shoal holds, as an admin asks: `GET /_shoal/v1/models`, `shoal ls` and
//! `shoal status` (the binary, against a running node).

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn models_are_listed_with_what_is_held() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let whole = Model::new(vec![blob_bytes(2 << 20, 61)]);
        let half = Model::new(vec![blob_bytes(1 << 20, 62), blob_bytes(1 << 20, 63)]);
        up.add_model("library/granite-code", "8b", &whole);
        up.add_model("someone/half", "q4", &half);
        let shoal = Shoal::start(&up.url()).await;
        let base = shoal.url();
        ollama_pull(&base, "library/granite-code", "8b", PullOptions::default())
            .await
            .expect("pull");
        // Only the manifest and one layer of the second model.
        let r = get(
            &format!("{base}/v2/someone/half/manifests/q4"),
            &[("user-agent", OLLAMA_UA), ("accept", OLLAMA_ACCEPT)],
        )
        .await;
        assert_eq!(r.status, 200);
        let first = format!("sha256:{}", sha256_hex(&half.layers[0]));
        let r = get(&format!("{base}/v2/someone/half/blobs/{first}"), &[]).await;
        assert_eq!(r.body, half.layers[0]);
        shoal.settle().await;

        let r = get(&format!("{base}/_shoal/v1/models"), &[]).await;
        assert_eq!(r.status, 200);
        let v = r.json();
        let models = v["models"].as_array().unwrap();
        assert_eq!(models.len(), 2, "{v}");
        let size =
            |m: &Model| (m.layers.iter().map(|l| l.len()).sum::<usize>() + m.config.len()) as u64;
        // ollama's names: the library's without "library/".
        assert_eq!(models[0]["name"], "granite-code:8b");
        assert_eq!(models[0]["size"], size(&whole));
        assert_eq!(models[0]["held_bytes"], size(&whole));
        assert_eq!(models[0]["blobs"], 2);
        assert_eq!(models[0]["held_blobs"], 2);
        assert_eq!(models[0]["hits"], 0, "a cold pull is no hit");
        assert_eq!(models[1]["name"], "someone/half:q4");
        assert_eq!(models[1]["size"], size(&half));
        // One layer of two, and the config (the same bytes as the first model's).
        assert_eq!(
            models[1]["held_bytes"],
            (1 << 20) + half.config.len() as u64
        );
        assert_eq!(models[1]["held_blobs"], 2);
        assert_eq!(models[1]["lan"], serde_json::json!([]));

        ollama_pull(&base, "library/granite-code", "8b", PullOptions::default())
            .await
            .expect("second pull");
        let v = get(&format!("{base}/_shoal/v1/models"), &[]).await.json();
        assert!(v["models"][0]["hits"].as_u64().unwrap() >= 1, "{v}");

        // The CLI, as an admin runs it.
        let (code, out, err) = run_cmd(shoal_command().args(["ls", "--server", &base]));
        assert_eq!(code, 0, "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{out}");
        assert!(
            lines[1].starts_with("granite-code:8b") && lines[1].contains("100%"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("someone/half:q4") && lines[2].contains(" 50%"),
            "{out}"
        );
        let (code, out, err) = run_cmd(shoal_command().args(["status", "--server", &base]));
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("models   2 (granite-code:8b, someone/half:q4)"),
            "{out}"
        );
        assert!(out.contains(&format!("mirroring {}", up.url())), "{out}");
        assert!(out.lines().count() <= 24, "one screen: {out}");

        // Clear exits: an unreachable server 1, a bad URL 64.
        let (code, _, err) = run_cmd(shoal_command().args(["ls", "--server", &dead_url()]));
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("cannot reach shoal"), "{err}");
        let (code, _, err) = run_cmd(shoal_command().args(["status", "--server", "ftp://x"]));
        assert_eq!(code, 64, "{err}");
    })
    .await
    .expect("test timed out");
}

/// Pins survive eviction pressure; `rm` frees only what no other model uses; both need the
/// admin token, through the API and the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pinned_models_stay_and_removed_models_free_their_own_blobs() {
    use http::Method;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        const MIB: usize = 1 << 20;
        // Three models of one 8 MiB layer each; the cache holds about two.
        let models: Vec<Model> = (0..3)
            .map(|i| Model::new(vec![blob_bytes(8 * MIB, 70 + i)]))
            .collect();
        for (i, m) in models.iter().enumerate() {
            up.add_model(&format!("library/m{i}"), "1", m);
        }
        let shoal = Shoal::start_with(&up.url(), |c| {
            c.max_cache_size = Some(bytesize::ByteSize::mib(17));
        })
        .await;
        let base = shoal.url();
        let token = std::fs::read_to_string(shoal.dir.path().join("admin.token")).unwrap();
        let bearer = format!("Bearer {}", token.trim());
        let pull = async |i: usize| shoal.pull(&format!("library/m{i}"), "1").await;
        let models_now = async || get(&format!("{base}/_shoal/v1/models"), &[]).await.json();

        pull(0).await;
        // Without the token, or with a wrong one: 401, nothing pinned.
        let pin_url = format!("{base}/_shoal/v1/models/m0:1/pin");
        for auth in [None, Some("Bearer wrong")] {
            let h: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
            assert_eq!(request(Method::PUT, &pin_url, &h).await.status, 401);
        }
        assert_eq!(models_now().await["models"][0]["pinned"], false);
        let (code, out, err) = run_cmd(shoal_command().args([
            "pin",
            "m0:1",
            "--server",
            &base,
            "--data-dir",
            shoal.dir.path().to_str().unwrap(),
        ]));
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("pinned m0:1"), "{out}");
        assert_eq!(models_now().await["models"][0]["pinned"], true);

        // Two more models push the cache over its limit: m0 stays, m1 goes.
        pull(1).await;
        pull(2).await;
        let v = models_now().await;
        let held = |name: &str| {
            v["models"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == name)
                .map(|m| m["held_bytes"].as_u64().unwrap() >= 8 * MIB as u64)
        };
        assert_eq!(held("m0:1"), Some(true), "pinned: {v}");
        assert_eq!(held("m1:1"), Some(false), "least recently used: {v}");
        assert_eq!(held("m2:1"), Some(true), "{v}");

        // A pinned model is not removed; unpinned, it is, and only its own blobs go (the
        // config is shared by every model here).
        let rm = |name: &str| {
            shoal_command()
                .args(["rm", name, "--server", &base, "--token", token.trim()])
                .output()
                .unwrap()
        };
        let o = rm("m0:1");
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("unpin it first"));
        let r = request(
            Method::DELETE,
            &pin_url,
            &[("authorization", bearer.as_str())],
        )
        .await;
        assert_eq!(r.status, 204);
        let before = shoal.stats().await["cache_bytes"].as_u64().unwrap();
        let o = rm("m0:1");
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{out}");
        assert!(
            out.contains("(1 blob)") && out.contains("kept 1 used by other models"),
            "{out}"
        );
        let after = shoal.stats().await["cache_bytes"].as_u64().unwrap();
        assert_eq!(before - after, 8 * MIB as u64);
        let v = models_now().await;
        assert!(
            v["models"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["name"] != "m0:1"),
            "{v}"
        );
        // Gone is gone: 404 with a clear error, exit 1.
        let o = rm("m0:1");
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("not cached here"));
        // And a pull of m2 is still whole.
        pull(2).await;
    })
    .await
    .expect("test timed out");
}

/// `POST /_shoal/v1/models/<name>/prefetch`: with the token it answers 202 at once and the
/// model is fetched, as `shoal prefetch` would, with its state in the models list.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prefetch_asked_through_the_api_fetches_the_model() {
    use http::Method;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = Model::new(vec![blob_bytes(3 << 20, 64)]);
        up.add_model("library/warm", "1", &m);
        let shoal = Shoal::start(&up.url()).await;
        let base = shoal.url();
        let url = format!("{base}/_shoal/v1/models/warm:1/prefetch");
        assert_eq!(request(Method::POST, &url, &[]).await.status, 401);
        let token = std::fs::read_to_string(shoal.dir.path().join("admin.token")).unwrap();
        let bearer = format!("Bearer {}", token.trim());
        let r = request(Method::POST, &url, &[("authorization", &bearer)]).await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let done = eventually(std::time::Duration::from_secs(30), async || {
            let v = get(&format!("{base}/_shoal/v1/models"), &[]).await.json();
            v["prefetches"][0]["state"] == "done"
        })
        .await;
        let v = get(&format!("{base}/_shoal/v1/models"), &[]).await.json();
        assert!(done, "{v}");
        let size = (m.layers[0].len() + m.config.len()) as u64;
        assert_eq!(v["models"][0]["name"], "warm:1", "{v}");
        assert_eq!(v["models"][0]["held_bytes"], size, "{v}");
        assert_eq!(v["prefetches"][0]["bytes"], size, "{v}");
        let r = request(
            Method::POST,
            &format!("{base}/_shoal/v1/models/Not%20a%20name/prefetch"),
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(r.status, 400);
    })
    .await
    .expect("test timed out");
}

/// `admin.token_on_reads`: the admin reads need the token too; health, the dashboard's page
/// and the registry API stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_can_ask_for_the_token() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let shoal = Shoal::start_with(&up.url(), |c| c.admin.token_on_reads = true).await;
        let base = shoal.url();
        let token = std::fs::read_to_string(shoal.dir.path().join("admin.token")).unwrap();
        let bearer = format!("Bearer {}", token.trim());
        for path in [
            "/_shoal/v1/stats",
            "/_shoal/v1/models",
            "/_shoal/v1/peers",
            "/metrics",
        ] {
            let r = get(&format!("{base}{path}"), &[]).await;
            assert_eq!(r.status, 401, "{path}");
            assert_eq!(r.oci_code(), "UNAUTHORIZED", "{path}");
            let r = get(&format!("{base}{path}"), &[("authorization", &bearer)]).await;
            assert_eq!(r.status, 200, "{path}");
        }
        for path in ["/_shoal/v1/health", "/_shoal/", "/v2/"] {
            assert_eq!(
                get(&format!("{base}{path}"), &[]).await.status,
                200,
                "{path}"
            );
        }
        let (code, _, err) = run_cmd(shoal_command().args([
            "status",
            "--server",
            &base,
            "--data-dir",
            "/nonexistent",
        ]));
        assert_eq!(code, 1);
        assert!(err.contains("401"), "{err}");
        let (code, out, err) =
            run_cmd(shoal_command().args(["status", "--server", &base, "--token", token.trim()]));
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("models   0"), "{out}");
    })
    .await
    .expect("test timed out");
}

/// `rm` of a model whose blob a client is reading: that blob is kept (counted as busy),
/// the reader gets every byte, and the blob goes once nothing reads it (the next rm of a
/// model naming it, or eviction).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_a_model_never_breaks_a_reader() {
    use std::io::{Read, Write};
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = Model::new(vec![blob_bytes(16 << 20, 66)]);
        up.add_model("library/busy", "1", &m);
        let shoal = Shoal::start(&up.url()).await;
        let base = shoal.url();
        shoal.pull("library/busy", "1").await;
        let layer = format!("sha256:{}", sha256_hex(&m.layers[0]));

        // A slow client has the layer's body open.
        let mut slow = std::net::TcpStream::connect(shoal.addr()).unwrap();
        write!(
            slow,
            "GET /v2/library/busy/blobs/{layer} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut first = [0u8; 4096];
        slow.read_exact(&mut first).unwrap();

        let token = std::fs::read_to_string(shoal.dir.path().join("admin.token")).unwrap();
        let r = request(
            http::Method::DELETE,
            &format!("{base}/_shoal/v1/models/busy:1"),
            &[("authorization", &format!("Bearer {}", token.trim()))],
        )
        .await;
        assert_eq!(r.status, 200);
        let removed = r.json();
        assert_eq!(removed["busy"], 1, "{removed}");
        assert_eq!(removed["blobs"], 1, "the config went: {removed}");

        // The reader goes on to the end with the right bytes.
        let rest = tokio::task::spawn_blocking(move || {
            let mut rest = Vec::new();
            slow.read_to_end(&mut rest).map(|_| rest)
        })
        .await
        .unwrap()
        .expect("the body is not cut");
        let mut all = first.to_vec();
        all.extend_from_slice(&rest);
        let body_at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(all[body_at..] == m.layers[0][..], "every byte, right");
        let v = get(&format!("{base}/_shoal/v1/models"), &[]).await.json();
        assert_eq!(v["models"], serde_json::json!([]), "the model is gone: {v}");
    })
    .await
    .expect("test timed out");
}

/// `shoal ls --lan`: the models this node holds with the peers that hold them too, and
/// the models only its peers hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ls_lan_lists_what_the_peers_hold() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let both = Model::new(vec![blob_bytes(1 << 20, 67)]);
        let theirs = Model::new(vec![blob_bytes(1 << 20, 68)]);
        up.add_model("library/both", "1", &both);
        up.add_model("library/theirs", "1", &theirs);
        let a = Shoal::start(&up.url()).await;
        let b = Shoal::start_with(&up.url(), |c| c.peers = vec![a.peer_url()]).await;
        for (node, repo) in [
            (&a, "library/both"),
            (&a, "library/theirs"),
            (&b, "library/both"),
        ] {
            ollama_pull(&node.url(), repo, "1", PullOptions::default())
                .await
                .expect("pull");
        }
        let settled = eventually(std::time::Duration::from_secs(10), async || {
            let p = get(&format!("{}/_shoal/v1/peers", b.url()), &[])
                .await
                .json();
            let (sa, sb) = (a.stats().await, b.stats().await);
            p["peers"][0]["failures"] == 0 && sa["fills_running"] == 0 && sb["fills_running"] == 0
        })
        .await;
        assert!(settled);

        let (code, out, err) = run_cmd(shoal_command().args(["ls", "--lan", "--server", &b.url()]));
        assert_eq!(code, 0, "{err}");
        let line = |name: &str| out.lines().find(|l| l.starts_with(name)).map(str::to_owned);
        let both_line = line("both:1").unwrap_or_default();
        assert!(
            both_line.contains("100%") && both_line.contains(&a.url()),
            "{out}"
        );
        let theirs_line = line("theirs:1").unwrap_or_default();
        assert!(
            theirs_line.contains(" 0%") && theirs_line.ends_with(&a.url()),
            "{out}"
        );
        // Without --lan, only what this node knows of.
        let (_, out, _) = run_cmd(shoal_command().args(["ls", "--server", &b.url()]));
        assert!(!out.contains("theirs:1"), "{out}");
    })
    .await
    .expect("test timed out");
}
