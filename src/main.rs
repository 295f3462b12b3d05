//! The `shoal` binary: parse the command line, load the configuration, set up logging and
//! hand over to `shoal::app`. Exits 64 on a bad configuration.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shoal::config::{Config, ServeArgs};

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Pull-through cache for the Ollama and OCI registries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cache.
    Serve(ServeArgs),
    /// Take an existing ollama models directory (e.g. ~/.ollama/models) into the cache:
    /// blobs are verified and hard-linked (not copied), manifests filed, all seeded.
    /// Run it while `shoal serve` is stopped.
    Import(ImportArgs),
    /// Print shoal's CA certificate (PEM), creating the CA if this data dir has none yet.
    /// Clients trust it to let shoal intercept registry TLS (HTTPS_PROXY or DNS mode).
    Ca(ServeArgs),
    /// Check that a running shoal answers (exit 0) or not (exit 1, with a one-line reason).
    /// Made for container health checks: it gives up after 3 seconds.
    Health(HealthArgs),
    /// Warm a running shoal's cache with a model or image: its manifest and every blob are
    /// pulled through the server, which fetches and verifies what it lacks.
    Prefetch(PrefetchArgs),
    /// Hash every blob a running shoal holds now, and fetch again any that fails (from the
    /// LAN or upstream). Exit 0 when the cache is sound afterwards, 1 when something could
    /// not be mended (or the server could not be asked), 64 on bad usage.
    Verify(VerifyArgs),
    /// List the models a running shoal holds: size, how much of each is here, hits, last
    /// use (`--lan`: and which other shoal nodes hold all of it).
    Ls(LsArgs),
    /// One screen about a running shoal: its cache, what it saved, its peers.
    Status(ServerArgs),
    /// Pin a cached model on a running shoal: its blobs are never evicted.
    Pin(ModelArgs),
    /// Unpin a model.
    Unpin(ModelArgs),
    /// Remove a cached model: frees its blobs that no other model uses (never one being
    /// read, fetched or seeded). A pinned model must be unpinned first.
    Rm(ModelArgs),
}

#[derive(clap::Args)]
struct ModelArgs {
    /// The model, as `shoal ls` names it: `granite-code:8b`, `library/granite-code:8b`,
    /// `host/repo:tag`.
    name: String,
    #[command(flatten)]
    admin: ServerArgs,
}

#[derive(clap::Args)]
struct LsArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Also show which other shoal nodes on the LAN hold each model whole, and the models
    /// only they hold (asked at each reachable peer).
    #[arg(long)]
    lan: bool,
}

/// Where a running shoal is, and its admin token (needed for changes; sent on reads too
/// when at hand, for a server with `admin.token_on_reads`).
#[derive(clap::Args)]
struct ServerArgs {
    /// The shoal to ask [default: http://127.0.0.1:9200]
    #[arg(long, env = "SHOAL_SERVER")]
    server: Option<String>,
    /// Its data dir, where its admin token is (`admin.token`) [default: as `shoal serve`]
    #[arg(long, env = "SHOAL_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// The admin token itself (instead of reading it from the data dir).
    #[arg(long, env = "SHOAL_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl ServerArgs {
    /// The server's base URL, or a usage message.
    fn base(&self) -> Result<String, String> {
        let server = self
            .server
            .as_deref()
            .unwrap_or(shoal::client::DEFAULT_SERVER);
        shoal::client::server_base(server).map_err(|e| e.to_string())
    }

    /// The token: given, or read from the data dir.
    fn token(&self) -> Result<String, String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let dir = self
            .data_dir
            .clone()
            .unwrap_or_else(shoal::config::default_data_dir);
        shoal::token::read(&dir).map_err(|e| {
            format!(
                "no admin token: cannot read {} ({e}); give --data-dir, --token or SHOAL_ADMIN_TOKEN",
                shoal::token::path(&dir).display()
            )
        })
    }

    /// The server's base URL and the token, or a usage message (admin changes).
    fn resolve(&self) -> Result<(String, String), String> {
        Ok((self.base()?, self.token()?))
    }
}

