//! The labels and annotations the operator puts on everything it creates, and the selectors it
//! finds its objects by.

use std::collections::BTreeMap;

use kube::core::{Expression, Selector};

use crate::MANAGER;

/// The cell an object belongs to.
pub const CELL: &str = "commerce.titan.dev/cell";
/// The `Service` resource an object belongs to.
pub const SERVICE: &str = "commerce.titan.dev/service";
/// On the pods of a service's migration Job: the `Service` they migrate. Not [`SERVICE`], so
/// the service's Deployment, core Service and disruption budget never select them.
pub const MIGRATION: &str = "commerce.titan.dev/migration";
/// Hash of what the operator last applied; equal hash and no drift = nothing to write.
pub const APPLIED_HASH: &str = "commerce.titan.dev/applied-hash";
/// Hash of the rendered config on a pod template, so a config change rolls the pods.
pub const CONFIG_HASH: &str = "commerce.titan.dev/config-hash";
/// Hash of the Secret values a pod consumes, on its pod template (and on a Titan `Service`,
/// whose controller copies it to the template), so a changed credential rolls exactly the pods
/// that read it.
pub const SECRETS_HASH: &str = "commerce.titan.dev/secrets-hash";
/// The part of a cell the Cell controller built an object for (`postgres`, `turn`, `rtmp`).
pub const COMPONENT: &str = "commerce.titan.dev/component";
/// Put by the operator on a Secret a cell reads but does not own (an external datastore's, the
/// object storage credentials), so the operator can watch those Secrets alone.
pub const REFERENCED: &str = "commerce.titan.dev/referenced";
/// `app.kubernetes.io/managed-by`.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/version`.
pub const VERSION: &str = "app.kubernetes.io/version";

/// The [`CONFIG_HASH`] of a rendered config: hex SHA-256 of the text (first 16 bytes).
pub fn config_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// The [`SECRETS_HASH`] of the Secret values a pod consumes: hex SHA-256 (first 16 bytes) of
/// the `(name, value)` pairs, each length-prefixed so no two different sets hash alike.
pub fn secrets_hash<'a>(values: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<(&str, &str)> = values.into_iter().collect();
    sorted.sort_unstable();
    let mut hasher = Sha256::new();
    for (name, value) in sorted {
        for part in [name, value] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    hex::encode(&hasher.finalize()[..16])
}

/// The recommended `app.kubernetes.io` labels plus the cell label, with the version of what the
/// object runs.
pub fn common(cell: &str, component: &str, version: &str) -> BTreeMap<String, String> {
    let mut labels = unversioned(cell, component);
    labels.insert(VERSION.to_string(), label_value(version));
    labels
}

/// [`common`] without `app.kubernetes.io/version`: for the objects of a cell that do not run the
/// cell's Titan release (its datastores, media servers, Secrets, policies), so that a version
/// bump leaves them, and their pods, alone.
pub fn unversioned(cell: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "titan".to_string()),
        ("app.kubernetes.io/instance".to_string(), cell.to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            component.to_string(),
        ),
        ("app.kubernetes.io/part-of".to_string(), "titan".to_string()),
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (CELL.to_string(), cell.to_string()),
    ])
}

/// The labels that select one service's pods; never changes for a service, as a Deployment
/// selector must not.
pub fn pod_selector(cell: &str, service: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CELL.to_string(), cell.to_string()),
        (SERVICE.to_string(), service.to_string()),
    ])
}

/// The labels that select the pods of one of a cell's own components (a datastore or a media
/// server); as stable as [`pod_selector`].
pub fn component_selector(cell: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CELL.to_string(), cell.to_string()),
        (COMPONENT.to_string(), component.to_string()),
    ])
}

/// Selector of the objects the Cell controller built for `cell`: the Service controller's
/// objects also carry the cell label, and are told apart by their service label.
pub fn cell_owned(cell: &str) -> String {
    cell_owned_selector(cell).to_string()
}

