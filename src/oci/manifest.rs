//! Manifest details that do not depend on where a manifest came from.

/// The Accept header ollama sends for manifests; tags it pulled are cached under it.
pub const OLLAMA_MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The type to serve a manifest as. registry.ollama.ai says `text/plain`; OCI clients need
/// the real type, which the manifest names itself. (ollama ignores the header.)
pub fn manifest_media_type(upstream: Option<&str>, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Sniff {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let declared = upstream
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .filter(|c| !c.is_empty() && !matches!(*c, "text/plain" | "application/octet-stream"));
    if let Some(c) = declared {
        return c.to_owned();
    }
    serde_json::from_slice::<Sniff>(body)
        .ok()
        .and_then(|s| s.media_type)
        .filter(|t| !t.is_empty() && t.len() < 256 && http::HeaderValue::from_str(t).is_ok())
        .unwrap_or_else(|| "application/json".to_owned())
}

#[cfg(test)]
mod tests {
    use super::manifest_media_type as media_type;

    #[test]
    fn media_types() {
        let ollama = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert_eq!(
            media_type(Some("text/plain; charset=utf-8"), ollama),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(
            media_type(Some("application/vnd.oci.image.manifest.v1+json"), ollama),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(media_type(None, b"{}"), "application/json");
        assert_eq!(media_type(None, b"not json"), "application/json");
        assert_eq!(
            media_type(None, br#"{"mediaType":"bad\nvalue"}"#),
            "application/json"
        );
    }
}
