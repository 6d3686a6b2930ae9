//! Object storage over the S3 protocol: the cell's bucket (proofs of delivery, shipping labels,
//! livestream recordings) through `object_store`'s S3 client. A service declares
//! [`Datastore::ObjectStorage`](crate::Datastore::ObjectStorage) and takes an [`ObjectStorage`]
//! from its context: put (in parts above a threshold), get (whole or streamed), head, delete,
//! bounded listings and presigned GET URLs, all under keys built from checked parts
//! ([`ObjectKey`]). Failures are [`ObjectError`]s that map to gRPC codes.

mod error;
mod key;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    Attribute, AttributeValue, Attributes, BackoffConfig, ClientOptions, GetOptions, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, RetryConfig, WriteMultipart,
    aws::{AmazonS3, AmazonS3Builder},
    list::{PaginatedListOptions, PaginatedListStore},
    path::Path,
    signer::{Method, Signer},
};
use secrecy::ExposeSecret;

pub use error::ObjectError;
pub use key::{InvalidKey, KeyProblem, MAX_KEY_BYTES, MAX_PART_BYTES, ObjectKey};

use crate::{KitError, config::ObjectStorageConfig};
use error::Call;

/// The longest a presigned URL may live: SigV4's own limit (7 days).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest: a URL must outlive the round trip to the browser that uses it.
pub const MIN_PRESIGN_EXPIRY: Duration = Duration::from_secs(1);
/// The most objects one listing page holds: S3's own cap on `max-keys`.
pub const MAX_LIST_LIMIT: usize = 1000;
/// Size of each part of a multipart upload (S3 wants at least 5 MiB but for the last part).
const PART_BYTES: usize = 8 << 20;
/// Parts of one upload in flight at once.
const PART_CONCURRENCY: usize = 4;

/// The cell's bucket. Cheap to clone: clones share one HTTP connection pool.
#[derive(Clone)]
pub struct ObjectStorage {
    store: Arc<AmazonS3>,
    /// Where the bucket is, for error messages (never with credentials).
    endpoint: String,
    bucket: String,
    multipart_threshold: usize,
}

impl std::fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// What a store says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key as stored; [`ObjectKey::parse`] turns it back into a key to read.
    pub key: String,
    pub size: u64,
    /// Known from `head` and `get`; a listing does not carry it.
    pub content_type: Option<String>,
    pub last_modified: DateTime<Utc>,
    /// A multipart upload's ends in `-<parts>`.
    pub e_tag: Option<String>,
}

/// A whole object read into memory.
#[derive(Debug, Clone)]
pub struct Object {
    pub info: ObjectInfo,
    pub bytes: Bytes,
}

/// An object read as a stream of chunks, for bodies too large to hold at once.
pub struct ObjectStream {
    pub info: ObjectInfo,
    pub chunks: BoxStream<'static, Result<Bytes, ObjectError>>,
}

impl std::fmt::Debug for ObjectStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStream")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// One page of a listing; `next_page` continues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPage {
    pub objects: Vec<ObjectInfo>,
    pub next_page: Option<String>,
}

impl ObjectStorage {
    /// A client for the configured bucket. No request is made: reachability is what readiness
    /// ([`ObjectStorage::ping`]) checks, so a server that starts later is waited for.
    pub fn new(config: &ObjectStorageConfig) -> Result<Self, KitError> {
        let endpoint = match &config.endpoint {
            Some(url) if config.path_style => url.trim_end_matches('/').to_owned(),
            // object_store expects a virtual-hosted endpoint to name the bucket already.
            Some(url) => virtual_hosted(url, &config.bucket)?,
            None => format!("https://s3.{}.amazonaws.com", config.region),
        };
        let client = ClientOptions::new()
            .with_allow_http(endpoint.starts_with("http://"))
            .with_connect_timeout(Duration::from_secs(3))
            // No limit on a whole request (a recording may take minutes to stream), but a
            // server that stops sending mid-body is given up on.
            .with_timeout_disabled()
            .with_read_timeout(Duration::from_secs(30));
        // object_store's default retries for three minutes; a request path must learn within
        // seconds that the store is down, and answer Unavailable.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: Duration::from_secs(10),
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(config.secret_access_key.expose_secret())
            .with_virtual_hosted_style_request(!config.path_style)
            .with_client_options(client)
            .with_retry(retry);
        if config.endpoint.is_some() {
            builder = builder.with_endpoint(&endpoint);
        }
        let store = builder.build().map_err(|e| {
            KitError::config("objectStorage", format!("cannot build the S3 client: {e}"))
        })?;
        let shown = if config.path_style {
            format!("{endpoint}/{}", config.bucket)
        } else {
            endpoint
        };
        Ok(Self {
            store: Arc::new(store),
            endpoint: shown,
            bucket: config.bucket.clone(),
            multipart_threshold: config.multipart_threshold,
        })
    }

