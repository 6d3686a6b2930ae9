//! The shipping label's layout, pure: a 4×6 in page (288×432 pt) with the sender, the
//! recipient, the carrier and service level, and the tracking number as a Code 128 symbol with
//! its human-readable line. The layout is a list of text runs and filled bars in points from
//! the bottom-left corner, so it is tested here and only drawn by `crate::label`.

use barcoders::sym::code128::Code128;

use super::{Address, ServiceLevel, TrackingNumber};

/// Page width: 4 in.
pub const WIDTH_PT: f32 = 288.0;
/// Page height: 6 in.
pub const HEIGHT_PT: f32 = 432.0;
/// Margin around everything printed.
pub const MARGIN_PT: f32 = 18.0;
/// Edge left blank beside the symbol's quiet zones: the symbol may use more of the width than
/// the text, so a 24-character tracking number still gets modules of 0.85 pt.
pub const SYMBOL_EDGE_PT: f32 = 8.0;
/// Quiet zone on each side of the symbol, in modules (the standard asks for 10).
pub const QUIET_MODULES: usize = 10;
/// Height of the bars: well over the 15% of the symbol's width the standard asks for.
pub const BAR_HEIGHT_PT: f32 = 90.0;
/// Widest module; short tracking numbers would otherwise print a symbol wider than needed.
pub const MAX_MODULE_PT: f32 = 1.5;

/// A line of text: `x`, `y` of its baseline's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    pub x: f32,
    pub y: f32,
    pub size: f32,
    pub bold: bool,
    pub text: String,
}

/// A filled rectangle: one bar of the symbol, or a rule between the label's sections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

/// Everything printed on one label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelLayout {
    pub texts: Vec<Text>,
    pub bars: Vec<Bar>,
    /// The symbol's modules, dark = true, start to stop character.
    pub modules: Vec<bool>,
    /// Width of one module.
    pub module_pt: f32,
}

/// The Code 128 modules of `tracking` (code set B, which holds every letter and digit):
/// start character, data, modulo-103 check character and stop pattern.
pub fn code128_modules(tracking: &TrackingNumber) -> Result<Vec<bool>, String> {
    let symbol = Code128::new(format!("\u{0181}{tracking}"))
        .map_err(|e| format!("cannot encode {tracking} as Code 128: {e}"))?;
    Ok(symbol.encode().into_iter().map(|m| m == 1).collect())
}

/// What the standard Helvetica of a PDF can show: Latin-1 printable characters; anything
/// else is printed as `?` rather than dropped, so a line keeps its length.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if (' '..='~').contains(&c) || ('\u{A0}'..='\u{FF}').contains(&c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn address_lines(a: &Address) -> Vec<String> {
    let mut lines = vec![a.name.clone(), a.line1.clone()];
    if !a.line2.is_empty() {
        lines.push(a.line2.clone());
    }
    lines.push(format!("{} {}", a.postcode, a.city));
    lines.push(a.country.clone());
    lines
}

