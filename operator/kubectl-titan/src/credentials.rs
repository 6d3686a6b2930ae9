//! `kubectl titan credentials`: which Secrets a cell uses, who makes each and which keys it has;
//! values only with `--reveal`, so a screen share or a pasted output leaks no password.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use serde::Serialize;
use titan_crds::{
    Cell,
    cell::{PostgresProvider, Provider},
};
use titan_operator::{
    cell::{
        connections::{EXTERNAL_URL_KEY, POSTGRES},
        credentials,
    },
    cnpg,
    shared::{CellView, OBJECT_STORAGE_KEYS},
};

use crate::style::{Paint, Style, painted, plain, table};

/// Who creates a Secret the cell reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Maker {
    /// The Titan operator, from the Cell.
    TitanOperator,
    /// CloudNativePG, for its cluster.
    CloudnativePg,
    /// The cell's owner, named in the Cell's spec.
    User,
}

impl Maker {
    fn as_str(self) -> &'static str {
        match self {
            Maker::TitanOperator => "titan-operator",
            Maker::CloudnativePg => "cloudnative-pg",
            Maker::User => "you",
        }
    }
}

/// A Secret the cell uses and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUse {
    /// Its name in the cell's namespace.
    pub name: String,
    /// Who creates it.
    pub maker: Maker,
    /// What it is for.
    pub purpose: String,
}

/// The Secrets `cell` uses, from its spec: the operator's own, then the ones the spec names.
pub fn secrets_used(cell: &Cell) -> Vec<SecretUse> {
    let view = CellView::of(cell);
    let ours = |name: String, purpose: &str| SecretUse {
        name,
        maker: Maker::TitanOperator,
        purpose: purpose.to_string(),
    };
    let mut uses = vec![
        ours(
            credentials::secret_name(&view.name),
            "generated passwords and keys (kept when the Cell is deleted under Retain)",
        ),
        ours(
            view.datastores_secret(),
            "connection URLs and logins every service reads",
        ),
        ours(view.auth_secret(), "the key services verify tokens with"),
    ];
    if view.turn {
        uses.push(ours(
            view.turn_secret(),
            "the TURN shared secret (coturn and videocall)",
        ));
    }
    let stores = &cell.spec.datastores;
    let user = |name: &Option<String>, purpose: String| {
        name.clone().map(|name| SecretUse {
            name,
            maker: Maker::User,
            purpose,
        })
    };
    let external = |what: &str| format!("external {what}: key {EXTERNAL_URL_KEY}");
    match stores.postgres.provider {
        PostgresProvider::External => {
            uses.extend(user(&stores.postgres.secret_name, external("postgres")));
        }
        PostgresProvider::CloudnativePg => uses.push(SecretUse {
            name: format!("{POSTGRES}{}", cnpg::APP_SECRET_SUFFIX),
            maker: Maker::CloudnativePg,
            purpose: format!(
                "the application user of the CloudNativePG cluster: key {}",
                cnpg::APP_SECRET_URI_KEY
            ),
        }),
        PostgresProvider::Builtin => {}
    }
    if stores.redis.provider == Provider::External {
        uses.extend(user(&stores.redis.secret_name, external("redis")));
    }
    if stores.clickhouse.provider == Provider::External {
        uses.extend(user(
            &stores.clickhouse.secret_name,
            format!("{}, optional user and password", external("clickhouse")),
        ));
    }
    if let Some(storage) = &stores.object_storage {
        uses.extend(user(
            &Some(storage.credentials_secret.clone()),
            format!("object storage: keys {}", OBJECT_STORAGE_KEYS.join(", ")),
        ));
    }
    uses
}

/// One key of a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyLine {
    /// The key.
    pub key: String,
    /// Length of the value in bytes.
    pub bytes: usize,
    /// The value, only when revealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One Secret of the cell as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretLine {
    /// Its name.
    pub name: String,
    /// Who creates it.
    pub made_by: Maker,
    /// What it is for.
    pub purpose: String,
    /// Whether it exists.
    pub exists: bool,
    /// Its keys, sorted.
    pub keys: Vec<KeyLine>,
}

/// Everything `kubectl titan credentials CELL` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsReport {
    /// The cell.
    pub cell: String,
    /// Its namespace.
    pub namespace: String,
    /// Whether values are shown.
    pub revealed: bool,
    /// The Secrets.
    pub secrets: Vec<SecretLine>,
}

impl CredentialsReport {
    /// The report of `cell` from the live Secrets of its namespace (any of them; the ones it
    /// does not use are ignored). Values are copied only when `reveal`.
    pub fn build(cell: &Cell, live: &[Secret], reveal: bool) -> Self {
        let secrets = secrets_used(cell)
            .into_iter()
            .map(|used| {
                let found = live.iter().find(|s| s.name_any() == used.name);
                let mut keys: Vec<KeyLine> = found
                    .and_then(|s| s.data.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|(key, value)| KeyLine {
                        key: key.clone(),
                        bytes: value.0.len(),
                        value: reveal.then(|| String::from_utf8_lossy(&value.0).into_owned()),
                    })
                    .collect();
                keys.sort_by(|a, b| a.key.cmp(&b.key));
                SecretLine {
                    name: used.name,
                    made_by: used.maker,
                    purpose: used.purpose,
                    exists: found.is_some(),
                    keys,
                }
            })
            .collect();
        Self {
            cell: cell.name_any(),
            namespace: cell.namespace_name(),
            revealed: reveal,
            secrets,
        }
    }

    /// The report for people.
    pub fn text(&self, style: Style) -> String {
        let mut out = String::new();
        let hidden = if self.revealed {
            style.paint(Some(Paint::Bad), "values shown")
        } else {
            "values hidden; --reveal shows them".to_string()
        };
        let _ = writeln!(
            out,
            "{} of cell {} in namespace {} ({hidden})",
            style.paint(Some(Paint::Bold), "Secrets"),
            self.cell,
            self.namespace
        );
        for secret in &self.secrets {
            let exists = if secret.exists {
                plain("")
            } else {
                painted(" MISSING", Paint::Bad)
            };
            let _ = writeln!(
                out,
                "\n{}{}  {}",
                style.paint(Some(Paint::Bold), &secret.name),
                style.paint(exists.1, &exists.0),
                style.paint(
                    Some(Paint::Dim),
                    &format!("made by {}: {}", secret.made_by.as_str(), secret.purpose)
                ),
            );
            let rows: Vec<_> = secret
                .keys
                .iter()
                .map(|k| {
                    let value = match &k.value {
                        Some(v) => plain(v),
                        None => painted(format!("({} bytes)", k.bytes), Paint::Dim),
                    };
                    vec![plain(&k.key), value]
                })
                .collect();
            if !rows.is_empty() {
                out.push_str(&table(style, "  ", &["KEY", "VALUE"], &rows));
            }
        }
        out
    }
}