    /// Whether the bucket answers with these credentials: one listing of at most one key, the
    /// cheapest call that checks the server, the bucket and the keys at once.
    pub async fn ping(&self) -> Result<(), ObjectError> {
        let options = PaginatedListOptions {
            max_keys: Some(1),
            ..Default::default()
        };
        self.store
            .list_paginated(None, options)
            .await
            .map(drop)
            .map_err(|e| self.call("list the bucket", None).error(e))
    }

    /// Stores `body` under `key` with its media type, replacing what was there. Bodies above
    /// the configured threshold go up in parts, several at once, so neither a large object nor
    /// a slow link holds one request for long; a failed multipart upload is aborted, leaving
    /// no parts behind. S3 does not answer an upload with its time, so the `last_modified`
    /// returned is this process's clock when the upload completed.
    pub async fn put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        body: Bytes,
    ) -> Result<ObjectInfo, ObjectError> {
        let content_type = media_type(content_type)?;
        let path = path(key)?;
        let call = self.call("put an object", Some(key));
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::ContentType,
            AttributeValue::from(content_type.to_owned()),
        );
        let size = body.len() as u64;
        let e_tag = if body.len() > self.multipart_threshold {
            let mut rest = body;
            let parts = futures::stream::iter(std::iter::from_fn(move || {
                (!rest.is_empty()).then(|| Ok(rest.split_to(rest.len().min(PART_BYTES))))
            }));
            self.upload_parts(key, &path, attributes, parts).await?
        } else {
            self.store
                .put_opts(&path, PutPayload::from(body), PutOptions::from(attributes))
                .await
                .map_err(|e| call.error(e))?
                .e_tag
        };
        Ok(ObjectInfo {
            key: key.to_string(),
            size,
            content_type: Some(content_type.to_owned()),
            last_modified: Utc::now(),
            e_tag,
        })
    }

    /// A multipart upload of `chunks` (of any sizes: the writer cuts them into parts),
    /// several parts in flight; the first failure, of a part or of a chunk, aborts it, so no
    /// object and no parts are left behind.
    async fn upload_parts(
        &self,
        key: &ObjectKey,
        path: &Path,
        attributes: Attributes,
        mut chunks: impl futures::Stream<Item = Result<Bytes, ObjectError>> + Unpin,
    ) -> Result<Option<String>, ObjectError> {
        let upload = self
            .store
            .put_multipart_opts(path, PutMultipartOptions::from(attributes))
            .await
            .map_err(|e| self.call("put an object", Some(key)).error(e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        while let Some(chunk) = chunks.next().await {
            let waited = match chunk {
                Ok(chunk) => writer
                    .wait_for_capacity(PART_CONCURRENCY)
                    .await
                    .map(|()| chunk)
                    .map_err(|e| self.call("put an object", Some(key)).error(e)),
                Err(e) => Err(e),
            };
            match waited {
                Ok(chunk) => writer.put(chunk),
                Err(e) => {
                    // The first failure decides; the parts already sent are thrown away.
                    let _ = writer.abort().await;
                    return Err(e);
                }
            }
        }
        Ok(writer
            .finish()
            .await
            .map_err(|e| self.call("put an object", Some(key)).error(e))?
            .e_tag)
    }

    /// Stores the file at `file` under `key` like [`Self::put`], reading it part by part
    /// above the multipart threshold, so a recording of any length uploads in bounded memory
    /// (about `PART_CONCURRENCY` + 1 parts). The file must not change while it is read.
    pub async fn put_file(
        &self,
        key: &ObjectKey,
        content_type: &str,
        file: &std::path::Path,
    ) -> Result<ObjectInfo, ObjectError> {
        let local = |source| ObjectError::LocalFile {
            path: file.display().to_string(),
            source,
        };
        let opened = tokio::fs::File::open(file).await.map_err(local)?;
        let size = opened.metadata().await.map_err(local)?.len();
        if size <= self.multipart_threshold as u64 {
            let body = tokio::fs::read(file).await.map_err(local)?;
            return self.put(key, content_type, Bytes::from(body)).await;
        }
        let content_type = media_type(content_type)?;
        let path = path(key)?;
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::ContentType,
            AttributeValue::from(content_type.to_owned()),
        );
        let chunks = futures::stream::try_unfold(opened, |mut f| async move {
            use tokio::io::AsyncReadExt as _;
            let mut buf = vec![0u8; PART_BYTES];
            let n = f.read(&mut buf).await?;
            buf.truncate(n);
            Ok((n > 0).then(|| (Bytes::from(buf), f)))
        })
        .map_err(local);
        let e_tag = self
            .upload_parts(key, &path, attributes, Box::pin(chunks))
            .await?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size,
            content_type: Some(content_type.to_owned()),
            last_modified: Utc::now(),
            e_tag,
        })
    }

    /// Stores a body that arrives as a stream of chunks (a client upload) under `key` like
    /// [`Self::put`], in bounded memory: up to the multipart threshold it is gathered and put
    /// in one request, beyond it sent in parts as it arrives. The first `Err` of `chunks`
    /// aborts the upload (no object, no parts left behind) and is returned; a caller that
    /// refuses a chunk of its own yields [`ObjectError::Body`].
    pub async fn put_stream(
        &self,
        key: &ObjectKey,
        content_type: &str,
        mut chunks: impl futures::Stream<Item = Result<Bytes, ObjectError>> + Unpin,
    ) -> Result<ObjectInfo, ObjectError> {
        let content_type = media_type(content_type)?;
        let mut head = bytes::BytesMut::new();
        while head.len() <= self.multipart_threshold {
            match chunks.next().await {
                Some(chunk) => head.extend_from_slice(&chunk?),
                None => return self.put(key, content_type, head.freeze()).await,
            }
        }
        let path = path(key)?;
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::ContentType,
            AttributeValue::from(content_type.to_owned()),
        );
        let mut size = 0u64;
        let body = futures::stream::once(async { Ok(head.freeze()) })
            .chain(chunks)
            .inspect(|chunk| {
                if let Ok(chunk) = chunk {
                    size += chunk.len() as u64;
                }
            });
        let e_tag = self
            .upload_parts(key, &path, attributes, Box::pin(body))
            .await?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size,
            content_type: Some(content_type.to_owned()),
            last_modified: Utc::now(),
            e_tag,
        })
    }

    /// The whole object, read into memory.
    pub async fn get(&self, key: &ObjectKey) -> Result<Object, ObjectError> {
        let ObjectStream { info, chunks } = self.get_stream(key).await?;
        let parts: Vec<Bytes> = chunks.try_collect().await?;
        let mut bytes = Vec::with_capacity(usize::try_from(info.size).unwrap_or(0));
        for part in parts {
            bytes.extend_from_slice(&part);
        }
        Ok(Object {
            info,
            bytes: Bytes::from(bytes),
        })
    }

    /// The object as a stream of chunks, fetched as it is read.
    pub async fn get_stream(&self, key: &ObjectKey) -> Result<ObjectStream, ObjectError> {
        let path = path(key)?;
        let result = self
            .store
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(|e| self.call("get an object", Some(key)).error(e))?;
        let info = info(&result.meta, content_type(&result.attributes));
        let (endpoint, bucket, key) = (self.endpoint.clone(), self.bucket.clone(), key.clone());
        let chunks = result
            .into_stream()
            .map_err(move |e| {
                Call {
                    endpoint: &endpoint,
                    bucket: &bucket,
                    operation: "read an object",
                    key: Some(key.as_str()),
                }
                .error(e)
            })
            .boxed();
        Ok(ObjectStream { info, chunks })
    }

    /// What the store knows of the object, without its body.
    pub async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo, ObjectError> {
        let path = path(key)?;
        let result = self
            .store
            .get_opts(&path, GetOptions::default().with_head(true))
            .await
            .map_err(|e| self.call("read an object's metadata", Some(key)).error(e))?;
        Ok(info(&result.meta, content_type(&result.attributes)))
    }

    /// Removes the object; removing one that is not there succeeds, as in S3, so a retried
    /// delete is harmless.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError> {
        let path = path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.call("delete an object", Some(key)).error(e)),
        }
    }

    /// One page (at most `limit` objects, at most [`MAX_LIST_LIMIT`]) of the objects under
    /// `prefix/`, in key order; pass the `next_page` of a page to get the next. One request
    /// per page: a listing never walks a whole bucket behind a caller's back.
    pub async fn list(
        &self,
        prefix: &ObjectKey,
        limit: usize,
        page: Option<&str>,
    ) -> Result<ObjectPage, ObjectError> {
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(ObjectError::InvalidLimit {
                requested: limit,
                max: MAX_LIST_LIMIT,
            });
        }
        let options = PaginatedListOptions {
            max_keys: Some(limit),
            page_token: page.map(str::to_owned),
            ..Default::default()
        };
        let under = format!("{prefix}/");
        let listed = self
            .store
            .list_paginated(Some(&under), options)
            .await
            .map_err(|e| self.call("list objects", None).error(e))?;
        let mut objects: Vec<ObjectInfo> = listed
            .result
            .objects
            .iter()
            .map(|meta| info(meta, None))
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(ObjectPage {
            objects,
            next_page: listed.page_token,
        })
    }

    /// A URL anyone holding it may GET the object with, until `expires_in` has passed. The
    /// URL is signed locally: the object need not exist yet, and no request is made.
    pub async fn presigned_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<String, ObjectError> {
        if !(MIN_PRESIGN_EXPIRY..=MAX_PRESIGN_EXPIRY).contains(&expires_in) {
            return Err(ObjectError::InvalidExpiry {
                requested: expires_in,
                min: MIN_PRESIGN_EXPIRY,
                max: MAX_PRESIGN_EXPIRY,
            });
        }
        let path = path(key)?;
        self.store
            .signed_url(Method::GET, &path, expires_in)
            .await
            .map(String::from)
            .map_err(|e| self.call("sign a url", Some(key)).error(e))
    }

    fn call<'a>(&'a self, operation: &'static str, key: Option<&'a ObjectKey>) -> Call<'a> {
        Call {
            endpoint: &self.endpoint,
            bucket: &self.bucket,
            operation,
            key: key.map(ObjectKey::as_str),
        }
    }
}

