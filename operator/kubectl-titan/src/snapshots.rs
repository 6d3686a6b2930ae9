//! Output snapshots: each report of the fixtures, plain and as JSON, compared with the files in
//! `tests/snapshots/` (rewritten with `TITAN_BLESS=1`, then reviewed in the diff).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;
use titan_crds::Cell;

use crate::{
    Format,
    credentials::CredentialsReport,
    fixtures, serialize,
    status::{CellReport, CellRow, cells_table},
    style::Style,
};

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("TITAN_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap_or(&path)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{name} changed: review the output below and re-run with TITAN_BLESS=1\n{actual}"
    );
}

fn report(cell: &Cell) -> CellReport {
    CellReport::build(
        cell,
        &fixtures::services(),
        &fixtures::deployments(),
        &fixtures::events(),
    )
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serialize(value, Format::Json)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("JSON output"))
}

#[test]
fn status_of_a_degraded_cell() {
    let report = report(&fixtures::cell());
    check(
        "status-degraded.txt",
        &report.text(Style::PLAIN, fixtures::now()),
    );
    check("status-degraded.json", &json(&report));
}

#[test]
fn status_of_a_ready_cell() {
    let report = report(&fixtures::ready_cell());
    check(
        "status-ready.txt",
        &report.text(Style::PLAIN, fixtures::now()),
    );
}

#[test]
fn status_in_colour_differs_from_plain_only_by_escape_codes() {
    let report = report(&fixtures::cell());
    let coloured = report.text(Style::COLOUR, fixtures::now());
    assert!(coloured.contains("\x1b[31mDegraded\x1b[0m"), "{coloured}");
    let stripped = regex_free_strip(&coloured);
    assert_eq!(stripped, report.text(Style::PLAIN, fixtures::now()));
}

/// `text` without ANSI SGR sequences (`ESC [ ... m`).
fn regex_free_strip(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn the_table_of_cells() {
    let rows = vec![CellRow::of(&fixtures::cell()), {
        let mut ready = CellRow::of(&fixtures::ready_cell());
        ready.name = "eu-1".to_string();
        ready
    }];
    check("cells.txt", &cells_table(Style::PLAIN, &rows));
    check("cells.json", &json(&rows));
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.to_string());
    secret.data = Some(
        data.iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    k8s_openapi::ByteString(v.as_bytes().to_vec()),
                )
            })
            .collect(),
    );
    secret
}

fn live_secrets() -> Vec<Secret> {
    vec![
        secret(
            "dev-credentials",
            &[
                ("postgres-password", "pg-secret-value-0123456789abcdef"),
                ("auth-hs256-secret", "auth-secret-value-0123456789abcd"),
            ],
        ),
        secret(
            "dev-auth",
            &[(
                "TITAN_AUTH_HS256_SECRET",
                "auth-secret-value-0123456789abcd",
            )],
        ),
        // Not the cell's: never listed.
        secret("someone-else", &[("token", "unrelated")]),
    ]
}

#[test]
fn credentials_hide_values_unless_revealed() {
    let cell = fixtures::ready_cell();
    let hidden = CredentialsReport::build(&cell, &live_secrets(), false);
    let text = hidden.text(Style::PLAIN);
    let json_hidden = json(&hidden);
    for output in [&text, &json_hidden] {
        assert!(!output.contains("secret-value"), "{output}");
        assert!(!output.contains("someone-else"), "{output}");
    }
    check("credentials.txt", &text);
    check("credentials.json", &json_hidden);

    let revealed = CredentialsReport::build(&cell, &live_secrets(), true);
    let text = revealed.text(Style::PLAIN);
    assert!(text.contains("pg-secret-value-0123456789abcdef"), "{text}");
    check("credentials-revealed.txt", &text);
}