#[derive(clap::Args)]
struct VerifyArgs {
    #[command(flatten)]
    admin: ServerArgs,
}

#[derive(clap::Args)]
struct PrefetchArgs {
    /// The model or image, as ollama or docker take it: `granite-code:8b`,
    /// `library/granite-code:8b`, `registry.ollama.ai/library/granite-code:8b`. Without a
    /// host it means the registry the server mirrors; the tag defaults to `latest`.
    name: String,
    /// The shoal to warm [default: http://127.0.0.1:9200]
    #[arg(long, env = "SHOAL_SERVER")]
    server: Option<String>,
    /// For multi-platform images: `os/arch[/variant]` or `all` [default: linux and this
    /// machine's architecture]
    #[arg(long)]
    platform: Option<String>,
}

#[derive(clap::Args)]
struct HealthArgs {
    /// The shoal to check [default: http://127.0.0.1:9200]
    #[arg(long, env = "SHOAL_SERVER")]
    url: Option<String>,
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The ollama models directory.
    dir: std::path::PathBuf,
    #[command(flatten)]
    config: ServeArgs,
}

/// Only the SHOAL_* variables, and only those that are valid UTF-8 (`std::env::vars`
/// would panic on any other variable that is not).
fn shoal_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(shoal::config::ENV_PREFIX))
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Import(args) => import(args),
        Command::Ca(args) => ca(args),
        Command::Health(args) => health(args),
        Command::Prefetch(args) => prefetch(args),
        Command::Verify(args) => verify(args),
        Command::Ls(args) => ask(&args.server, |base, token| async move {
            let models = match args.lan {
                true => shoal::client::models_with_lan(&base, token.as_deref()).await?,
                false => shoal::client::models(&base, token.as_deref()).await?,
            };
            let now = shoal::store::now_ms();
            Ok(shoal::client::ls_table(&models, args.lan, now))
        }),
        Command::Status(args) => ask(&args, |base, token| async move {
            shoal::client::status(&base, token.as_deref()).await
        }),
        Command::Pin(args) => model_action(args, shoal::client::ModelAction::Pin),
        Command::Unpin(args) => model_action(args, shoal::client::ModelAction::Unpin),
        Command::Rm(args) => model_action(args, shoal::client::ModelAction::Remove),
    }
}

/// `shoal pin|unpin|rm`: exit 0 done, 1 refused or failed, 64 bad usage.
fn model_action(args: ModelArgs, action: shoal::client::ModelAction) -> ExitCode {
    let (base, token) = match args.admin.resolve() {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("shoal: {msg}");
            return ExitCode::from(64);
        }
    };
    let name = args.name;
    if let Err(e) = shoal::oci::ModelRef::parse(&name) {
        eprintln!("shoal: {e}");
        return ExitCode::from(64);
    }
    answer(shoal::client::model_action(&base, &token, &name, action))
}

/// Runs one request to a running shoal and prints what it says: exit 0, or 1 with the
/// error when it could not be done.
fn answer(
    work: impl std::future::Future<Output = Result<String, shoal::client::Error>>,
) -> ExitCode {
    match runtime().and_then(|rt| rt.block_on(work).map_err(anyhow::Error::from)) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shoal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a read-only question to a running shoal and prints the answer: exit 0, 1 when
/// the server could not answer, 64 for a bad server URL.
fn ask<F, Fut>(args: &ServerArgs, question: F) -> ExitCode
where
    F: FnOnce(String, Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<String, shoal::client::Error>>,
{
    let base = match args.base() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("shoal: {e}");
            return ExitCode::from(64);
        }
    };
    // Reads are open by default: a token is sent only when one is at hand.
    answer(question(base, args.token().ok()))
}

