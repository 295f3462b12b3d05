use super::*;
use std::io::Write;

fn args(list: &[&str]) -> ServeArgs {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        a: ServeArgs,
    }
    let mut v = vec!["shoal"];
    v.extend_from_slice(list);
    T::try_parse_from(v).expect("flags parse").a
}

fn env(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strs<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(T::to_string).collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn defaults_serve() {
    let c = Config::load(&args(&[]), env(&[])).unwrap();
    assert_eq!(
        strs(&c.proxy.intercept),
        ["registry.ollama.ai", "*.r2.cloudflarestorage.com"]
    );
    assert_eq!(
        strs(&c.proxy.allow),
        [
            "ollama.com",
            "www.ollama.com",
            "*.hf.co",
            "*.huggingface.co"
        ]
    );
    let registries: Vec<String> = c
        .registry_list()
        .iter()
        .map(|r| format!("{}={}", r.name, r.url))
        .collect();
    assert_eq!(
        registries,
        [
            "hf.co=https://hf.co",
            "huggingface.co=https://huggingface.co"
        ]
    );
    assert_eq!(c.listen.to_string(), "0.0.0.0:9200");
    assert_eq!(c.upstream.to_string(), "https://registry.ollama.ai");
    assert_eq!(c.fetch.connections, 16);
    assert_eq!(c.fetch.stall_timeout, Duration::from_secs(10));
    assert_eq!(c.max_cache_size, None);
    assert_eq!(c.bt_listen.to_string(), "0.0.0.0:6881");
}

#[test]
fn precedence_defaults_file_env_flags() {
    let f = file(
        "listen = \"127.0.0.1:1000\"\nupstream = \"http://file.example\"\n\
         data_dir = \"/from/file\"\nmax_cache_size = \"1GiB\"\n[fetch]\nconnections = 4\n",
    );
    let path = f.path().to_str().unwrap();

    // File over defaults.
    let c = Config::load(&args(&["--config", path]), env(&[])).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:1000");
    assert_eq!(c.upstream.to_string(), "http://file.example");
    assert_eq!(c.fetch.connections, 4);
    assert_eq!(c.max_cache_size, Some(ByteSize::gib(1)));
    assert_eq!(c.manifests.tag_ttl, Duration::from_secs(30));

    // Env over file; SHOAL_CONFIG names the file.
    let e = env(&[
        ("SHOAL_CONFIG", path),
        ("SHOAL_LISTEN", "127.0.0.1:2000"),
        ("SHOAL_FETCH__CONNECTIONS", "8"),
        ("SHOAL_MANIFESTS__TAG_TTL", "1m"),
        ("OTHER_VAR", "ignored"),
    ]);
    let c = Config::load(&args(&[]), e.clone()).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:2000");
    assert_eq!(c.upstream.to_string(), "http://file.example");
    assert_eq!(c.fetch.connections, 8);
    assert_eq!(c.manifests.tag_ttl, Duration::from_secs(60));

    // Flags over env.
    let c = Config::load(
        &args(&[
            "--listen",
            "127.0.0.1:3000",
            "--data-dir",
            "/from/flag",
            "--max-cache-size",
            "2GiB",
        ]),
        e,
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
    assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
    assert_eq!(c.max_cache_size, Some(ByteSize::gib(2)));
    assert_eq!(c.fetch.connections, 8);
}

#[test]
fn registries_from_flags_env_and_file() {
    let list = |c: &Config| -> Vec<String> {
        c.registry_list()
            .iter()
            .map(|r| format!("{}={}", r.name, r.url))
            .collect()
    };
    let f = file(
        "[registries.\"ghcr.io\"]\n[registries.\"quay.io\"]\nurl = \"http://10.0.0.9:5000\"\n",
    );
    let c = Config::load(
        &args(&[
            "--config",
            f.path().to_str().unwrap(),
            "--registry",
            "docker.io",
            "--registry",
            "quay.io=http://10.0.0.7:5000",
        ]),
        env(&[("SHOAL_REGISTRIES", "gcr.io, hf.co=http://127.0.0.1:1")]),
    )
    .unwrap();
    assert_eq!(
        list(&c),
        [
            "docker.io=https://registry-1.docker.io",
            "gcr.io=https://gcr.io",
            "ghcr.io=https://ghcr.io",
            "hf.co=http://127.0.0.1:1",
            "huggingface.co=https://huggingface.co",
            // The flag wins over the file.
            "quay.io=http://10.0.0.7:5000",
        ]
    );
    // What --check-config prints reads back the same.
    assert_eq!(list(&Config::from_toml(&c.to_toml()).unwrap()), list(&c));
    for (flags, vars, want) in [
        (vec!["--registry", "ghcr.io:443"], vec![], "--registry"),
        (vec!["--registry", "https://ghcr.io"], vec![], "--registry"),
        (
            vec![],
            vec![("SHOAL_REGISTRIES", "ghcr.io=ftp://x")],
            "SHOAL_REGISTRIES",
        ),
    ] {
        let err = Config::load(&args(&flags), env(&vars))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want) && err.contains("registry"), "{err}");
    }
    let err = Config::from_toml("[registries.\"ghcr.io\"]\nurl = \"ghcr.io\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a registry URL"), "{err}");
    let err = Config::from_toml("[registries.\"ghcr\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a registry host name"), "{err}");
}

