//! Table tests of model names, accepted and refused.

use super::*;

fn parts(s: &str) -> (Option<String>, String, String) {
    let m = ModelRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    (m.host, m.repo.to_string(), m.reference.to_string())
}

#[test]
fn accepted_names() {
    let d = format!("sha256:{}", "a".repeat(64));
    let cases: Vec<(String, Option<&str>, &str, String)> = vec![
        (
            "granite-code".into(),
            None,
            "library/granite-code",
            "latest".into(),
        ),
        (
            "granite-code:8b".into(),
            None,
            "library/granite-code",
            "8b".into(),
        ),
        ("jmorgan/tiny:1b".into(), None, "jmorgan/tiny", "1b".into()),
        (
            "registry.ollama.ai/library/granite-code:8b".into(),
            Some("registry.ollama.ai"),
            "library/granite-code",
            "8b".into(),
        ),
        (
            "https://registry.ollama.ai/library/granite-code".into(),
            Some("registry.ollama.ai"),
            "library/granite-code",
            "latest".into(),
        ),
        (
            "Registry.Ollama.AI/library/x".into(),
            Some("registry.ollama.ai"),
            "library/x",
            "latest".into(),
        ),
        (
            "shoal.lan:9200/library/granite-code:8b".into(),
            Some("shoal.lan:9200"),
            "library/granite-code",
            "8b".into(),
        ),
        (
            "hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M".into(),
            Some("hf.co"),
            "bartowski/Llama-3.2-1B-GGUF",
            "Q4_K_M".into(),
        ),
        (
            "ghcr.io/owner/app/sub:v1".into(),
            Some("ghcr.io"),
            "owner/app/sub",
            "v1".into(),
        ),
        ("a/b/c".into(), None, "a/b/c", "latest".into()),
        (
            "registry.k8s.io/pause:3.9".into(),
            Some("registry.k8s.io"),
            "pause",
            "3.9".into(),
        ),
        (
            "docker.io/alpine".into(),
            Some("docker.io"),
            "library/alpine",
            "latest".into(),
        ),
        (
            "localhost:5000/app".into(),
            Some("localhost:5000"),
            "app",
            "latest".into(),
        ),
        (
            "[::1]:5000/ns/app:2".into(),
            Some("[::1]:5000"),
            "ns/app",
            "2".into(),
        ),
        (format!("alpine@{d}"), None, "library/alpine", d.clone()),
        (format!("alpine:3@{d}"), None, "library/alpine", d.clone()),
    ];
    for (input, host, repo, reference) in cases {
        assert_eq!(
            parts(&input),
            (host.map(str::to_owned), repo.to_owned(), reference),
            "{input}"
        );
    }
}

#[test]
fn refused_names_name_the_bad_part() {
    let cases = [
        ("", "empty"),
        ("https://", "empty"),
        ("gran ite", "model \"gran ite\""),
        ("bad ns/model", "namespace \"bad ns\""),
        ("ns/-model", "model \"-model\""),
        ("ns/model:bad/tag", "repository part \"model:bad\""),
        ("model:sha256:abc", "tag \"sha256:abc\""),
        ("model:", "tag \"\""),
        ("model:-x", "tag \"-x\""),
        ("a/../b", "repository part \"..\""),
        ("bad_host.io:x/ns/m", "host \"bad_host.io:x\""),
        ("model@sha256:abc", "digest"),
        ("model@md5:abc", "digest"),
        ("ns//model", "repository part \"\""),
        ("/model", "namespace \"\""),
    ];
    for (input, needle) in cases {
        let err = ModelRef::parse(input).expect_err(input).to_string();
        assert!(err.contains(needle), "{input:?}: {err}");
    }
    // Each part is fine; together they are too long.
    let long = "x".repeat(250);
    let err = ModelRef::parse(&long).unwrap_err().to_string();
    assert!(err.contains("repository \"library/x"), "{err}");
}

#[test]
fn displays_fully() {
    let m = ModelRef::parse("granite-code:8b").unwrap();
    assert_eq!(m.to_string(), "library/granite-code:8b");
    let m = ModelRef::parse("registry.ollama.ai/library/x").unwrap();
    assert_eq!(m.to_string(), "registry.ollama.ai/library/x:latest");
}