/// `https://s3.example` with bucket `b` → `https://b.s3.example`.
fn virtual_hosted(url: &str, bucket: &str) -> Result<String, KitError> {
    match url.trim_end_matches('/').split_once("://") {
        Some((scheme, host)) if !host.is_empty() => Ok(format!("{scheme}://{bucket}.{host}")),
        _ => Err(KitError::config(
            "objectStorage.endpoint",
            format!("{url:?} is not a URL like https://s3.example"),
        )),
    }
}

/// `ObjectKey` rules are stricter than `object_store`'s, so this only fails on a bug.
fn path(key: &ObjectKey) -> Result<Path, ObjectError> {
    Path::parse(key.as_str()).map_err(|e| ObjectError::Other {
        endpoint: String::new(),
        operation: "build a path",
        source: e.into(),
    })
}

/// A media type as HTTP carries it (`image/jpeg`, `text/plain; charset=utf-8`).
fn media_type(value: &str) -> Result<&str, ObjectError> {
    let valid = value.len() <= 255
        && value.split_once('/').is_some_and(|(kind, rest)| {
            !kind.is_empty() && !rest.is_empty() && !kind.contains(' ')
        })
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if valid {
        Ok(value)
    } else {
        Err(ObjectError::InvalidContentType(value.to_owned()))
    }
}

