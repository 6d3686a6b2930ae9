//! The labels and annotations the operator puts on everything it creates, and the selectors it
//! finds its objects by.

use std::collections::BTreeMap;

use crate::MANAGER;

/// The cell an object belongs to.
pub const CELL: &str = "commerce.titan.dev/cell";
/// The `Service` resource an object belongs to.
pub const SERVICE: &str = "commerce.titan.dev/service";
/// Hash of what the operator last applied; equal hash and no drift = nothing to write.
pub const APPLIED_HASH: &str = "commerce.titan.dev/applied-hash";
/// Hash of the rendered config on a pod template, so a config change rolls the pods.
pub const CONFIG_HASH: &str = "commerce.titan.dev/config-hash";
/// The part of a cell the Cell controller built an object for (`postgres`, `turn`, `rtmp`).
pub const COMPONENT: &str = "commerce.titan.dev/component";
/// `app.kubernetes.io/managed-by`.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/version`.
pub const VERSION: &str = "app.kubernetes.io/version";

/// The [`CONFIG_HASH`] of a rendered config: hex SHA-256 of the text (first 16 bytes).
pub fn config_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// The recommended `app.kubernetes.io` labels plus the cell label.
pub fn common(cell: &str, component: &str, version: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "titan".to_string()),
        ("app.kubernetes.io/instance".to_string(), cell.to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            component.to_string(),
        ),
        ("app.kubernetes.io/part-of".to_string(), "titan".to_string()),
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (VERSION.to_string(), label_value(version)),
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
    format!("{CELL}={cell},{MANAGED_BY}={MANAGER},!{SERVICE}")
}

/// A label selector string (`a=b,c=d`) for list calls and the scale subresource.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The tag of an image reference (`repo:tag` → `tag`), or `latest` when it has none.
pub fn image_tag(image: &str) -> &str {
    let name = image.split('@').next().unwrap_or(image);
    match name.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => tag,
        _ => "latest",
    }
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
        assert_eq!(image_tag("titan:1.2@sha256:abc"), "1.2");
    }

    #[test]
    fn label_values_are_sanitised() {
        assert_eq!(label_value("0.1.0+build/7"), "0.1.0-build-7");
        assert_eq!(label_value("-x-"), "x");
        assert_eq!(label_value(&"a".repeat(80)).len(), 63);
    }
}
