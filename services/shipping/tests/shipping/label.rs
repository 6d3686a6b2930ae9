//! A rendered label read back the way a warehouse scanner would: the PDF rasterised at
//! 203 dpi (a thermal label printer's resolution) with poppler's `pdftoppm`, the Code 128
//! symbol decoded with zbar's `zbarimg` to the tracking number.

use std::process::Command;

use titan_shipping::{
    domain::{Address, LabelLayout, ServiceLevel, TrackingNumber},
    label,
};

fn address(name: &str, postcode: &str) -> Address {
    Address {
        name: name.into(),
        line1: "1 Harbourfront Walk".into(),
        line2: "#02-01".into(),
        city: "Singapore".into(),
        postcode: postcode.into(),
        country: "SG".into(),
    }
}

/// Runs `program` with `args`; a missing program fails with how to install it.
fn run(program: &str, package: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install it with `apt-get install -y {package}`")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes the label of `tracking` and its 203 dpi raster into `dir`; returns the PNG path.
pub fn rasterise(dir: &std::path::Path, tracking: &str) -> std::path::PathBuf {
    let layout = LabelLayout::new(
        &address("Titan Shop", "098585"),
        &address("Zoë Tan", "530123"),
        "flat-rate",
        ServiceLevel::Express,
        &TrackingNumber::parse("tracking_number", tracking).expect("valid"),
    )
    .expect("laid out");
    rasterise_pdf(dir, tracking, &label::render(&layout))
}

/// Checks that `pdf` is one 4×6 in page, writes it and its 203 dpi raster into `dir` as
/// `<name>.pdf` and `<name>.png`; returns the PNG path.
pub fn rasterise_pdf(dir: &std::path::Path, name: &str, pdf: &[u8]) -> std::path::PathBuf {
    assert!(pdf.starts_with(b"%PDF-"));
    let pdf_path = dir.join(format!("{name}.pdf"));
    std::fs::write(&pdf_path, pdf).expect("write the pdf");
    let info = run(
        "pdfinfo",
        "poppler-utils",
        &[pdf_path.to_str().expect("utf-8 path")],
    );
    let info = info.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        info.contains("Page size: 288 x 432 pts"),
        "not 4×6 in: {info}"
    );
    let stem = dir.join(name);
    run(
        "pdftoppm",
        "poppler-utils",
        &[
            "-r",
            "203",
            "-png",
            "-singlefile",
            pdf_path.to_str().expect("utf-8 path"),
            stem.to_str().expect("utf-8 path"),
        ],
    );
    stem.with_extension("png")
}

/// What zbarimg reads from the image at `png`, with the symbology (`CODE-128:...`).
pub fn scan(png: &std::path::Path) -> String {
    run(
        "zbarimg",
        "zbar-tools",
        &["--quiet", png.to_str().expect("utf-8 path")],
    )
    .trim_end()
    .to_owned()
}

#[test]
fn the_barcode_decodes_to_the_tracking_number() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The shortest, a typical and the longest tracking number.
    for tracking in ["FR0001", "FR7D3A9C0B12E4F5A6", "ABCDEFGHIJKLMNOPQRSTUVWX"] {
        let png = rasterise(dir.path(), tracking);
        let decoded = run(
            "zbarimg",
            "zbar-tools",
            &["--quiet", "--raw", png.to_str().expect("utf-8 path")],
        );
        assert_eq!(decoded.trim_end(), tracking);
        assert_eq!(scan(&png), format!("CODE-128:{tracking}"));
    }
    if let Some(keep) = std::env::var_os("TITAN_SHIPPING_KEEP_LABEL") {
        std::fs::copy(
            dir.path().join("FR7D3A9C0B12E4F5A6.png"),
            std::path::Path::new(&keep),
        )
        .expect("keep the label");
    }
}
