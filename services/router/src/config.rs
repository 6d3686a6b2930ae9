//! The router's settings (`services.router` in the config file), each overridable by an
//! environment variable: where the table comes from. The router runs outside the cells (one
//! Deployment per fleet), so its config is not a Cell's and lives here rather than in `crds`.
//!
//! ```yaml
//! services:
//!   router:
//!     table:
//!       configMap: titan-router-table   # TITAN_ROUTER_TABLE_CONFIGMAP; the default source
//!       namespace: titan-system         # TITAN_ROUTER_TABLE_NAMESPACE; default: the pod's
//!       # or, for tests and laptops, instead of configMap:
//!       file: /etc/titan/router-table.json   # TITAN_ROUTER_TABLE_FILE
//!       filePollMillis: 1000                 # TITAN_ROUTER_TABLE_FILE_POLL_MILLIS, 50 to 60000
//! ```

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

/// The ConfigMap read when nothing else is configured.
pub const DEFAULT_CONFIGMAP: &str = "titan-router-table";
const DEFAULT_POLL_MILLIS: u64 = 1_000;

/// Where the table is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Watched through the API server; `namespace` `None` is the client's default (the pod's).
    ConfigMap {
        namespace: Option<String>,
        name: String,
    },
    /// Read again every `poll`; replaced files are seen as well as rewritten ones.
    File { path: PathBuf, poll: Duration },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub source: Source,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    table: RawTable,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTable {
    config_map: Option<String>,
    namespace: Option<String>,
    file: Option<PathBuf>,
    file_poll_millis: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    pub field: &'static str,
    pub message: String,
}

fn refuse(field: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        field,
        message: message.into(),
    }
}

impl Settings {
    /// The settings of `section`, with the process's environment over it.
    pub fn from_yaml(section: Option<serde_yaml::Value>) -> Result<Self, SettingsError> {
        Self::parse(section, |name| std::env::var(name).ok())
    }

    /// [`from_yaml`](Self::from_yaml) with `env` standing for the environment.
    pub fn parse(
        section: Option<serde_yaml::Value>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let raw: Raw = match section {
            Some(value) => {
                serde_yaml::from_value(value).map_err(|e| refuse("table", e.to_string()))?
            }
            None => Raw::default(),
        };
        let RawTable {
            config_map,
            namespace,
            file,
            file_poll_millis,
        } = raw.table;
        let config_map = env("TITAN_ROUTER_TABLE_CONFIGMAP").or(config_map);
        let namespace = env("TITAN_ROUTER_TABLE_NAMESPACE").or(namespace);
        let file = env("TITAN_ROUTER_TABLE_FILE").map(PathBuf::from).or(file);
        let poll = match env("TITAN_ROUTER_TABLE_FILE_POLL_MILLIS") {
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                refuse(
                    "table.filePollMillis",
                    format!("{text:?} is not a whole number of milliseconds"),
                )
            })?),
            None => file_poll_millis,
        };
        match file {
            Some(path) => {
                if config_map.is_some() || namespace.is_some() {
                    return Err(refuse(
                        "table.file",
                        "set either a file or a configMap (with its namespace), not both",
                    ));
                }
                if path.as_os_str().is_empty() {
                    return Err(refuse("table.file", "is empty"));
                }
                let millis = poll.unwrap_or(DEFAULT_POLL_MILLIS);
                if !(50..=60_000).contains(&millis) {
                    return Err(refuse(
                        "table.filePollMillis",
                        format!("{millis} is outside 50 to 60000"),
                    ));
                }
                Ok(Self {
                    source: Source::File {
                        path,
                        poll: Duration::from_millis(millis),
                    },
                })
            }
            None => {
                if poll.is_some() {
                    return Err(refuse(
                        "table.filePollMillis",
                        "applies only to a file source (table.file)",
                    ));
                }
                let name = config_map.unwrap_or_else(|| DEFAULT_CONFIGMAP.to_owned());
                if !is_dns_subdomain(&name) {
                    return Err(refuse(
                        "table.configMap",
                        format!("{name:?} is not a ConfigMap name (a DNS subdomain)"),
                    ));
                }
                if let Some(ns) = &namespace
                    && !titan_kit::config::is_dns_label(ns)
                {
                    return Err(refuse(
                        "table.namespace",
                        format!("{ns:?} is not a namespace name (a DNS label)"),
                    ));
                }
                Ok(Self {
                    source: Source::ConfigMap { namespace, name },
                })
            }
        }
    }
}

/// RFC 1123 subdomain, as Kubernetes requires of object names.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(titan_kit::config::is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str, env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let section = serde_yaml::from_str(yaml).expect("yaml");
        Settings::parse(Some(section), |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_default_is_the_configmap_of_the_pods_namespace() {
        assert_eq!(
            Settings::parse(None, |_| None),
            Ok(Settings {
                source: Source::ConfigMap {
                    namespace: None,
                    name: DEFAULT_CONFIGMAP.into()
                }
            })
        );
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        assert_eq!(
            parse(
                "table: {configMap: a, namespace: ns}",
                &[("TITAN_ROUTER_TABLE_CONFIGMAP", "b.c")]
            ),
            Ok(Settings {
                source: Source::ConfigMap {
                    namespace: Some("ns".into()),
                    name: "b.c".into()
                }
            })
        );
        assert_eq!(
            parse(
                "table: {file: /a.json}",
                &[("TITAN_ROUTER_TABLE_FILE_POLL_MILLIS", "50")]
            ),
            Ok(Settings {
                source: Source::File {
                    path: "/a.json".into(),
                    poll: Duration::from_millis(50)
                }
            })
        );
    }

    #[test]
    fn bad_settings_name_their_field() {
        let cases = [
            ("table: {file: /a, configMap: b}", "table.file"),
            (
                "table: {file: /a, filePollMillis: 10}",
                "table.filePollMillis",
            ),
            ("table: {filePollMillis: 100}", "table.filePollMillis"),
            ("table: {configMap: Bad_Name}", "table.configMap"),
            ("table: {namespace: a.b}", "table.namespace"),
            ("table: {files: /a}", "table"),
        ];
        for (yaml, field) in cases {
            assert_eq!(parse(yaml, &[]).map_err(|e| e.field), Err(field), "{yaml}");
        }
        assert_eq!(
            parse(
                "table: {file: /a}",
                &[("TITAN_ROUTER_TABLE_FILE_POLL_MILLIS", "soon")]
            ),
            Err(refuse(
                "table.filePollMillis",
                "\"soon\" is not a whole number of milliseconds"
            ))
        );
    }
}
