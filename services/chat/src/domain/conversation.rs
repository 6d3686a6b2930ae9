//! Conversations: DIRECT (one per pair of users), GROUP (named; admins manage members, up to
//! a configured size) and SUPPORT (a buyer and the cell's support agents). Who participates,
//! and the names of groups.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::{auth::Caller, idempotency::composite};

use super::{ConversationId, InputError, MessageId, UserId};

/// The role of support agents: they take part in every SUPPORT conversation of the cell.
pub const AGENT_ROLE: &str = "agent";
/// Longest group or support conversation name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ConversationKind {
    Direct,
    Group,
    Support,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "DIRECT",
            Self::Group => "GROUP",
            Self::Support => "SUPPORT",
        }
    }

    /// The kind stored as `s`; `None` for anything else.
    pub fn from_stored(s: &str) -> Option<Self> {
        match s {
            "DIRECT" => Some(Self::Direct),
            "GROUP" => Some(Self::Group),
            "SUPPORT" => Some(Self::Support),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MemberRole {
    Member,
    Admin,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "MEMBER",
            Self::Admin => "ADMIN",
        }
    }

    pub fn from_stored(s: &str) -> Option<Self> {
        match s {
            "MEMBER" => Some(Self::Member),
            "ADMIN" => Some(Self::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: UserId,
    pub role: MemberRole,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub created_by: UserId,
    pub members: Vec<Member>,
    pub created_at: DateTime<Utc>,
    pub last_message_id: Option<MessageId>,
}

impl Conversation {
    pub fn member(&self, user: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.user_id.as_str() == user)
    }

    /// Whether `caller` may read, write and subscribe: its members, and the cell's support
    /// agents in a SUPPORT conversation.
    pub fn admits(&self, caller: &Caller) -> bool {
        self.member(&caller.user_id).is_some()
            || (self.kind == ConversationKind::Support && caller.has_role(AGENT_ROLE))
    }

    pub fn is_admin(&self, user: &str) -> bool {
        self.member(user)
            .is_some_and(|m| m.role == MemberRole::Admin)
    }
}

/// The key that makes a DIRECT conversation unique per pair, whoever creates it: both ids,
/// sorted, joined without ambiguity.
pub fn direct_key(a: &UserId, b: &UserId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    composite(&[lo.as_str(), hi.as_str()])
}

/// A group or support conversation's name: 1 to 100 characters, no control characters,
/// trimmed.
pub fn parse_name(field: &'static str, s: &str) -> Result<String, InputError> {
    let name = s.trim();
    if name.is_empty() {
        return Err(InputError::new(field, "is empty"));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(InputError::new(
            field,
            format!("has {chars} characters; at most {MAX_NAME_CHARS} are allowed"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(InputError::new(field, "contains a control character"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse("user", s).expect("user")
    }

    proptest! {
        #[test]
        fn the_direct_key_is_the_same_from_both_sides(a in "[!-~]{1,20}", b in "[!-~]{1,20}") {
            prop_assert_eq!(direct_key(&user(&a), &user(&b)), direct_key(&user(&b), &user(&a)));
        }
    }

    #[test]
    fn direct_keys_of_different_pairs_differ() {
        assert_ne!(
            direct_key(&user("a|b"), &user("c")),
            direct_key(&user("a"), &user("b|c"))
        );
    }

    #[test]
    fn agents_take_part_in_support_conversations_only() {
        let now = Utc::now();
        let mut c = Conversation {
            id: ConversationId::new(),
            kind: ConversationKind::Support,
            name: Some("refund".into()),
            created_by: user("buyer"),
            members: vec![Member {
                user_id: user("buyer"),
                role: MemberRole::Admin,
                joined_at: now,
            }],
            created_at: now,
            last_message_id: None,
        };
        let agent = titan_kit::testing::caller("ann", &[AGENT_ROLE]);
        let stranger = titan_kit::testing::caller("eve", &[]);
        assert!(c.admits(&titan_kit::testing::caller("buyer", &[])));
        assert!(c.admits(&agent));
        assert!(!c.admits(&stranger));
        c.kind = ConversationKind::Group;
        assert!(!c.admits(&agent));
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(parse_name("name", "  Team  "), Ok("Team".into()));
        assert_eq!(
            parse_name("name", " "),
            Err(InputError::new("name", "is empty"))
        );
        assert!(parse_name("name", &"n".repeat(101)).is_err());
        assert!(parse_name("name", "a\u{7}").is_err());
    }
}
