//! Messages: the six types, what each must carry (TEXT a text; IMAGE and FILE a URL in the
//! cell's object storage or https, a file name and size; PRODUCT and ORDER an id), the size
//! limit, time-ordered ids, the edit window, and the `chat.message_sent` payload.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ConversationId, ConversationKind, InputError, MessageId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MessageKind {
    Text,
    Image,
    File,
    Product,
    Order,
    /// Written by the service itself (members added or removed), never by a client.
    System,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "TEXT",
            Self::Image => "IMAGE",
            Self::File => "FILE",
            Self::Product => "PRODUCT",
            Self::Order => "ORDER",
            Self::System => "SYSTEM",
        }
    }

    /// The type a client named (`type` on both edges); unknown names are refused.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, InputError> {
        Self::from_stored(s).ok_or_else(|| {
            InputError::new(
                field,
                format!("{s:?} is not a message type (TEXT, IMAGE, FILE, PRODUCT, ORDER)"),
            )
        })
    }

    pub fn from_stored(s: &str) -> Option<Self> {
        match s {
            "TEXT" => Some(Self::Text),
            "IMAGE" => Some(Self::Image),
            "FILE" => Some(Self::File),
            "PRODUCT" => Some(Self::Product),
            "ORDER" => Some(Self::Order),
            "SYSTEM" => Some(Self::System),
            _ => None,
        }
    }
}

/// What IMAGE, FILE, PRODUCT and ORDER messages carry besides content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

impl Metadata {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The limits content is checked against (from the service's config and the cell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `chat.maxMessageBytes`.
    pub max_bytes: usize,
    /// The cell's object storage bucket, whose `s3://<bucket>/<key>` URLs are accepted.
    pub bucket: Option<String>,
}

/// Longest URL accepted.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest file name accepted, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 255;
/// Longest product or order id accepted.
pub const MAX_REF_ID_BYTES: usize = 64;

/// A message's validated content: its type, text and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    kind: MessageKind,
    text: String,
    metadata: Metadata,
}

/// Why content is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error("content: has {size} bytes; at most {max} are allowed (chat.maxMessageBytes)")]
    TooLarge { size: usize, max: usize },
    #[error("type: SYSTEM messages are written by the service only")]
    SystemOnly,
}

impl Content {
    /// Checks what a client sends: the type's required metadata, and nothing another type
    /// would carry, so a stored message never holds fields its type ignores.
    pub fn new(
        kind: MessageKind,
        text: &str,
        metadata: Metadata,
        limits: &Limits,
    ) -> Result<Self, ContentError> {
        if kind == MessageKind::System {
            return Err(ContentError::SystemOnly);
        }
        check_text(kind, text, limits)?;
        let Metadata {
            url,
            file_name,
            file_size,
            product_id,
            order_id,
        } = &metadata;
        let forbid = |field: &'static str, present: bool| {
            if present {
                Err(InputError::new(
                    field,
                    format!("is not allowed on {} messages", kind.as_str()),
                ))
            } else {
                Ok(())
            }
        };
        match kind {
            MessageKind::Text | MessageKind::System => {
                forbid("metadata", !metadata.is_empty())?;
            }
            MessageKind::Image | MessageKind::File => {
                check_url(url.as_deref().unwrap_or_default(), limits)?;
                check_file_name(file_name.as_deref().unwrap_or_default())?;
                match file_size {
                    Some(n) if *n > 0 => {}
                    _ => {
                        return Err(InputError::new("metadata.file_size", "must be at least 1"))?;
                    }
                }
                forbid("metadata.product_id", product_id.is_some())?;
                forbid("metadata.order_id", order_id.is_some())?;
            }
            MessageKind::Product => {
                check_ref("metadata.product_id", product_id.as_deref())?;
                forbid("metadata.url", url.is_some())?;
                forbid("metadata.file_name", file_name.is_some())?;
                forbid("metadata.file_size", file_size.is_some())?;
                forbid("metadata.order_id", order_id.is_some())?;
            }
            MessageKind::Order => {
                check_ref("metadata.order_id", order_id.as_deref())?;
                forbid("metadata.url", url.is_some())?;
                forbid("metadata.file_name", file_name.is_some())?;
                forbid("metadata.file_size", file_size.is_some())?;
                forbid("metadata.product_id", product_id.is_some())?;
            }
        }
        Ok(Self {
            kind,
            text: text.to_owned(),
            metadata,
        })
    }

    /// A message the service writes (`alice added bob`).
    pub fn system(text: String) -> Self {
        Self {
            kind: MessageKind::System,
            text,
            metadata: Metadata::default(),
        }
    }

    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}

