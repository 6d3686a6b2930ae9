//! Chat rules, pure: ids, conversations and their participants, message types with their
//! validated content and metadata, the edit window, receipt markers and the event a sent
//! message publishes. No I/O.

pub mod conversation;
pub mod ids;
pub mod message;
pub mod receipt;

pub use conversation::{Conversation, ConversationKind, Member, MemberRole, direct_key};
pub use ids::{ConversationId, InputError, MessageId, UserId};
pub use message::{
    Content, Limits, Message, MessageKind, MessageSent, Metadata, check_edit, next_message_id,
};
pub use receipt::{Markers, Receipt, Typing};

/// The service's name: its migrations, its stream and its config section.
pub const SERVICE: &str = "chat";
/// Published for every message sent by a user (not for SYSTEM messages).
pub const MESSAGE_SENT: &str = "chat.message_sent";

/// The hub topic of a conversation's live events, on every replica.
pub fn topic(conversation: ConversationId) -> String {
    format!("chat:{conversation}")
}
