//! What a running shoal holds, as an admin asks: `GET /_shoal/v1/models`, `shoal ls` and
//! `shoal status` (the binary, against a running node).

mod support;

use std::process::Command;

use support::*;

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

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
        let idle = eventually(std::time::Duration::from_secs(10), async || {
            shoal.stats().await["fills_running"] == 0
        })
        .await;
        assert!(idle);

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
        let (code, out, err) = run(shoal_command().args(["ls", "--server", &base]));
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
        let (code, out, err) = run(shoal_command().args(["status", "--server", &base]));
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("models   2 (granite-code:8b, someone/half:q4)"),
            "{out}"
        );
        assert!(out.contains(&format!("mirroring {}", up.url())), "{out}");
        assert!(out.lines().count() <= 24, "one screen: {out}");

        // Clear exits: an unreachable server 1, a bad URL 64.
        let (code, _, err) = run(shoal_command().args(["ls", "--server", &dead_url()]));
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("cannot reach shoal"), "{err}");
        let (code, _, err) = run(shoal_command().args(["status", "--server", "ftp://x"]));
        assert_eq!(code, 64, "{err}");
    })
    .await
    .expect("test timed out");
}