impl LabelLayout {
    /// Lays out a label. Fails only when the tracking number cannot be encoded, which a
    /// checked [`TrackingNumber`] always can.
    pub fn new(
        from: &Address,
        to: &Address,
        carrier: &str,
        level: ServiceLevel,
        tracking: &TrackingNumber,
    ) -> Result<Self, String> {
        let mut texts = Vec::new();
        let mut bars = Vec::new();
        let mut text = |x: f32, y: f32, size: f32, bold: bool, s: &str| {
            texts.push(Text {
                x,
                y,
                size,
                bold,
                text: printable(s),
            })
        };
        let rule = |y: f32| Bar {
            x: MARGIN_PT,
            y,
            width: WIDTH_PT - 2.0 * MARGIN_PT,
            height: 1.0,
        };

        // Sender, small, at the top.
        let mut y = HEIGHT_PT - MARGIN_PT - 8.0;
        text(MARGIN_PT, y, 7.0, true, "FROM");
        for line in address_lines(from) {
            y -= 10.0;
            text(MARGIN_PT, y, 9.0, false, &line);
        }
        y -= 10.0;
        bars.push(rule(y));

        // Recipient, large.
        y -= 14.0;
        text(MARGIN_PT, y, 8.0, true, "SHIP TO");
        for (i, line) in address_lines(to).into_iter().enumerate() {
            y -= 17.0;
            text(MARGIN_PT, y, 14.0, i == 0, &line);
        }
        y -= 12.0;
        bars.push(rule(y));

        // Carrier and service level.
        y -= 26.0;
        text(MARGIN_PT, y, 20.0, true, level.as_str());
        text(MARGIN_PT + 150.0, y, 12.0, false, carrier);
        y -= 12.0;
        bars.push(rule(y));

        // The symbol, centred, with its quiet zones inside the margins.
        let modules = code128_modules(tracking)?;
        let available = WIDTH_PT - 2.0 * SYMBOL_EDGE_PT;
        let module_pt = (available / (modules.len() + 2 * QUIET_MODULES) as f32).min(MAX_MODULE_PT);
        let start = (WIDTH_PT - module_pt * modules.len() as f32) / 2.0;
        let bar_y = MARGIN_PT + 30.0;
        let mut i = 0;
        while i < modules.len() {
            if modules[i] {
                let run = modules[i..].iter().take_while(|&&m| m).count();
                bars.push(Bar {
                    x: start + module_pt * i as f32,
                    y: bar_y,
                    width: module_pt * run as f32,
                    height: BAR_HEIGHT_PT,
                });
                i += run;
            } else {
                i += 1;
            }
        }
        text(
            MARGIN_PT,
            bar_y + BAR_HEIGHT_PT + 10.0,
            8.0,
            true,
            "TRACKING",
        );
        text(
            WIDTH_PT / 2.0 - 4.2 * tracking.as_str().len() as f32,
            MARGIN_PT + 10.0,
            14.0,
            true,
            tracking.as_str(),
        );
        Ok(Self {
            texts,
            bars,
            modules,
            module_pt,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::address::tests::address;

    fn layout(tracking: &str) -> LabelLayout {
        let mut to = address("SG", "530123");
        to.name = "Zoë Tan 陳".into();
        LabelLayout::new(
            &address("SG", "098585"),
            &to,
            "flat-rate",
            ServiceLevel::Express,
            &TrackingNumber::parse("t", tracking).expect("valid"),
        )
        .expect("laid out")
    }

    #[test]
    fn code128_of_a_known_value() {
        // "Ɓ" + "A": START-B (104), A (33), check (104 + 33) % 103 = 34, STOP.
        let modules = code128_modules(&TrackingNumber::parse("t", "ABCDEF").expect("valid"))
            .expect("encoded");
        let s: String = modules.iter().map(|&m| if m { '1' } else { '0' }).collect();
        // START-B 11010010000, then A 10100011000 ... stop 1100011101011.
        assert!(s.starts_with("1101001000010100011000"), "{s}");
        assert!(s.ends_with("1100011101011"), "{s}");
        // Start, 6 data, check: 11 modules each, and 13 for the stop.
        assert_eq!(modules.len(), 8 * 11 + 13);
    }

    #[test]
    fn the_label_has_every_line_and_a_centred_symbol() {
        let l = layout("FR0123456789ABCD");
        let texts: Vec<&str> = l.texts.iter().map(|t| t.text.as_str()).collect();
        for expected in [
            "FROM",
            "SHIP TO",
            "Zoë Tan ?",
            "530123 Singapore",
            "EXPRESS",
            "flat-rate",
            "FR0123456789ABCD",
        ] {
            assert!(
                texts.contains(&expected),
                "{expected:?} missing from {texts:?}"
            );
        }
        let symbol: Vec<&Bar> = l
            .bars
            .iter()
            .filter(|b| b.height == BAR_HEIGHT_PT)
            .collect();
        let left = symbol.first().expect("bars").x;
        let right = symbol.last().map(|b| b.x + b.width).expect("bars");
        assert!(
            (left - (WIDTH_PT - right)).abs() < 0.01,
            "{left} vs {right}"
        );
        assert!(left >= SYMBOL_EDGE_PT + QUIET_MODULES as f32 * l.module_pt - 0.01);
    }

    proptest! {
        #[test]
        fn bars_cover_exactly_the_dark_modules(t in "[A-Z0-9]{6,24}") {
            let l = layout(&t);
            let dark = l.modules.iter().filter(|&&m| m).count() as f32;
            let inked: f32 = l.bars.iter().filter(|b| b.height == BAR_HEIGHT_PT).map(|b| b.width).sum();
            prop_assert!((inked - dark * l.module_pt).abs() < 0.01);
            // 11 modules per character (start, data, check) and 13 for the stop.
            prop_assert_eq!(l.modules.len(), (t.len() + 2) * 11 + 13);
            prop_assert!(l.module_pt >= 0.85);
            for b in &l.bars {
                let edge = SYMBOL_EDGE_PT + QUIET_MODULES as f32 * l.module_pt - 0.01;
                let (edge, width) = if b.height == BAR_HEIGHT_PT { (edge, WIDTH_PT) } else { (MARGIN_PT, WIDTH_PT) };
                prop_assert!(b.x >= edge && b.x + b.width <= width - edge + 0.01);
            }
        }
    }
}