/// [`cell_owned`] as a selector, to match objects in a watch cache.
pub fn cell_owned_selector(cell: &str) -> Selector {
    Selector::from_iter([
        Expression::Equal(CELL.into(), cell.into()),
        Expression::Equal(MANAGED_BY.into(), MANAGER.into()),
        Expression::DoesNotExist(SERVICE.into()),
    ])
}

/// A label selector string (`a=b,c=d`) for list calls and the scale subresource.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An image reference split into its parts: `[host[:port]/]path[:tag][@digest]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRef<'a> {
    /// Registry, port and path (`host:5000/titan/titan`).
    pub repository: &'a str,
    /// The tag, when the reference has one.
    pub tag: Option<&'a str>,
    /// The digest (`sha256:…`), when the reference has one.
    pub digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    /// Splits `image`. A colon is a tag's only after the last `/`: before it, it is a
    /// registry's port (`host:5000/repo`).
    pub fn parse(image: &'a str) -> Self {
        let (name, digest) = match image.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (image, None),
        };
        let last_segment = name.rfind('/').map_or(0, |slash| slash + 1);
        match name[last_segment..].rfind(':') {
            Some(colon) => {
                let colon = last_segment + colon;
                Self {
                    repository: &name[..colon],
                    tag: Some(&name[colon + 1..]),
                    digest,
                }
            }
            None => Self {
                repository: name,
                tag: None,
                digest,
            },
        }
    }
}

/// The tag of an image reference (`repo:tag` → `tag`), or `latest` when it has none.
pub fn image_tag(image: &str) -> &str {
    ImageRef::parse(image).tag.unwrap_or("latest")
}

/// Turns any string into a valid label value (at most 63 of `[A-Za-z0-9._-]`, alphanumeric at
/// both ends), because a version or tag may hold characters a label may not.
pub fn label_value(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_come_from_the_last_colon_outside_the_registry_port() {
        assert_eq!(image_tag("ghcr.io/titan/titan:0.1.0"), "0.1.0");
        assert_eq!(image_tag("localhost:5000/titan"), "latest");
        assert_eq!(image_tag("localhost:5000/titan@sha256:abc"), "latest");
        assert_eq!(image_tag("localhost:5000/titan:1.2@sha256:abc"), "1.2");
        assert_eq!(image_tag("titan:1.2@sha256:abc"), "1.2");
    }

    #[test]
    fn image_references_split_into_repository_tag_and_digest() {
        let digest = "sha256:0123456789abcdef";
        let table: [(&str, &str, Option<&str>, Option<&str>); 7] = [
            ("titan", "titan", None, None),
            ("titan:0.1.0", "titan", Some("0.1.0"), None),
            ("host:5000/repo", "host:5000/repo", None, None),
            ("host:5000/repo:tag", "host:5000/repo", Some("tag"), None),
            (
                "ghcr.io/a/b@sha256:0123456789abcdef",
                "ghcr.io/a/b",
                None,
                Some(digest),
            ),
            (
                "repo:tag@sha256:0123456789abcdef",
                "repo",
                Some("tag"),
                Some(digest),
            ),
            (
                "host:5000/a/b:tag@sha256:0123456789abcdef",
                "host:5000/a/b",
                Some("tag"),
                Some(digest),
            ),
        ];
        for (image, repository, tag, digest) in table {
            assert_eq!(
                ImageRef::parse(image),
                ImageRef {
                    repository,
                    tag,
                    digest
                },
                "{image}"
            );
        }
    }

    #[test]
    fn secrets_hashes_depend_on_every_value_and_not_on_order() {
        let a = secrets_hash([("x", "1"), ("y", "2")]);
        assert_eq!(a, secrets_hash([("y", "2"), ("x", "1")]));
        assert_ne!(a, secrets_hash([("x", "1"), ("y", "3")]));
        // Length prefixes: moving a character across the boundary changes the hash.
        assert_ne!(secrets_hash([("ab", "c")]), secrets_hash([("a", "bc")]));
    }

    #[test]
    fn label_values_are_sanitised() {
        assert_eq!(label_value("0.1.0+build/7"), "0.1.0-build-7");
        assert_eq!(label_value("-x-"), "x");
        assert_eq!(label_value(&"a".repeat(80)).len(), 63);
    }
}
