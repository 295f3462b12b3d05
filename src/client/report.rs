//! `shoal ls` and `shoal status`: what a running shoal holds and how it is doing, from its
//! read endpoints (`/_shoal/v1/models`, `/stats`, `/peers`, `/health`), which stay open on
//! the LAN without the admin token.

use std::time::Duration;

use http::StatusCode;
use indicatif::{HumanBytes, HumanDuration};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{error_detail, Error, Result, ServerClient};

const TIMEOUT: Duration = Duration::from_secs(10);
/// A models list of a big cache is some hundred KiB; far past that it is not one.
const MAX_LIST: usize = 16 << 20;

/// A cached model, as `GET /_shoal/v1/models` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Model {
    pub name: String,
    pub size: u64,
    pub held_bytes: u64,
    pub blobs: usize,
    pub held_blobs: usize,
    pub hits: u64,
    pub last_used_ms: i64,
    #[serde(default)]
    pub lan: Vec<String>,
}

#[derive(Deserialize)]
struct Models {
    models: Vec<Model>,
}

#[derive(Deserialize)]
struct Peers {
    peers: Vec<Peer>,
}

#[derive(Deserialize)]
struct Peer {
    url: String,
    failures: u64,
}

/// The models a running shoal holds, and with them the models its reachable peers hold
/// whole (asked at each peer's own `/_shoal/v1/models`): a model only peers hold is listed
/// with nothing of it here, and every model lists the peers that hold it.
pub async fn models_with_lan(base: &str, token: Option<&str>) -> Result<Vec<Model>> {
    let here = Reader::new(base, token);
    let mut models = here.json::<Models>("/_shoal/v1/models").await?.models;
    let peers = here.json::<Peers>("/_shoal/v1/peers").await?.peers;
    let asks = peers
        .iter()
        .filter(|p| p.failures == 0)
        .map(|p| async move {
            // A peer that does not answer (or asks for a token) is left out, not an error.
            let r = Reader::new(&p.url, None);
            (p.url.clone(), r.json::<Models>("/_shoal/v1/models").await)
        });
    for (url, answer) in futures_util::future::join_all(asks).await {
        let Ok(theirs) = answer else { continue };
        for m in theirs.models.into_iter().filter(|m| m.held_bytes >= m.size) {
            match models.iter_mut().find(|o| o.name == m.name) {
                Some(o) if !o.lan.contains(&url) => o.lan.push(url.clone()),
                Some(_) => {}
                None => models.push(Model {
                    held_bytes: 0,
                    held_blobs: 0,
                    hits: 0,
                    last_used_ms: 0,
                    lan: vec![url.clone()],
                    ..m
                }),
            }
        }
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// A client that sends the admin token, when it has one (a server with
/// `admin.token_on_reads` asks for it on reads too).
struct Reader {
    client: ServerClient,
    bearer: Option<String>,
}

impl Reader {
    fn new(base: &str, token: Option<&str>) -> Reader {
        Reader {
            client: ServerClient::new(base.to_owned(), TIMEOUT),
            bearer: token.map(|t| format!("Bearer {t}")),
        }
    }

    /// GETs `path` and reads its JSON.
    async fn json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let c = &self.client;
        let auth: Vec<(http::HeaderName, &str)> = self
            .bearer
            .iter()
            .map(|b| (http::header::AUTHORIZATION, b.as_str()))
            .collect();
        let (parts, body) = c.get_bytes(path, &auth, TIMEOUT, MAX_LIST).await?;
        if parts.status != StatusCode::OK {
            return Err(Error::Status {
                url: c.url(path),
                status: parts.status,
                detail: error_detail(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| Error::BadAnswer {
            url: c.url(path),
            what: e.to_string(),
        })
    }
}

/// The models a running shoal holds, by name.
pub async fn models(base: &str, token: Option<&str>) -> Result<Vec<Model>> {
    let r = Reader::new(base, token);
    Ok(r.json::<Models>("/_shoal/v1/models").await?.models)
}

/// `ollama list`'s layout: name, size, how much is here, use, and with `lan` the other
/// nodes that hold all of it (`models_with_lan`).
pub fn ls_table(models: &[Model], lan: bool, now_ms: i64) -> String {
    let width = models
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:width$}  {:>10}  {:>5}  {:>6}  {:16}",
        "NAME", "SIZE", "HELD", "HITS", "LAST USED"
    );
    if lan {
        out.push_str("  LAN");
    }
    for m in models {
        let held = match m.size {
            0 => 100,
            s => (m.held_bytes.saturating_mul(100) / s).min(100),
        };
        out.push_str(&format!(
            "\n{:width$}  {:>10}  {:>4}%  {:>6}  {:16}",
            m.name,
            HumanBytes(m.size).to_string(),
            held,
            m.hits,
            ago(now_ms, m.last_used_ms)
        ));
        if lan {
            let who = match m.lan.len() {
                0 => "-".to_owned(),
                _ => m.lan.join(", "),
            };
            out.push_str(&format!("  {who}"));
        }
    }
    out.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

fn ago(now_ms: i64, then_ms: i64) -> String {
    if then_ms <= 0 {
        return "never".into();
    }
    let d = Duration::from_millis(now_ms.saturating_sub(then_ms).max(0) as u64);
    format!("{} ago", HumanDuration(d))
}

/// One screen about a running shoal: what it mirrors, its cache, what it saved, its peers.
pub async fn status(base: &str, token: Option<&str>) -> Result<String> {
    let c = Reader::new(base, token);
    let health = c.client.health(TIMEOUT).await?;
    let stats: serde_json::Value = c.json("/_shoal/v1/stats").await?;
    let models = c.json::<Models>("/_shoal/v1/models").await?.models;
    let peers = c.json::<Peers>("/_shoal/v1/peers").await?.peers;
    let n = |k: &str| stats[k].as_u64().unwrap_or(0);
    let bytes = |k: &str| HumanBytes(n(k)).to_string();
    let share = |part: u64, whole: u64| match whole {
        0 => "-".to_owned(),
        w => format!("{:.0}%", part as f64 * 100.0 / w as f64),
    };
    let limit = match stats["cache_limit_bytes"].as_u64() {
        Some(l) => format!(
            "limit {}, {} full",
            HumanBytes(l),
            share(n("cache_bytes"), l)
        ),
        None => "no limit".to_owned(),
    };
    let names: Vec<&str> = models.iter().take(5).map(|m| m.name.as_str()).collect();
    let more = match models.len() {
        0..=5 => String::new(),
        k => format!(", and {} more", k - 5),
    };
    let reachable = peers.iter().filter(|p| p.failures == 0).count();
    let lines = [
        format!(
            "shoal at {base}, mirroring {}, up {}",
            health.upstream.as_deref().unwrap_or("?"),
            HumanDuration(Duration::from_secs(n("uptime_secs")))
        ),
        format!(
            "cache    {} in {} blob{} ({limit})",
            bytes("cache_bytes"),
            n("blobs"),
            if n("blobs") == 1 { "" } else { "s" }
        ),
        format!("models   {} ({}{more})", models.len(), names.join(", ")),
        format!(
            "saved    {} of {} served ({}); from the internet {}, from LAN peers {}",
            bytes("saved_bytes"),
            bytes("served_bytes"),
            share(n("saved_bytes"), n("served_bytes")),
            bytes("upstream_bytes"),
            bytes("peer_bytes")
        ),
        format!(
            "hits     {} blob hits, {} misses ({} hit)",
            n("blob_hits"),
            n("blob_misses"),
            share(n("blob_hits"), n("blob_hits") + n("blob_misses"))
        ),
        format!(
            "fills    {} running; {} started, {} failed",
            n("fills_running"),
            n("fills_started"),
            n("fills_failed")
        ),
        format!(
            "peers    {reachable} reachable, {} unreachable; seeded {} to them",
            peers.len() - reachable,
            bytes("seeded_bytes")
        ),
        format!(
            "checks   {} blobs verified, {} found damaged, {} mended",
            n("verified_blobs"),
            n("damaged_blobs"),
            n("mended_blobs")
        ),
    ];
    Ok(lines.join("\n"))
}

/// An admin action on one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelAction {
    Pin,
    Unpin,
    Remove,
}

#[derive(Deserialize)]
struct Removed {
    blobs: usize,
    bytes: u64,
    shared: usize,
    busy: usize,
}

/// `shoal pin`, `shoal unpin`, `shoal rm`: one request with the admin token; what it did.
pub async fn model_action(
    base: &str,
    token: &str,
    name: &str,
    action: ModelAction,
) -> Result<String> {
    let c = ServerClient::new(base.to_owned(), TIMEOUT);
    let (method, path) = match action {
        ModelAction::Pin => (http::Method::PUT, format!("/_shoal/v1/models/{name}/pin")),
        ModelAction::Unpin => (
            http::Method::DELETE,
            format!("/_shoal/v1/models/{name}/pin"),
        ),
        ModelAction::Remove => (http::Method::DELETE, format!("/_shoal/v1/models/{name}")),
    };
    let bearer = format!("Bearer {token}");
    let resp = c
        .send(
            method,
            &path,
            &[(http::header::AUTHORIZATION, bearer.as_str())],
        )
        .await?;
    let status = resp.status();
    let body =
        http_body_util::BodyExt::collect(http_body_util::Limited::new(resp.into_body(), 64 << 10))
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
    if !status.is_success() {
        return Err(Error::Status {
            url: c.url(&path),
            status,
            detail: error_detail(&body),
        });
    }
    Ok(match action {
        ModelAction::Pin => format!("pinned {name}: its blobs are never evicted"),
        ModelAction::Unpin => format!("unpinned {name}"),
        ModelAction::Remove => {
            let r: Removed = serde_json::from_slice(&body).map_err(|e| Error::BadAnswer {
                url: c.url(&path),
                what: e.to_string(),
            })?;
            let mut s = format!(
                "removed {name}: freed {} ({} blob{})",
                HumanBytes(r.bytes),
                r.blobs,
                if r.blobs == 1 { "" } else { "s" }
            );
            if r.shared > 0 {
                s.push_str(&format!("; kept {} used by other models", r.shared));
            }
            if r.busy > 0 {
                s.push_str(&format!(
                    "; kept {} in use now (freed later, as the cache needs room)",
                    r.busy
                ));
            }
            s
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_lines_up_and_says_how_much_is_here() {
        let m = |name: &str, size, held, lan: &[&str]| Model {
            name: name.into(),
            size,
            held_bytes: held,
            blobs: 2,
            held_blobs: 1,
            hits: 3,
            last_used_ms: 1_000,
            lan: lan.iter().map(|s| s.to_string()).collect(),
        };
        let t = ls_table(
            &[
                m("granite-code:8b", 4_000, 4_000, &[]),
                m("x:1", 1_000, 500, &["http://10.0.0.2:9200"]),
            ],
            true,
            61_000,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAME "), "{t}");
        assert!(
            lines[1].contains(" 100% ") && lines[1].ends_with("  -"),
            "{t}"
        );
        assert!(
            lines[2].contains("  50% ") && lines[2].contains("60 seconds ago"),
            "{t}"
        );
        assert!(lines[2].ends_with("http://10.0.0.2:9200"), "{t}");
        assert!(lines[1].contains("3.91 KiB"), "{t}");
    }
}