/// TEXT needs text; the other types may carry a caption. Either way within the size limit and
/// without control characters other than line breaks and tabs.
pub fn check_text(kind: MessageKind, text: &str, limits: &Limits) -> Result<(), ContentError> {
    if kind == MessageKind::Text && text.trim().is_empty() {
        return Err(InputError::new("content", "is empty; a TEXT message needs text").into());
    }
    if text.len() > limits.max_bytes {
        return Err(ContentError::TooLarge {
            size: text.len(),
            max: limits.max_bytes,
        });
    }
    if let Some(pos) = text
        .chars()
        .position(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(InputError::new(
            "content",
            format!("contains a control character at position {pos}"),
        )
        .into());
    }
    Ok(())
}

fn check_url(url: &str, limits: &Limits) -> Result<(), InputError> {
    const FIELD: &str = "metadata.url";
    if url.is_empty() {
        return Err(InputError::new(
            FIELD,
            "is required on IMAGE and FILE messages",
        ));
    }
    if url.len() > MAX_URL_BYTES {
        return Err(InputError::new(
            FIELD,
            format!(
                "has {} bytes; at most {MAX_URL_BYTES} are allowed",
                url.len()
            ),
        ));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InputError::new(
            FIELD,
            "must be printable ASCII without spaces",
        ));
    }
    if let Some(rest) = url.strip_prefix("https://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') {
            return Err(InputError::new(FIELD, "has no host"));
        }
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        return match &limits.bucket {
            Some(ours) if ours == bucket && !key.is_empty() => Ok(()),
            Some(ours) if ours == bucket => Err(InputError::new(FIELD, "names no object key")),
            Some(ours) => Err(InputError::new(
                FIELD,
                format!("bucket {bucket:?} is not the cell's bucket {ours:?}"),
            )),
            None => Err(InputError::new(
                FIELD,
                "s3:// URLs need the cell's object storage, which is not configured",
            )),
        };
    }
    Err(InputError::new(
        FIELD,
        "must be an https:// URL or s3://<the cell's bucket>/<key>",
    ))
}

fn check_file_name(name: &str) -> Result<(), InputError> {
    const FIELD: &str = "metadata.file_name";
    if name.trim().is_empty() {
        return Err(InputError::new(
            FIELD,
            "is required on IMAGE and FILE messages",
        ));
    }
    let chars = name.chars().count();
    if chars > MAX_FILE_NAME_CHARS {
        return Err(InputError::new(
            FIELD,
            format!("has {chars} characters; at most {MAX_FILE_NAME_CHARS} are allowed"),
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(InputError::new(
            FIELD,
            "must not contain control characters or path separators",
        ));
    }
    Ok(())
}

fn check_ref(field: &'static str, id: Option<&str>) -> Result<(), InputError> {
    let id = id.unwrap_or_default();
    if id.is_empty() {
        return Err(InputError::new(field, "is required"));
    }
    if id.len() > MAX_REF_ID_BYTES || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InputError::new(
            field,
            format!("must be 1 to {MAX_REF_ID_BYTES} printable ASCII characters without spaces"),
        ));
    }
    Ok(())
}

