//! Proofs of delivery: the recipient's name and a photo, a signature or both, each checked
//! for size and content type before it is uploaded to object storage. The declared content
//! type must match the file's leading bytes, so a client cannot store an arbitrary file under
//! an image type that a browser would then render.

use super::InputError;

/// Largest photo, in bytes (a phone camera JPEG at full resolution fits).
pub const MAX_PHOTO_BYTES: usize = 10 * 1024 * 1024;
/// Largest signature, in bytes (a signature is strokes on a small canvas).
pub const MAX_SIGNATURE_BYTES: usize = 1024 * 1024;
/// Longest recipient name, in characters.
pub const MAX_RECIPIENT_CHARS: usize = 100;

/// What an attachment shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentKind {
    Photo,
    Signature,
}

impl AttachmentKind {
    /// The request field it arrives in.
    pub fn field(self) -> &'static str {
        match self {
            Self::Photo => "photo",
            Self::Signature => "signature",
        }
    }

    fn max_bytes(self) -> usize {
        match self {
            Self::Photo => MAX_PHOTO_BYTES,
            Self::Signature => MAX_SIGNATURE_BYTES,
        }
    }

    /// The content types accepted: camera formats for photos, raster or vector drawings for
    /// signatures.
    pub fn content_types(self) -> &'static [&'static str] {
        match self {
            Self::Photo => &["image/jpeg", "image/png", "image/webp"],
            Self::Signature => &["image/png", "image/svg+xml"],
        }
    }
}

/// Whether `bytes` start the way files of `content_type` do.
fn looks_like(content_type: &str, bytes: &[u8]) -> bool {
    match content_type {
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/webp" => bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP",
        "image/svg+xml" => {
            let start = bytes
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(bytes.len());
            let head = &bytes[start..];
            head.starts_with(b"<svg") || head.starts_with(b"<?xml")
        }
        _ => false,
    }
}

/// A checked attachment, ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub kind: AttachmentKind,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Attachment {
    pub fn check(
        kind: AttachmentKind,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Self, InputError> {
        let field = kind.field();
        if bytes.is_empty() {
            return Err(InputError::new(format!("{field}.data"), "is empty"));
        }
        if bytes.len() > kind.max_bytes() {
            return Err(InputError::new(
                format!("{field}.data"),
                format!(
                    "has {} bytes; at most {} are allowed",
                    bytes.len(),
                    kind.max_bytes()
                ),
            ));
        }
        let content_type = content_type.trim().to_ascii_lowercase();
        if !kind.content_types().contains(&content_type.as_str()) {
            return Err(InputError::new(
                format!("{field}.content_type"),
                format!(
                    "{content_type:?} is not one of {}",
                    kind.content_types().join(", ")
                ),
            ));
        }
        if !looks_like(&content_type, &bytes) {
            return Err(InputError::new(
                format!("{field}.data"),
                format!("is not a {content_type} file"),
            ));
        }
        Ok(Self {
            kind,
            content_type,
            bytes,
        })
    }
}

/// A proof of delivery: who received it and what shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub recipient_name: String,
    pub photo: Option<Attachment>,
    pub signature: Option<Attachment>,
}

impl Proof {
    /// A recipient name (1 to 100 characters, no control characters) and at least one of a
    /// photo and a signature.
    pub fn new(
        recipient_name: &str,
        photo: Option<Attachment>,
        signature: Option<Attachment>,
    ) -> Result<Self, InputError> {
        let name = recipient_name.trim();
        if name.is_empty() {
            return Err(InputError::new("recipient_name", "is required"));
        }
        let chars = name.chars().count();
        if chars > MAX_RECIPIENT_CHARS {
            return Err(InputError::new(
                "recipient_name",
                format!("has {chars} characters; at most {MAX_RECIPIENT_CHARS} are allowed"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(InputError::new(
                "recipient_name",
                "contains a control character",
            ));
        }
        if photo.is_none() && signature.is_none() {
            return Err(InputError::new(
                "photo",
                "a photo or a signature is required",
            ));
        }
        Ok(Self {
            recipient_name: name.to_owned(),
            photo,
            signature,
        })
    }

    /// The attachments to upload, photo first.
    pub fn attachments(&self) -> impl Iterator<Item = &Attachment> {
        self.photo.iter().chain(self.signature.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10];

    fn photo() -> Attachment {
        Attachment::check(AttachmentKind::Photo, "image/jpeg", JPEG.to_vec()).expect("photo")
    }

    #[test]
    fn attachments_are_checked_for_size_type_and_content() {
        assert!(Attachment::check(AttachmentKind::Signature, " Image/PNG ", PNG.to_vec()).is_ok());
        let webp = b"RIFF\x24\0\0\0WEBPVP8 ".to_vec();
        assert!(Attachment::check(AttachmentKind::Photo, "image/webp", webp).is_ok());
        let svg = b"\n <svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec();
        assert!(Attachment::check(AttachmentKind::Signature, "image/svg+xml", svg.clone()).is_ok());
        let err =
            |k, ct: &str, b: Vec<u8>| Attachment::check(k, ct, b).map_err(|e| e.to_string()).err();
        assert_eq!(
            err(AttachmentKind::Photo, "image/svg+xml", svg),
            Some("photo.content_type: \"image/svg+xml\" is not one of image/jpeg, image/png, image/webp".into())
        );
        assert_eq!(
            err(AttachmentKind::Photo, "image/png", JPEG.to_vec()),
            Some("photo.data: is not a image/png file".into())
        );
        assert_eq!(
            err(AttachmentKind::Signature, "image/png", Vec::new()),
            Some("signature.data: is empty".into())
        );
        let mut big = PNG.to_vec();
        big.resize(MAX_SIGNATURE_BYTES + 1, 0);
        assert_eq!(
            err(AttachmentKind::Signature, "image/png", big.clone()),
            Some(format!(
                "signature.data: has {} bytes; at most {MAX_SIGNATURE_BYTES} are allowed",
                MAX_SIGNATURE_BYTES + 1
            ))
        );
        // The same bytes fit a photo's larger limit.
        assert!(Attachment::check(AttachmentKind::Photo, "image/png", big).is_ok());
        assert!(
            err(
                AttachmentKind::Photo,
                "image/webp",
                b"RIFF\0\0\0\0WAVE".to_vec()
            )
            .is_some()
        );
    }

    #[test]
    fn a_proof_needs_a_recipient_and_something_to_show() {
        let p = Proof::new(" Bo ", Some(photo()), None).expect("proof");
        assert_eq!(p.recipient_name, "Bo");
        assert_eq!(p.attachments().count(), 1);
        assert_eq!(
            Proof::new("Bo", None, None).map_err(|e| e.to_string()),
            Err("photo: a photo or a signature is required".into())
        );
        assert_eq!(
            Proof::new("", Some(photo()), None).map_err(|e| e.field),
            Err("recipient_name".into())
        );
        assert!(Proof::new(&"b".repeat(101), Some(photo()), None).is_err());
        assert!(Proof::new("B\u{1b}", Some(photo()), None).is_err());
        let sig =
            Attachment::check(AttachmentKind::Signature, "image/png", PNG.to_vec()).expect("sig");
        let both = Proof::new("Bo", Some(photo()), Some(sig)).expect("both");
        let kinds: Vec<_> = both.attachments().map(|a| a.kind).collect();
        assert_eq!(kinds, [AttachmentKind::Photo, AttachmentKind::Signature]);
    }
}
