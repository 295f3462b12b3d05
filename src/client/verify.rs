//! `shoal verify`: asks a running shoal to hash every cached blob now and mend what fails
//! (`POST /_shoal/v1/verify`, with the admin token), showing its progress as the server's
//! NDJSON lines arrive.

use std::time::Duration;

use http::header::AUTHORIZATION;
use http::StatusCode;
use http_body_util::BodyExt;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;

use super::{error_detail, Error, Result, ServerClient};

/// What the server found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub blobs: u64,
    pub bytes: u64,
    pub sound: u64,
    pub mended: u64,
    pub gone: u64,
    /// Damaged blobs that could not be fetched again, with why.
    pub unmended: Vec<(String, String)>,
    pub took: Duration,
}

impl VerifyReport {
    /// The cache is sound afterwards: nothing damaged is left unmended.
    pub fn sound(&self) -> bool {
        self.unmended.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "verified {} blobs ({}) in {:.1} s: {} sound, {} mended, {} unmended",
            self.blobs,
            HumanBytes(self.bytes),
            self.took.as_secs_f64(),
            self.sound,
            self.mended,
            self.unmended.len()
        );
        if self.gone > 0 {
            s.push_str(&format!(", {} gone meanwhile", self.gone));
        }
        for (digest, why) in &self.unmended {
            s.push_str(&format!("\n  {digest}: {why}"));
        }
        s
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Done {
        #[allow(dead_code)]
        done: bool,
        sound: u64,
        mended: u64,
        gone: u64,
    },
    Blob {
        digest: String,
        size: u64,
        result: String,
        reason: Option<String>,
    },
    Start {
        blobs: u64,
        bytes: u64,
    },
}

/// Runs the server's verification to its end. `progress`: draw a bar on stderr.
pub async fn verify(base: &str, token: &str, progress: bool) -> Result<VerifyReport> {
    let started = std::time::Instant::now();
    let client = ServerClient::new(base.to_owned(), Duration::from_secs(5));
    let url = client.url("/_shoal/v1/verify");
    let bearer = format!("Bearer {token}");
    let resp = client
        .send(
            http::Method::POST,
            "/_shoal/v1/verify",
            &[(AUTHORIZATION, &bearer)],
        )
        .await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != StatusCode::OK {
        let bytes = http_body_util::Limited::new(body, 64 << 10)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(Error::Status {
            url,
            status,
            detail: error_detail(&bytes),
        });
    }
    let bar = if progress {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} verifying {bytes}/{total_bytes} {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut report = VerifyReport::default();
    let mut buf = Vec::new();
    let mut finished = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|source| Error::Body {
            url: url.clone(),
            source,
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            match serde_json::from_slice::<Line>(&line) {
                Ok(Line::Start { blobs, bytes }) => {
                    report.blobs = blobs;
                    report.bytes = bytes;
                    bar.set_length(bytes);
                }
                Ok(Line::Blob {
                    digest,
                    size,
                    result,
                    reason,
                }) => {
                    bar.inc(size);
                    if result != "sound" {
                        bar.println(format!("{digest}: {result}"));
                    }
                    if result == "unmended" {
                        report
                            .unmended
                            .push((digest, reason.unwrap_or_else(|| "not fetched again".into())));
                    }
                }
                Ok(Line::Done {
                    sound,
                    mended,
                    gone,
                    ..
                }) => {
                    report.sound = sound;
                    report.mended = mended;
                    report.gone = gone;
                    finished = true;
                }
                Err(_) => {}
            }
        }
    }
    bar.finish_and_clear();
    if !finished {
        return Err(Error::Status {
            url,
            status,
            detail: Some("the answer ended before the verification did".into()),
        });
    }
    report.took = started.elapsed();
    Ok(report)
}