/// A stored message. A deleted one keeps its id and place, with no content or metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    /// 1, 2, 3, … within the conversation, in id order with no holes: what a subscriber uses
    /// to see that it missed nothing.
    pub seq: i64,
    pub sender_id: UserId,
    #[serde(rename = "type")]
    pub kind: MessageKind,
    pub content: String,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    pub sent_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Why an edit is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditRefusal {
    #[error("message {0} was sent by another user; only its sender may change it")]
    NotTheSender(MessageId),
    #[error("message {id} was deleted at {at}")]
    Deleted { id: MessageId, at: DateTime<Utc> },
    #[error(
        "message {id} can no longer be edited: the edit window of {window_seconds} s closed at {closed_at}"
    )]
    WindowClosed {
        id: MessageId,
        window_seconds: i64,
        closed_at: DateTime<Utc>,
    },
    #[error("message {0} is a SYSTEM message, which nobody edits")]
    System(MessageId),
}

/// Whether `editor` may edit `message` at `now` with an edit window of `window`.
pub fn check_edit(
    message: &Message,
    editor: &str,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<(), EditRefusal> {
    if message.kind == MessageKind::System {
        return Err(EditRefusal::System(message.id));
    }
    if message.sender_id.as_str() != editor {
        return Err(EditRefusal::NotTheSender(message.id));
    }
    if let Some(at) = message.deleted_at {
        return Err(EditRefusal::Deleted { id: message.id, at });
    }
    let closes = message.sent_at + window;
    if now > closes {
        return Err(EditRefusal::WindowClosed {
            id: message.id,
            window_seconds: window.num_seconds(),
            closed_at: closes,
        });
    }
    Ok(())
}

/// The id of the next message of a conversation whose newest is `last`: `candidate` (a fresh
/// UUIDv7) unless the clock gave one that does not sort after `last` (same millisecond on
/// another replica, or a clock step back), then the next id after `last`. Ids so always
/// follow the order messages are stored in.
pub fn next_message_id(candidate: Uuid, last: Option<MessageId>) -> MessageId {
    match last {
        Some(last) if candidate <= last.uuid() => {
            MessageId::from_uuid(Uuid::from_u128(last.uuid().as_u128().wrapping_add(1)))
        }
        _ => MessageId::from_uuid(candidate),
    }
}

/// Payload of `chat.message_sent` v1: what analytics counts, never the content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSent {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub conversation_kind: ConversationKind,
    pub sender_id: UserId,
    pub message_type: MessageKind,
    pub content_bytes: usize,
    pub sent_at: DateTime<Utc>,
}

