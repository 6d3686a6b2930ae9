//! The person a privacy test exports or erases (`crate::privacy`): a user id made unique to the
//! test, and their subject with a pseudonym of the runtime's shape (`p_` and 32 hex digits) but
//! random, as a test of one service's handler needs no cell key.

use crate::privacy::Subject;

/// `user` with a fresh pseudonym.
pub fn subject(user: &str) -> Subject {
    Subject {
        user_id: user.to_owned(),
        pseudonym: format!("p_{}", uuid::Uuid::new_v4().simple()),
    }
}

/// `name` with a fresh uuid, so that no other test's rows or keys name it.
pub fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4())
}
