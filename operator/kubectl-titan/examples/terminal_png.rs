//! Draws a terminal capture with ANSI colours (`tmux capture-pane -e -p`) as a PNG, for the
//! screenshot in docs/kubectl.md: the workspace's own PNG stack (plotters and the embedded
//! DejaVu Sans Mono, as the benchmark figures use), so no browser or image tool is needed.
//!
//! `cargo run -p kubectl-titan --example terminal_png -- capture.ansi docs/kubectl-status.png`

use std::process::ExitCode;

use plotters::{
    backend::BitMapBackend,
    prelude::*,
    style::{FontStyle, RGBColor, register_font},
};

/// Pixel size of the font and of one character cell.
const FONT_PX: f64 = 15.0;
const CELL_W: i32 = 9;
const CELL_H: i32 = 19;
const MARGIN: i32 = 14;

const BACKGROUND: RGBColor = RGBColor(30, 30, 36);
const FOREGROUND: RGBColor = RGBColor(220, 220, 220);

/// The colour of SGR code 30–37 (and 90–97, brighter).
fn palette(index: u8, bright: bool) -> RGBColor {
    let normal = [
        RGBColor(40, 40, 40),
        RGBColor(230, 90, 90),
        RGBColor(120, 200, 110),
        RGBColor(225, 190, 90),
        RGBColor(100, 150, 235),
        RGBColor(200, 120, 220),
        RGBColor(90, 200, 210),
        RGBColor(220, 220, 220),
    ];
    let RGBColor(r, g, b) = normal[usize::from(index % 8)];
    if bright {
        RGBColor(
            r.saturating_add(30),
            g.saturating_add(30),
            b.saturating_add(30),
        )
    } else {
        RGBColor(r, g, b)
    }
}

/// How the characters that follow are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pen {
    colour: RGBColor,
    bold: bool,
    dim: bool,
}

const PLAIN: Pen = Pen {
    colour: FOREGROUND,
    bold: false,
    dim: false,
};

impl Pen {
    /// The pen after SGR parameters `codes` (`1;32`).
    fn apply(mut self, codes: &str) -> Self {
        for code in codes.split(';') {
            match code.parse::<u8>().unwrap_or(0) {
                0 => self = PLAIN,
                1 => self.bold = true,
                2 => self.dim = true,
                22 => (self.bold, self.dim) = (false, false),
                39 => self.colour = FOREGROUND,
                c @ 30..=37 => self.colour = palette(c - 30, false),
                c @ 90..=97 => self.colour = palette(c - 90, true),
                _ => {}
            }
        }
        self
    }

    fn ink(self) -> RGBColor {
        let RGBColor(r, g, b) = self.colour;
        if self.dim {
            RGBColor(r / 2 + 20, g / 2 + 20, b / 2 + 20)
        } else {
            self.colour
        }
    }
}

/// A line as runs of text with one pen each: `(column, pen, text)`.
fn runs(line: &str) -> Vec<(usize, Pen, String)> {
    let mut out = Vec::new();
    let (mut pen, mut column, mut text, mut start) = (PLAIN, 0, String::new(), 0);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            let codes: String = chars.by_ref().take_while(|c| *c != 'm').collect();
            if !text.is_empty() {
                out.push((start, pen, std::mem::take(&mut text)));
            }
            pen = pen.apply(&codes);
            start = column;
            continue;
        }
        if text.is_empty() {
            start = column;
        }
        text.push(c);
        column += 1;
    }
    if !text.is_empty() {
        out.push((start, pen, text));
    }
    out
}

fn draw(capture: &str, path: &str) -> Result<(), Box<dyn std::error::Error>> {
    register_font("monospace", FontStyle::Normal, dejavu::sans_mono::regular())
        .map_err(|_| "cannot load the regular font")?;
    register_font("monospace", FontStyle::Bold, dejavu::sans_mono::bold())
        .map_err(|_| "cannot load the bold font")?;
    let lines: Vec<&str> = capture.trim_end().lines().collect();
    let columns = lines
        .iter()
        .map(|l| {
            runs(l)
                .iter()
                .map(|(c, _, t)| c + t.chars().count())
                .max()
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0);
    let width = u32::try_from(2 * MARGIN + CELL_W * i32::try_from(columns)?)?;
    let height = u32::try_from(2 * MARGIN + CELL_H * i32::try_from(lines.len())?)?;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&BACKGROUND)?;
    for (row, line) in lines.iter().enumerate() {
        let y = MARGIN + CELL_H * i32::try_from(row)?;
        for (column, pen, text) in runs(line) {
            // One character per cell, so columns stay aligned whatever the font's advance.
            for (i, c) in text.chars().enumerate() {
                if c == ' ' {
                    continue;
                }
                let weight = if pen.bold {
                    FontStyle::Bold
                } else {
                    FontStyle::Normal
                };
                let style = ("monospace", FONT_PX, weight).into_font().color(&pen.ink());
                let x = MARGIN + CELL_W * i32::try_from(column + i)?;
                root.draw_text(&c.to_string(), &style, (x, y))?;
            }
        }
    }
    root.present()?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: terminal_png <capture.ansi> <out.png>");
        return ExitCode::FAILURE;
    };
    let result = std::fs::read_to_string(input)
        .map_err(|e| format!("cannot read {input}: {e}").into())
        .and_then(|capture| draw(&capture, output));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terminal_png: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_keep_columns_and_colours() {
        let line = "ab\x1b[32mok\x1b[0m  \x1b[1mX";
        let runs = runs(line);
        assert_eq!(runs.len(), 4, "{runs:?}");
        assert_eq!((runs[0].0, runs[0].2.as_str()), (0, "ab"));
        assert_eq!((runs[1].0, runs[1].2.as_str()), (2, "ok"));
        assert_eq!(runs[1].1.colour, palette(2, false));
        assert_eq!((runs[2].0, runs[2].1), (4, PLAIN));
        assert_eq!((runs[3].0, runs[3].1.bold), (6, true));
    }
}