#[test]
fn peers_from_flags_env_and_file() {
    let c = Config::load(
        &args(&[
            "--peer",
            "http://10.0.0.2:9200",
            "--peer",
            "http://10.0.0.3:9200",
        ]),
        env(&[]),
    )
    .unwrap();
    assert_eq!(
        strs(&c.peers),
        ["http://10.0.0.2:9200", "http://10.0.0.3:9200"]
    );
    let c = Config::load(
        &args(&[]),
        env(&[("SHOAL_PEERS", "http://a:1, http://b:2")]),
    )
    .unwrap();
    assert_eq!(strs(&c.peers), ["http://a:1", "http://b:2"]);
    let f = file("peers = [\"http://c:3\"]\n");
    let c = Config::load(&args(&["--config", f.path().to_str().unwrap()]), env(&[])).unwrap();
    assert_eq!(strs(&c.peers), ["http://c:3"]);
    let err = Config::load(&args(&["--peer", "10.0.0.2:9200"]), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--peer") && err.contains("10.0.0.2:9200"),
        "{err}"
    );
    let err = Config::load(&args(&[]), env(&[("SHOAL_P2P__SWARM_KEY", "short")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("swarm_key"), "{err}");
}

#[test]
fn kubernetes_service_variables_are_ignored() {
    let e = env(&[
        ("SHOAL_SERVICE_HOST", "10.0.0.5"),
        ("SHOAL_SERVICE_PORT", "9200"),
        ("SHOAL_PORT", "tcp://10.0.0.5:9200"),
        ("SHOAL_PORT_9200_TCP_ADDR", "10.0.0.5"),
    ]);
    let c = Config::load(&args(&[]), e).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:9200");
    // ... but a near miss is still refused.
    assert!(Config::load(&args(&[]), env(&[("SHOAL_PORTS", "1")])).is_err());
}

#[test]
fn string_values_that_look_numeric_stay_strings() {
    let c = Config::load(&args(&[]), env(&[("SHOAL_DATA_DIR", "123")])).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("123"));
}

#[test]
fn errors_name_the_key_and_source() {
    let f = file("listen = \"127.0.0.1:1\"\nbogus = 1\n");
    let err = Config::load(&args(&["--config", f.path().to_str().unwrap()]), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bogus") && err.contains("config file"),
        "{err}"
    );

    let f = file("[fetch]\nconections = 3\n");
    let err = Config::load(&args(&["--config", f.path().to_str().unwrap()]), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("conections"), "{err}");

    let f = file("listen = [\n");
    let err = Config::load(&args(&["--config", f.path().to_str().unwrap()]), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("config file"), "{err}");

    let err = Config::load(&args(&[]), env(&[("SHOAL_LISTN", "x")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SHOAL_LISTN") && err.contains("listn"),
        "{err}"
    );

    let err = Config::load(&args(&[]), env(&[("SHOAL_FETCH__CONNECTIONS", "many")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("SHOAL_FETCH__CONNECTIONS"), "{err}");

    let err = Config::load(&args(&["--listen", "nowhere"]), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--listen"), "{err}");

    let err = Config::load(&args(&["--bt-listen", "6881"]), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--bt-listen"), "{err}");

    let err = Config::load(&args(&["--max-cache-size", "lots"]), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--max-cache-size"), "{err}");

    let err = Config::load(&args(&["--upstream", "ftp://x"]), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("upstream"), "{err}");

    let err = Config::load(&args(&[]), env(&[("SHOAL_FETCH__STALL_TIMEOUT", "45s")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("fetch.stall_timeout"), "{err}");

    let err = Config::load(&args(&["--config", "/no/such/file.toml"]), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/such/file.toml"), "{err}");
}

#[test]
fn renders_back_to_toml() {
    let c = Config::load(&args(&[]), env(&[])).unwrap();
    let text = c.to_toml();
    let again: Config = toml::from_str(&text).unwrap();
    assert_eq!(again, c);
}

#[test]
fn fetch_rate_limit_reads_and_is_bounded() {
    let c = Config::load(&args(&[]), env(&[("SHOAL_FETCH__RATE_LIMIT", "20MiB")])).unwrap();
    assert_eq!(c.fetch.rate_limit, Some(ByteSize::mib(20)));
    let err = Config::load(&args(&[]), env(&[("SHOAL_FETCH__RATE_LIMIT", "1KiB")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("fetch.rate_limit"), "{err}");
    // What --check-config prints, shoal reads back.
    assert_eq!(
        Config::from_toml(&c.to_toml()).unwrap().fetch.rate_limit,
        c.fetch.rate_limit
    );
}