fn content_type(attributes: &Attributes) -> Option<String> {
    attributes
        .get(&Attribute::ContentType)
        .map(|v| v.as_ref().to_owned())
}

fn info(meta: &object_store::ObjectMeta, content_type: Option<String>) -> ObjectInfo {
    ObjectInfo {
        key: meta.location.to_string(),
        size: meta.size,
        content_type,
        last_modified: meta.last_modified,
        e_tag: meta.e_tag.clone(),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::{ErrorCode, ServiceError};

    fn storage(path_style: bool, endpoint: Option<&str>) -> ObjectStorage {
        let mut config = ObjectStorageConfig::new(
            endpoint.unwrap_or_default().to_owned(),
            "titan-sg-1".into(),
            "AKIA1".into(),
            SecretString::from("s3cret"),
        );
        config.endpoint = endpoint.map(str::to_owned);
        config.path_style = path_style;
        ObjectStorage::new(&config).expect("client")
    }

    #[test]
    fn endpoints_for_each_addressing_style() {
        assert_eq!(
            storage(true, Some("http://127.0.0.1:9000/")).endpoint,
            "http://127.0.0.1:9000/titan-sg-1"
        );
        assert_eq!(
            storage(false, Some("https://s3.ap-southeast-1.amazonaws.com")).endpoint,
            "https://titan-sg-1.s3.ap-southeast-1.amazonaws.com"
        );
        assert_eq!(
            storage(false, None).endpoint,
            "https://s3.us-east-1.amazonaws.com"
        );
        assert!(!format!("{:?}", storage(true, Some("http://s3:9000"))).contains("s3cret"));
    }

    #[tokio::test]
    async fn presigned_urls_are_signed_locally_and_bounded() {
        let s3 = storage(true, Some("http://127.0.0.1:9"));
        let key = ObjectKey::new(["proofs", "o-1", "photo.jpg"]).expect("key");
        let url = s3
            .presigned_get(&key, Duration::from_secs(300))
            .await
            .expect("signed without a server");
        assert!(
            url.starts_with("http://127.0.0.1:9/titan-sg-1/proofs/o-1/photo.jpg?"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=300"), "{url}");
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert!(!url.contains("s3cret"), "{url}");
        for expiry in [Duration::ZERO, MAX_PRESIGN_EXPIRY + Duration::from_secs(1)] {
            let err = s3.presigned_get(&key, expiry).await.expect_err("bounded");
            assert_eq!(err.code(), ErrorCode::InvalidArgument);
        }
        let err = s3
            .presigned_get(&key, Duration::from_millis(10))
            .await
            .expect_err("bounded");
        assert_eq!(
            err.to_string(),
            "a presigned url must expire within 1s to 604800s, not 10ms"
        );
    }

    #[tokio::test]
    async fn bad_arguments_are_refused_before_any_request() {
        // Port 9 (discard) on loopback: any request would fail as unavailable, not as invalid.
        let s3 = storage(true, Some("http://127.0.0.1:9"));
        let key = ObjectKey::new(["labels", "l-1.pdf"]).expect("key");
        for content_type in ["", "pdf", "/pdf", "application/", "text/plain\n", "a b/c"] {
            let err = s3
                .put(&key, content_type, Bytes::from_static(b"%PDF"))
                .await
                .expect_err(content_type);
            assert_eq!(err.code(), ErrorCode::InvalidArgument, "{content_type:?}");
        }
        for limit in [0, MAX_LIST_LIMIT + 1] {
            let err = s3.list(&key, limit, None).await.expect_err("bounded");
            assert_eq!(
                err.to_string(),
                format!("a listing page holds 1 to 1000 objects, not {limit}")
            );
        }
    }

    #[test]
    fn media_types() {
        assert_eq!(media_type("image/jpeg").ok(), Some("image/jpeg"));
        assert!(media_type("text/plain; charset=utf-8").is_ok());
        assert!(media_type("application/vnd.apple.mpegurl").is_ok());
        assert!(media_type(&format!("a/{}", "b".repeat(260))).is_err());
    }
}
