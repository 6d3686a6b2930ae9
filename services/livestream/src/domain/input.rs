//! Inputs parsed before any I/O: stream ids, titles, featured product lists, page sizes and
//! page tokens. Each refusal names the request field.

use std::fmt;

use chrono::{DateTime, Utc};
pub use titan_kit::input::InputError;
use uuid::Uuid;

/// The most characters in a title.
pub const MAX_TITLE_CHARS: usize = 200;
/// The most featured products of a stream at once.
pub const MAX_FEATURED: usize = 20;
/// The largest page of a list.
pub const MAX_PAGE: u32 = 100;

/// A stream's id: a UUID chosen by the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct StreamId(Uuid);

impl StreamId {
    /// A new time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        if s.is_empty() {
            return Err(InputError::new(field, "is required"));
        }
        Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| InputError::new(field, format!("{:?} is not a stream id", cut(s))))
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A string cut for an error message, so a huge input does not make a huge error.
pub(crate) fn cut(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Text a person typed: 1 to `max` characters, no control characters except `\n` when
/// `newlines`; surrounding whitespace is trimmed first.
pub(crate) fn text(field: &str, s: &str, max: usize, newlines: bool) -> Result<String, InputError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(InputError::new(field, "is required"));
    }
    let chars = s.chars().count();
    if chars > max {
        return Err(InputError::new(
            field,
            format!("has {chars} characters; at most {max} are allowed"),
        ));
    }
    if s.chars()
        .any(|c| c.is_control() && !(newlines && c == '\n'))
    {
        return Err(InputError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s.to_owned())
}

/// A stream's title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        text(field, s, MAX_TITLE_CHARS, false).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// When a stream may be scheduled: not before a day ago (a clock a little behind still
/// schedules "now"), not beyond a year ahead.
pub fn scheduled_at(
    field: &str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, InputError> {
    if at < now - chrono::Duration::days(1) {
        return Err(InputError::new(field, "is more than a day in the past"));
    }
    if at > now + chrono::Duration::days(366) {
        return Err(InputError::new(field, "is more than a year ahead"));
    }
    Ok(at)
}

/// The featured products of a stream: distinct ids, at most [`MAX_FEATURED`], in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductIds(Vec<String>);

impl ProductIds {
    pub fn parse(field: &str, ids: &[String]) -> Result<Self, InputError> {
        if ids.len() > MAX_FEATURED {
            return Err(InputError::new(
                field,
                format!("has {} ids; at most {MAX_FEATURED} are allowed", ids.len()),
            ));
        }
        let mut out: Vec<String> = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let id = titan_kit::input::ident(format!("{field}[{i}]"), id)?;
            if out.iter().any(|seen| seen == id) {
                return Err(InputError::new(
                    format!("{field}[{i}]"),
                    format!("{id:?} is listed twice"),
                ));
            }
            out.push(id.to_owned());
        }
        Ok(Self(out))
    }

    /// Ids read back from the store, which only ever holds parsed lists.
    pub fn from_stored(ids: Vec<String>) -> Self {
        Self(ids)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// A page size: 0 takes `default`, above [`MAX_PAGE`] is refused.
pub fn page_size(field: &str, size: u32, default: u32) -> Result<u32, InputError> {
    match size {
        0 => Ok(default),
        1..=MAX_PAGE => Ok(size),
        _ => Err(InputError::new(
            field,
            format!("{size} is above the largest page of {MAX_PAGE}"),
        )),
    }
}

/// Where the next page starts: the id of the last item of the previous page (lists are in
/// id order, newest first, and ids are UUIDv7, so the order is time order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken(pub Option<Uuid>);

impl PageToken {
    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        if s.is_empty() {
            return Ok(Self(None));
        }
        Uuid::try_parse(s).map(|id| Self(Some(id))).map_err(|_| {
            InputError::new(
                field,
                format!("{:?} is not a page token of this list", cut(s)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_bounded_and_printable() {
        assert_eq!(
            Title::parse("title", "  Drop #4 ").expect("ok").as_str(),
            "Drop #4"
        );
        assert_eq!(
            Title::parse("title", " ").expect_err("refused").to_string(),
            "title: is required"
        );
        let long = "é".repeat(MAX_TITLE_CHARS + 1);
        assert_eq!(
            Title::parse("title", &long)
                .expect_err("refused")
                .to_string(),
            "title: has 201 characters; at most 200 are allowed"
        );
        assert!(Title::parse("title", &"é".repeat(MAX_TITLE_CHARS)).is_ok());
        assert_eq!(
            Title::parse("title", "a\nb")
                .expect_err("refused")
                .to_string(),
            "title: must not contain control characters"
        );
    }

    #[test]
    fn featured_products_are_distinct_bounded_idents() {
        let ids = |n: usize| (0..n).map(|i| format!("p{i}")).collect::<Vec<_>>();
        assert_eq!(
            ProductIds::parse("product_ids", &ids(20))
                .expect("ok")
                .as_slice()
                .len(),
            20
        );
        assert_eq!(
            ProductIds::parse("product_ids", &ids(21))
                .expect_err("refused")
                .to_string(),
            "product_ids: has 21 ids; at most 20 are allowed"
        );
        let twice = vec!["a".to_owned(), "b".to_owned(), "a".to_owned()];
        assert_eq!(
            ProductIds::parse("product_ids", &twice)
                .expect_err("refused")
                .to_string(),
            "product_ids[2]: \"a\" is listed twice"
        );
        let spaced = vec!["a b".to_owned()];
        assert_eq!(
            ProductIds::parse("product_ids", &spaced)
                .expect_err("refused")
                .field,
            "product_ids[0]"
        );
    }

    #[test]
    fn page_sizes_and_tokens() {
        assert_eq!(page_size("page_size", 0, 20).expect("ok"), 20);
        assert_eq!(page_size("page_size", 100, 20).expect("ok"), 100);
        assert_eq!(
            page_size("page_size", 101, 20)
                .expect_err("refused")
                .to_string(),
            "page_size: 101 is above the largest page of 100"
        );
        assert_eq!(
            PageToken::parse("page_token", "").expect("ok"),
            PageToken(None)
        );
        assert!(PageToken::parse("page_token", "zzz").is_err());
    }

    #[test]
    fn schedule_window() {
        let now = Utc::now();
        assert!(scheduled_at("scheduled_at", now, now).is_ok());
        assert!(scheduled_at("scheduled_at", now - chrono::Duration::hours(25), now).is_err());
        assert!(scheduled_at("scheduled_at", now + chrono::Duration::days(367), now).is_err());
    }

    #[test]
    fn stream_ids() {
        let id = StreamId::generate();
        assert_eq!(
            StreamId::parse("stream_id", &id.to_string()).expect("ok"),
            id
        );
        assert_eq!(
            StreamId::parse("stream_id", "")
                .expect_err("refused")
                .to_string(),
            "stream_id: is required"
        );
        assert_eq!(
            StreamId::parse("stream_id", "nope")
                .expect_err("refused")
                .to_string(),
            "stream_id: \"nope\" is not a stream id"
        );
    }
}
