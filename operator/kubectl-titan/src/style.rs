//! Colour and tables for people: ANSI colour only when stdout is a terminal (and `NO_COLOR` is
//! unset), so a pipe, a file or a script gets plain text with the same columns.

use std::fmt::Write as _;

/// A colour a piece of text is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    /// Good news: ready, true.
    Good,
    /// Moving or held: progressing, paused.
    Busy,
    /// Needs a person: degraded, errors, warnings.
    Bad,
    /// Deliberately off: stopped.
    Off,
    /// Less important detail.
    Dim,
    /// Headings and names.
    Bold,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Good => "32",
            Paint::Busy => "33",
            Paint::Bad => "31",
            Paint::Off => "34",
            Paint::Dim => "2",
            Paint::Bold => "1",
        }
    }
}

/// Whether output is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    colour: bool,
}

impl Style {
    /// Plain text: pipes, files, snapshots.
    pub const PLAIN: Style = Style { colour: false };
    /// ANSI colour.
    pub const COLOUR: Style = Style { colour: true };

    /// Colour when stdout is a terminal and `NO_COLOR` (no-color.org) is not set.
    pub fn for_stdout() -> Self {
        use std::io::IsTerminal;
        Style {
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// Whether this style colours.
    pub fn colours(self) -> bool {
        self.colour
    }

    /// `text` in `paint`, or as it is when plain.
    pub fn paint(self, paint: Option<Paint>, text: &str) -> String {
        match paint {
            Some(p) if self.colour => format!("\x1b[{}m{text}\x1b[0m", p.code()),
            _ => text.to_string(),
        }
    }
}

/// One cell of a table: its text and colour.
pub type Cell = (String, Option<Paint>);

/// Text with no colour.
pub fn plain(text: impl Into<String>) -> Cell {
    (text.into(), None)
}

/// Text in `paint`.
pub fn painted(text: impl Into<String>, paint: Paint) -> Cell {
    (text.into(), Some(paint))
}

/// Columns aligned on the widths of their text (colour codes take no width), two spaces
/// apart, each line indented by `indent`; the last column is not padded.
pub fn table(style: Style, indent: &str, header: &[&str], rows: &[Vec<Cell>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, (text, _)) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(text.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<Cell> = header.iter().map(|h| painted(*h, Paint::Dim)).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::from(indent);
        for (i, (text, paint)) in row.iter().enumerate().take(columns) {
            line.push_str(&style.paint(*paint, text));
            if i + 1 < row.len().min(columns) {
                let pad = widths[i] - text.chars().count() + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_text_and_colour_adds_no_width() {
        let rows = vec![
            vec![plain("flashsale"), painted("2/2", Paint::Good), plain("ok")],
            vec![plain("fraud"), painted("0/1", Paint::Bad), plain("")],
        ];
        let header = ["NAME", "READY", "NOTE"];
        assert_eq!(
            table(Style::PLAIN, "  ", &header, &rows),
            "  NAME       READY  NOTE\n  flashsale  2/2    ok\n  fraud      0/1\n"
        );
        let coloured = table(Style::COLOUR, "", &header, &rows);
        assert_eq!(
            coloured.lines().nth(1),
            Some("flashsale  \x1b[32m2/2\x1b[0m    ok")
        );
    }
}