fn load(args: &ServeArgs) -> Result<Config, ExitCode> {
    Config::load(args, shoal_env()).map_err(|e| {
        eprintln!("shoal: bad configuration: {}", shoal::telemetry::chain(&e));
        ExitCode::from(64)
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn import(args: ImportArgs) -> ExitCode {
    let cfg = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut log = cfg.log.clone();
    log.level = "warn".into();
    shoal::telemetry::init(&log);
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let store = shoal::store::Store::open(&cfg.data_dir)
                .await
                .with_context(|| {
                    format!(
                        "cannot open the data dir {} (stop `shoal serve` first)",
                        cfg.data_dir.display()
                    )
                })?;
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            shoal::import::import(&store, &args.dir, progress)
                .await
                .context("import failed")
        })
    });
    match result {
        Ok(r) => {
            println!(
                "imported {} blobs ({} hard-linked, {} copied, {:.1} GB), {} manifests; {} blobs were already cached",
                r.linked + r.copied,
                r.linked,
                r.copied,
                r.bytes as f64 / 1e9,
                r.manifests,
                r.present
            );
            for (path, why) in &r.refused {
                eprintln!("shoal: skipped {}: {why}", path.display());
            }
            if r.refused.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("shoal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ca(args: ServeArgs) -> ExitCode {
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match shoal::tls::Ca::load_or_create(&cfg.data_dir) {
        Ok(ca) => {
            print!("{}", ca.pem());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shoal: {}", shoal::telemetry::chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Exit 1, never 2, on failure: Docker reserves 2 in health checks.
fn health(args: HealthArgs) -> ExitCode {
    let url = args.url.as_deref().unwrap_or(shoal::client::DEFAULT_SERVER);
    let result = shoal::client::server_base(url).and_then(|base| {
        // One thread is plenty and starts fastest; this runs every few seconds.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(shoal::client::Error::Runtime)?;
        rt.block_on(shoal::client::health(&base)).map(|h| (base, h))
    });
    match result {
        Ok((base, h)) => {
            match h.upstream {
                Some(up) => println!("shoal at {base} is healthy, mirroring {up}"),
                None => println!("shoal at {base} is healthy"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shoal: unhealthy: {}", shoal::telemetry::chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Exit 64 on a bad name or option, 1 when the prefetch fails.
fn prefetch(args: PrefetchArgs) -> ExitCode {
    let usage = |msg: String| {
        eprintln!("shoal: {msg}");
        ExitCode::from(64)
    };
    let server = args
        .server
        .as_deref()
        .unwrap_or(shoal::client::DEFAULT_SERVER);
    let base = match shoal::client::server_base(server) {
        Ok(b) => b,
        Err(e) => return usage(e.to_string()),
    };
    let name = match shoal::oci::ModelRef::parse(&args.name) {
        Ok(n) => n,
        Err(e) => return usage(shoal::telemetry::chain(&e)),
    };
    let platforms = match args.platform.as_deref().map(str::parse) {
        None => shoal::client::Platforms::Host,
        Some(Ok(p)) => p,
        Some(Err(e)) => return usage(e),
    };
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = runtime().and_then(|rt| {
        rt.block_on(shoal::client::prefetch(&base, &name, &platforms, progress))
            .map_err(anyhow::Error::from)
    });
    match result {
        Ok(report) => {
            println!("{}", report.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shoal: prefetch failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exit 64 on bad usage (a bad URL, no token), 1 when the server cannot be asked or
/// something could not be mended.
fn verify(args: VerifyArgs) -> ExitCode {
    let (base, token) = match args.admin.resolve() {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("shoal: {msg}");
            return ExitCode::from(64);
        }
    };
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = runtime().and_then(|rt| {
        rt.block_on(shoal::client::verify(&base, &token, progress))
            .map_err(anyhow::Error::from)
    });
    match result {
        Ok(report) => {
            println!("{}", report.summary());
            if report.sound() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("shoal: verify failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.check_config {
        print!("{}", cfg.to_toml());
        return ExitCode::SUCCESS;
    }
    shoal::telemetry::init(&cfg.log);
    let result = runtime().and_then(|rt| {
        rt.block_on(shoal::app::run(cfg, shutdown_signal()))
            .context("shoal failed")
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM (what `docker stop` sends).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops shoal");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
