//! The privacy service's settings (`services.privacy`): how long an export stays downloadable.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, TitanConfig, in_range};
use crate::kind::ServiceKind;

/// Configuration of the privacy service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PrivacyConfig {
    /// Seconds an export's object stays in the bucket (and its download URLs valid) after the
    /// export completes; then it is deleted. At most 7 days, what a presigned URL can last.
    #[schemars(range(min = 60, max = 604800))]
    pub export_ttl_seconds: u64,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            export_ttl_seconds: 24 * 3600,
        }
    }
}

impl TitanConfig for PrivacyConfig {
    const SERVICE: ServiceKind = ServiceKind::Privacy;

    fn validate(&self) -> Result<(), ConfigError> {
        in_range(
            Self::SERVICE,
            "exportTtlSeconds",
            self.export_ttl_seconds,
            60,
            7 * 24 * 3600,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_lives_a_day_unless_told_and_at_most_a_week() {
        assert_eq!(
            PrivacyConfig::from_yaml(None).map(|c| c.export_ttl_seconds),
            Ok(86400)
        );
        let week: serde_yaml::Value =
            serde_yaml::from_str("exportTtlSeconds: 604800").expect("yaml");
        assert_eq!(
            PrivacyConfig::from_yaml(Some(week)).map(|c| c.export_ttl_seconds),
            Ok(604800)
        );
        let longer: serde_yaml::Value =
            serde_yaml::from_str("exportTtlSeconds: 604801").expect("yaml");
        assert_eq!(
            PrivacyConfig::from_yaml(Some(longer)).map_err(|e| e.to_string()),
            Err("privacy.exportTtlSeconds: 604801 is outside 60..=604800".to_owned())
        );
    }
}
