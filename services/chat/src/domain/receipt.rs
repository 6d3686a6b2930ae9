//! Receipts, Matrix-style: per user and conversation, "delivered up to" and "read up to" a
//! message id. Markers only move forward, and reading a message means it was delivered. Also
//! the typing indicator a conversation's subscribers receive.

use serde::{Deserialize, Serialize};

use super::{ConversationId, MessageId, UserId};

/// A user's two markers in one conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Markers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_up_to: Option<MessageId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_up_to: Option<MessageId>,
}

impl Markers {
    /// The markers after a client reports `delivered` and `read`: each the later of the old
    /// and the new (ids sort by time), and delivered at least as far as read.
    pub fn advance(self, delivered: Option<MessageId>, read: Option<MessageId>) -> Self {
        let read = self.read_up_to.max(read);
        let delivered = self.delivered_up_to.max(delivered).max(read);
        Self {
            delivered_up_to: delivered,
            read_up_to: read,
        }
    }
}

/// A user's markers in a conversation, as subscribers and `GetReceipts` see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    #[serde(flatten)]
    pub markers: Markers,
}

/// Someone started or stopped typing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    pub typing: bool,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;

    fn id(n: u128) -> MessageId {
        MessageId::from_uuid(Uuid::from_u128(n))
    }

    #[test]
    fn reading_implies_delivery() {
        let m = Markers::default().advance(None, Some(id(5)));
        assert_eq!(m.delivered_up_to, Some(id(5)));
        assert_eq!(m.read_up_to, Some(id(5)));
    }

    proptest! {
        #[test]
        fn markers_never_move_back(
            steps in proptest::collection::vec((proptest::option::of(0u128..50), proptest::option::of(0u128..50)), 1..20)
        ) {
            let mut m = Markers::default();
            for (d, r) in steps {
                let next = m.advance(d.map(id), r.map(id));
                prop_assert!(next.delivered_up_to >= m.delivered_up_to);
                prop_assert!(next.read_up_to >= m.read_up_to);
                prop_assert!(next.delivered_up_to >= next.read_up_to);
                if let Some(r) = r { prop_assert!(next.read_up_to >= Some(id(r))); }
                m = next;
            }
        }
    }
}
