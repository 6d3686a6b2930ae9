//! Draws a [`LabelLayout`] as a one-page PDF of 4×6 in: the standard Helvetica fonts (no font
//! file to embed, so a label is a few kilobytes), the text in WinAnsi encoding — the layout has
//! already replaced what that cannot show — and each bar a filled rectangle.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};

use crate::domain::label::{HEIGHT_PT, LabelLayout, WIDTH_PT};

/// The media type labels are stored with.
pub const CONTENT_TYPE: &str = "application/pdf";

/// WinAnsi bytes of `s`: the layout keeps to printable Latin-1, whose code points are the
/// WinAnsi bytes of the same characters.
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

/// The PDF bytes of `layout`.
pub fn render(layout: &LabelLayout) -> Vec<u8> {
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let page = Ref::new(3);
    let regular = Ref::new(4);
    let bold = Ref::new(5);
    let contents = Ref::new(6);
    let (regular_name, bold_name) = (Name(b"F1"), Name(b"F2"));

    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids([page]).count(1);
    let mut p = pdf.page(page);
    p.media_box(Rect::new(0.0, 0.0, WIDTH_PT, HEIGHT_PT));
    p.parent(tree);
    p.contents(contents);
    p.resources()
        .fonts()
        .pair(regular_name, regular)
        .pair(bold_name, bold);
    p.finish();
    for (id, base) in [
        (regular, Name(b"Helvetica")),
        (bold, Name(b"Helvetica-Bold")),
    ] {
        pdf.type1_font(id)
            .base_font(base)
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }

    let mut c = Content::new();
    for bar in &layout.bars {
        c.rect(bar.x, bar.y, bar.width, bar.height);
    }
    c.fill_nonzero();
    for t in &layout.texts {
        let bytes = win_ansi(&t.text);
        c.begin_text();
        c.set_font(if t.bold { bold_name } else { regular_name }, t.size);
        c.next_line(t.x, t.y);
        c.show(Str(&bytes));
        c.end_text();
    }
    pdf.stream(contents, &c.finish());
    pdf.finish()
}