impl MessageSent {
    pub fn of(message: &Message, conversation_kind: ConversationKind) -> Self {
        Self {
            message_id: message.id,
            conversation_id: message.conversation_id,
            conversation_kind,
            sender_id: message.sender_id.clone(),
            message_type: message.kind,
            content_bytes: message.content.len(),
            sent_at: message.sent_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn limits() -> Limits {
        Limits {
            max_bytes: 16,
            bucket: Some("titan".into()),
        }
    }

    fn file(url: &str) -> Metadata {
        Metadata {
            url: Some(url.into()),
            file_name: Some("a.png".into()),
            file_size: Some(10),
            ..Metadata::default()
        }
    }

    fn field_of(r: Result<Content, ContentError>) -> Option<String> {
        match r {
            Err(ContentError::Invalid(e)) => Some(e.field),
            _ => None,
        }
    }

    #[test]
    fn text_needs_text_within_the_limit() {
        let l = limits();
        assert!(Content::new(MessageKind::Text, "hi", Metadata::default(), &l).is_ok());
        assert_eq!(
            field_of(Content::new(
                MessageKind::Text,
                " ",
                Metadata::default(),
                &l
            )),
            Some("content".into())
        );
        assert_eq!(
            Content::new(MessageKind::Text, &"x".repeat(17), Metadata::default(), &l),
            Err(ContentError::TooLarge { size: 17, max: 16 })
        );
        assert_eq!(
            field_of(Content::new(MessageKind::Text, "hi", file("https://x"), &l)),
            Some("metadata".into())
        );
        assert_eq!(
            Content::new(MessageKind::System, "x", Metadata::default(), &l),
            Err(ContentError::SystemOnly)
        );
    }

    #[test]
    fn files_need_an_https_or_cell_bucket_url_a_name_and_a_size() {
        let l = limits();
        assert!(
            Content::new(
                MessageKind::Image,
                "",
                file("https://cdn.example/a.png"),
                &l
            )
            .is_ok()
        );
        assert!(Content::new(MessageKind::File, "", file("s3://titan/chat/a.png"), &l).is_ok());
        for bad in [
            "http://cdn.example/a",
            "s3://other/a",
            "s3://titan/",
            "https:///a",
            "ftp://x",
        ] {
            assert_eq!(
                field_of(Content::new(MessageKind::File, "", file(bad), &l)),
                Some("metadata.url".into()),
                "{bad}"
            );
        }
        let mut m = file("https://cdn.example/a");
        m.file_size = Some(0);
        assert_eq!(
            field_of(Content::new(MessageKind::File, "", m, &l)),
            Some("metadata.file_size".into())
        );
        let mut m = file("https://cdn.example/a");
        m.file_name = Some("../etc/passwd".into());
        assert_eq!(
            field_of(Content::new(MessageKind::File, "", m, &l)),
            Some("metadata.file_name".into())
        );
    }

    #[test]
    fn product_and_order_need_their_id_only() {
        let l = limits();
        let product = Metadata {
            product_id: Some("sku-1".into()),
            ..Metadata::default()
        };
        assert!(Content::new(MessageKind::Product, "look", product.clone(), &l).is_ok());
        assert_eq!(
            field_of(Content::new(MessageKind::Order, "", product, &l)),
            Some("metadata.order_id".into())
        );
        let both = Metadata {
            order_id: Some("o-1".into()),
            url: Some("https://x/y".into()),
            ..Metadata::default()
        };
        assert_eq!(
            field_of(Content::new(MessageKind::Order, "", both, &l)),
            Some("metadata.url".into())
        );
        assert_eq!(
            MessageKind::parse("type", "VIDEO").map_err(|e| e.field),
            Err("type".into())
        );
    }

    fn message(sender: &str, sent_at: DateTime<Utc>) -> Message {
        Message {
            id: MessageId::from_uuid(Uuid::now_v7()),
            conversation_id: super::super::ConversationId::new(),
            seq: 1,
            sender_id: UserId::parse("u", sender).expect("user"),
            kind: MessageKind::Text,
            content: "hi".into(),
            metadata: Metadata::default(),
            sent_at,
            edited_at: None,
            deleted_at: None,
        }
    }

    #[test]
    fn only_the_sender_edits_within_the_window_and_not_once_deleted() {
        let t = Utc::now();
        let w = Duration::seconds(60);
        let mut m = message("alice", t);
        assert_eq!(
            check_edit(&m, "alice", t + Duration::seconds(60), w),
            Ok(())
        );
        assert!(matches!(
            check_edit(&m, "bob", t, w),
            Err(EditRefusal::NotTheSender(_))
        ));
        assert!(matches!(
            check_edit(&m, "alice", t + Duration::seconds(61), w),
            Err(EditRefusal::WindowClosed { .. })
        ));
        m.deleted_at = Some(t);
        assert!(matches!(
            check_edit(&m, "alice", t, w),
            Err(EditRefusal::Deleted { .. })
        ));
    }

    proptest! {
        #[test]
        fn message_ids_always_sort_after_the_last(candidate in any::<u128>(), last in any::<u128>()) {
            prop_assume!(last < u128::MAX);
            let last = MessageId::from_uuid(Uuid::from_u128(last));
            let next = next_message_id(Uuid::from_u128(candidate), Some(last));
            prop_assert!(next > last);
        }
    }
}
