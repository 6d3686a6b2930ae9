//! The router as the `titan` binary runs it (kit's runtime, its auth interceptor, the HTTP
//! port), fed from a file, and its ConfigMap source against a real API server when
//! `cargo xtask test` (or `cargo xtask kube up`) provides one.

mod grpc;
mod store;

use std::{collections::BTreeMap, path::Path};

use titan_kit::{config::Config, testing::Served};
use titan_router::domain::{BucketCount, CellEntry, CellName, Table, encoding, initial};

pub const SECRET: &str = "0123456789abcdef0123456789abcdef";

pub fn cells(names: &[&str]) -> Vec<CellEntry> {
    names
        .iter()
        .map(|n| CellEntry::new(CellName::parse(n).expect("valid name")))
        .collect()
}

/// Version 1 over `names`, 16,384 buckets.
pub fn table(names: &[&str]) -> Table {
    initial(BucketCount::default(), &cells(names)).expect("cells")
}

/// Writes `table` to `path` in one step (a rename), as a config-management tool would.
pub fn write(path: &Path, text: &str) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, text).expect("write the table");
    std::fs::rename(&staging, path).expect("rename the table into place");
}

pub fn write_table(path: &Path, table: &Table) {
    write(path, &encoding::encode(table));
}

/// The config of a router reading its table from `path` every 50 ms.
pub fn config(path: &Path) -> Config {
    let yaml = format!(
        "services:\n  router:\n    table:\n      file: {}\n      filePollMillis: 50\n",
        path.display()
    );
    let vars = BTreeMap::from([
        ("TITAN_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_AUTH_HS256_SECRET", SECRET.to_owned()),
    ]);
    Config::from_sources(Some(&yaml), move |name| vars.get(name).cloned()).expect("config")
}

/// `titan serve router` in process, reading its table from `path` every 50 ms.
pub async fn serve(path: &Path) -> Served {
    titan_kit::testing::serve(config(path), vec![titan_router::service()]).await
}

/// What the admin port's `/readyz` answers: status and body.
pub async fn readyz(served: &Served) -> (u16, String) {
    let response = reqwest::get(format!("http://{}/readyz", served.bound.admin))
        .await
        .expect("readyz");
    (
        response.status().as_u16(),
        response.text().await.expect("readyz body"),
    )
}

/// The value of a counter or gauge on the admin port's `/metrics`, 0 when absent.
pub async fn metric(served: &Served, series: &str) -> f64 {
    titan_kit::testing::metric(served.bound.admin, series).await
}
