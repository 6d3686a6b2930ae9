//! Object keys built from validated parts (`ObjectKey::new(["proofs", order_id, "photo.jpg"])`),
//! so no caller can reach outside its prefix with `..`, start a key with `/`, or smuggle control
//! characters into a key, a log line or a presigned URL.

use std::fmt;

/// S3's limit on a key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// The limit on one part: servers that keep objects as files (MinIO, s3s-fs) map parts to file
/// names, which most file systems cap at 255 bytes.
pub const MAX_PART_BYTES: usize = 255;
/// Characters AWS advises against in keys (they need escaping in URLs and break tools); `/` and
/// `\` are separators here or on a file-backed server.
const REFUSED: &[char] = &[
    '/', '\\', '{', '}', '^', '%', '`', '[', ']', '"', '<', '>', '~', '#', '|',
];

/// A valid key: its parts joined by `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Joins `parts` with `/` after checking each of them.
    pub fn new<I, S>(parts: I) -> Result<Self, InvalidKey>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut key = String::new();
        for (index, part) in parts.into_iter().enumerate() {
            let part = part.as_ref();
            if let Err(problem) = check_part(index + 1, part) {
                key.push_str(if index == 0 { "" } else { "/" });
                key.push_str(part);
                return Err(InvalidKey::new(&key, problem));
            }
            if index > 0 {
                key.push('/');
            }
            key.push_str(part);
        }
        Self::checked(key)
    }

    /// A key read back as one string (from a database row or a listing), checked like
    /// [`ObjectKey::new`] checks its parts.
    pub fn parse(key: &str) -> Result<Self, InvalidKey> {
        if key.starts_with('/') {
            return Err(InvalidKey::new(key, KeyProblem::LeadingSlash));
        }
        Self::new(key.split('/'))
    }

    /// The key under this one: `self/part`.
    pub fn child(&self, part: &str) -> Result<Self, InvalidKey> {
        Self::new(self.0.split('/').chain([part]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn checked(key: String) -> Result<Self, InvalidKey> {
        if key.is_empty() {
            return Err(InvalidKey::new(&key, KeyProblem::NoParts));
        }
        if key.len() > MAX_KEY_BYTES {
            let problem = KeyProblem::TooLong { bytes: key.len() };
            return Err(InvalidKey::new(&key, problem));
        }
        Ok(Self(key))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_part(position: usize, part: &str) -> Result<(), KeyProblem> {
    if part.is_empty() {
        return Err(if position == 1 {
            KeyProblem::LeadingSlash
        } else {
            KeyProblem::EmptyPart { position }
        });
    }
    if part == "." || part == ".." {
        return Err(KeyProblem::DotPart { position });
    }
    if part.len() > MAX_PART_BYTES {
        return Err(KeyProblem::PartTooLong {
            position,
            bytes: part.len(),
        });
    }
    if let Some(c) = part.chars().find(|c| c.is_control()) {
        return Err(KeyProblem::ControlCharacter {
            position,
            character: c,
        });
    }
    if let Some(c) = part.chars().find(|c| REFUSED.contains(c)) {
        return Err(KeyProblem::RefusedCharacter {
            position,
            character: c,
        });
    }
    Ok(())
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    NoParts,
    LeadingSlash,
    EmptyPart { position: usize },
    DotPart { position: usize },
    ControlCharacter { position: usize, character: char },
    RefusedCharacter { position: usize, character: char },
    PartTooLong { position: usize, bytes: usize },
    TooLong { bytes: usize },
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoParts => write!(f, "a key needs at least one part"),
            Self::LeadingSlash => write!(f, "a key may not start with '/' or an empty part"),
            Self::EmptyPart { position } => write!(f, "part {position} is empty"),
            Self::DotPart { position } => {
                write!(
                    f,
                    "part {position} is '.' or '..', which could leave its prefix"
                )
            }
            Self::ControlCharacter {
                position,
                character,
            } => write!(
                f,
                "part {position} holds the control character U+{:04X}",
                u32::from(*character)
            ),
            Self::RefusedCharacter {
                position,
                character,
            } => write!(
                f,
                "part {position} holds {character:?}, which keys may not hold"
            ),
            Self::PartTooLong { position, bytes } => write!(
                f,
                "part {position} is {bytes} bytes long, more than {MAX_PART_BYTES}"
            ),
            Self::TooLong { bytes } => {
                write!(
                    f,
                    "the key is {bytes} bytes long, more than {MAX_KEY_BYTES}"
                )
            }
        }
    }
}

/// A refused key, shown escaped and cut short so it is safe in a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key {shown}: {problem}")]
pub struct InvalidKey {
    shown: String,
    pub problem: KeyProblem,
}

impl InvalidKey {
    fn new(key: &str, problem: KeyProblem) -> Self {
        const SHOWN_CHARS: usize = 80;
        let mut cut: String = key.chars().take(SHOWN_CHARS).collect();
        if cut.len() < key.len() {
            cut.push('…');
        }
        Self {
            shown: format!("{cut:?}"),
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn problem(parts: &[&str]) -> KeyProblem {
        ObjectKey::new(parts).expect_err("refused").problem
    }

    #[test]
    fn joins_valid_parts() {
        let key = ObjectKey::new(["proofs", "0195f3c2-7b1e", "photo.jpg"]).expect("valid");
        assert_eq!(key.as_str(), "proofs/0195f3c2-7b1e/photo.jpg");
        assert_eq!(
            ObjectKey::parse("proofs/0195f3c2-7b1e/photo.jpg"),
            Ok(key.clone())
        );
        assert_eq!(
            key.child("thumb.jpg").map(|k| k.to_string()).as_deref(),
            Ok("proofs/0195f3c2-7b1e/photo.jpg/thumb.jpg")
        );
        assert!(
            ObjectKey::new(["reçus", "été 2026.pdf"]).is_ok(),
            "unicode and spaces"
        );
    }

    #[test]
    fn refuses_each_kind_of_bad_key() {
        assert_eq!(problem(&[]), KeyProblem::NoParts);
        assert_eq!(problem(&["", "etc", "passwd"]), KeyProblem::LeadingSlash);
        assert_eq!(
            ObjectKey::parse("/etc/passwd")
                .expect_err("refused")
                .problem,
            KeyProblem::LeadingSlash
        );
        assert_eq!(
            problem(&["proofs", "", "x"]),
            KeyProblem::EmptyPart { position: 2 }
        );
        assert_eq!(
            problem(&["proofs", "..", "labels"]),
            KeyProblem::DotPart { position: 2 }
        );
        assert_eq!(problem(&["."]), KeyProblem::DotPart { position: 1 });
        assert_eq!(
            problem(&["proofs", "a\nb"]),
            KeyProblem::ControlCharacter {
                position: 2,
                character: '\n'
            }
        );
        assert_eq!(
            problem(&["proofs", "a/b"]),
            KeyProblem::RefusedCharacter {
                position: 2,
                character: '/'
            }
        );
        assert_eq!(
            problem(&["a\\..\\b"]),
            KeyProblem::RefusedCharacter {
                position: 1,
                character: '\\'
            }
        );
        assert_eq!(
            problem(&["x", &"a".repeat(256)]),
            KeyProblem::PartTooLong {
                position: 2,
                bytes: 256
            }
        );
        let long: Vec<String> = (0..5).map(|_| "a".repeat(250)).collect();
        assert_eq!(
            ObjectKey::new(&long).expect_err("refused").problem,
            KeyProblem::TooLong { bytes: 1254 }
        );
        assert!(ObjectKey::parse("proofs//x").is_err());
        assert!(
            ObjectKey::parse("proofs/x/").is_err(),
            "a trailing '/' is an empty part"
        );
    }

    #[test]
    fn messages_are_specific_and_escaped() {
        let err = ObjectKey::new(["proofs", "..", "x"]).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "invalid object key \"proofs/..\": part 2 is '.' or '..', which could leave its prefix"
        );
        let err = ObjectKey::new(["a\u{1b}[31m"]).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "invalid object key \"a\\u{1b}[31m\": part 1 holds the control character U+001B"
        );
        let err = ObjectKey::new([&"b".repeat(300)]).expect_err("refused");
        assert!(err.to_string().contains("…\""), "{err}");
        assert!(err.to_string().len() < 200, "{err}");
    }

    proptest! {
        /// Whatever a caller passes, an accepted key never climbs out of its prefix, never
        /// starts with '/', never holds a control character and never exceeds the limit.
        #[test]
        fn accepted_keys_are_safe(parts in prop::collection::vec(".{0,40}", 0..6)) {
            if let Ok(key) = ObjectKey::new(&parts) {
                let key = key.as_str();
                prop_assert!(!key.starts_with('/'));
                prop_assert!(!key.chars().any(char::is_control));
                prop_assert!(key.len() <= MAX_KEY_BYTES);
                prop_assert!(key.split('/').all(|p| !p.is_empty() && p != "." && p != ".."));
                prop_assert_eq!(key.split('/').count(), parts.len());
                prop_assert_eq!(ObjectKey::parse(key).map(|k| k.to_string()), Ok(key.to_owned()));
            }
        }

        #[test]
        fn plain_names_are_accepted(parts in prop::collection::vec("[a-z0-9][a-z0-9._-]{0,30}", 1..6)) {
            prop_assume!(parts.iter().all(|p| p != "." && p != ".."));
            let key = ObjectKey::new(&parts).expect("plain parts");
            prop_assert_eq!(key.as_str(), parts.join("/"));
        }
    }
}
