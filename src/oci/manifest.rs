//! Manifest details that do not depend on where a manifest came from.

use super::digest::Digest;

/// The Accept header ollama sends for manifests; tags it pulled are cached under it.
pub const OLLAMA_MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The manifest list of ollama ≥ 0.40 (per-runner children, fetched as blobs).
pub const OLLAMA_LIST_TYPE: &str = "application/vnd.ollama.manifest.list.v2+json";

/// The cache key of the Accept that ollama ≥ 0.40 sends (the list type, then the docker v2
/// type), in the normal form of `upstream::ClientMeta::accept_key`: sorted, lowercase.
pub const OLLAMA_V040_ACCEPT_KEY: &str =
    "application/vnd.docker.distribution.manifest.v2+json, application/vnd.ollama.manifest.list.v2+json";

/// Every manifest kind shoal can read: image indexes and manifest lists, OCI and Docker
/// v2 manifests.
pub const ANY_MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A blob a manifest names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) if !v.is_empty() => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

/// What a manifest names: an image's blobs, or (an index) one manifest per platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestContent {
    Image {
        config: Option<Descriptor>,
        layers: Vec<Descriptor>,
    },
    Index(Vec<Descriptor>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is not valid JSON of a known kind: {0}")]
    Json(String),
    #[error("schema 1 manifests are not supported")]
    SchemaV1,
    #[error("manifest names neither layers nor manifests")]
    Empty,
}

impl ManifestContent {
    /// Reads an image manifest or an index. Digests are validated like any other input.
    pub fn parse(body: &[u8]) -> Result<ManifestContent, ManifestError> {
        #[derive(serde::Deserialize)]
        struct Raw {
            #[serde(rename = "schemaVersion")]
            schema_version: Option<u32>,
            config: Option<Descriptor>,
            layers: Option<Vec<Descriptor>>,
            manifests: Option<Vec<Descriptor>>,
        }
        let raw: Raw =
            serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
        if raw.schema_version == Some(1) {
            return Err(ManifestError::SchemaV1);
        }
        match (raw.manifests, raw.layers) {
            (Some(m), _) => Ok(ManifestContent::Index(m)),
            (None, Some(layers)) => Ok(ManifestContent::Image {
                config: raw.config,
                layers,
            }),
            (None, None) => Err(ManifestError::Empty),
        }
    }
}

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
    use super::*;

    #[test]
    fn reads_images_and_indexes() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let ollama = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:{a}","size":48}},"layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{b}","size":6303057}}]}}"#
        );
        let ManifestContent::Image { config, layers } =
            ManifestContent::parse(ollama.as_bytes()).unwrap()
        else {
            panic!("an image")
        };
        assert_eq!(config.unwrap().size, 48);
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].digest.hex(), b);
        assert_eq!(layers[0].media_type, "application/vnd.ollama.image.model");

        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{a}","size":500,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},{{"digest":"sha256:{b}","size":9}}]}}"#
        );
        let ManifestContent::Index(ms) = ManifestContent::parse(index.as_bytes()).unwrap() else {
            panic!("an index")
        };
        assert_eq!(ms.len(), 2);
        assert_eq!(
            ms[0].platform.as_ref().unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(ms[1].platform, None);

        for (bad, want) in [
            ("{", "JSON"),
            (r#"{"schemaVersion":1,"fsLayers":[]}"#, "schema 1"),
            (r#"{"schemaVersion":2}"#, "neither"),
            (r#"{"layers":[{"digest":"sha256:abc","size":1}]}"#, "JSON"),
            (r#"{"layers":[{"digest":"md5:abc","size":1}]}"#, "JSON"),
            (
                &format!(r#"{{"layers":[{{"digest":"sha256:{a}","size":-1}}]}}"#),
                "JSON",
            ),
            (
                &format!(r#"{{"layers":[{{"digest":"sha256:{a}"}}]}}"#),
                "JSON",
            ),
        ] {
            let err = ManifestContent::parse(bad.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

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
