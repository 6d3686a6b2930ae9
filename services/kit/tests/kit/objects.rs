//! Object storage against real S3 servers: the s3s-fs that `cargo xtask test` starts (each test
//! under its own key prefix), and private s3s-fs processes for the tests that stop theirs.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use futures::{FutureExt, StreamExt, TryStreamExt};
use secrecy::SecretString;
use titan_kit::{
    Datastore, ErrorCode, KitError, Mounted, ServiceContext, ServiceDef, ServiceError,
    config::{Config, ObjectStorageConfig},
    error::to_status,
    objects::{ObjectError, ObjectKey, ObjectStorage},
    runtime,
    testing::{Serving, TestObjectStorage, eventually, server_url, serving},
};
use tokio_util::sync::CancellationToken;

/// Bytes that differ at every offset, so a part written twice or out of order shows.
fn pattern(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test]
async fn a_20_mib_object_goes_up_in_parts_and_comes_back_exactly() {
    let s3 = TestObjectStorage::new();
    let key = s3.key(&["recordings", "live-1", "stream.mp4"]);
    let body = Bytes::from(pattern(20 << 20));

    let put = s3
        .storage
        .put(&key, "video/mp4", body.clone())
        .await
        .expect("put");
    assert_eq!(put.size, 20 << 20);
    // 8 MiB parts: 8 + 8 + 4. A multipart ETag ends in the number of parts.
    let e_tag = put.e_tag.expect("an etag");
    assert!(e_tag.trim_matches('"').ends_with("-3"), "{e_tag}");

    let object = s3.storage.get(&key).await.expect("get");
    assert_eq!(object.bytes.len(), body.len());
    assert!(
        object.bytes == body,
        "the bytes read differ from those written"
    );
    assert_eq!(object.info.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(object.info.size, 20 << 20);
    assert_eq!(object.info.key, key.as_str());

    let head = s3.storage.head(&key).await.expect("head");
    assert_eq!(
        (head.size, head.content_type.as_deref()),
        (20 << 20, Some("video/mp4"))
    );

    let streamed = s3.storage.get_stream(&key).await.expect("stream");
    let chunks: Vec<Bytes> = streamed.chunks.try_collect().await.expect("chunks");
    assert!(
        chunks.concat() == body.as_ref(),
        "the streamed bytes differ"
    );

    s3.storage.delete(&key).await.expect("delete");
    let err = s3.storage.head(&key).await.expect_err("deleted");
    assert!(matches!(err, ObjectError::NotFound { .. }), "{err:?}");
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert_eq!(err.to_string(), format!("object {key} not found"));
    let err = s3.storage.get(&key).await.expect_err("deleted");
    assert_eq!(err.code(), ErrorCode::NotFound);
    s3.storage
        .delete(&key)
        .await
        .expect("deleting twice is fine");
}

#[tokio::test]
async fn a_small_object_goes_up_in_one_request() {
    let s3 = TestObjectStorage::new();
    let key = s3.key(&["labels", "l-1.pdf"]);
    let put = s3
        .storage
        .put(&key, "application/pdf", Bytes::from_static(b"%PDF-1.7"))
        .await
        .expect("put");
    let e_tag = put.e_tag.expect("an etag");
    assert!(!e_tag.contains('-'), "not multipart: {e_tag}");
    let object = s3.storage.get(&key).await.expect("get");
    assert_eq!(object.bytes.as_ref(), b"%PDF-1.7");
    assert_eq!(object.info.content_type.as_deref(), Some("application/pdf"));
}

/// `body` as a client stream would bring it: uneven chunks, so no chunk lines up with a part.
fn chunked(
    body: &Bytes,
    size: usize,
) -> impl futures::Stream<Item = Result<Bytes, ObjectError>> + Unpin {
    let chunks: Vec<Bytes> = (0..body.len())
        .step_by(size)
        .map(|at| body.slice(at..body.len().min(at + size)))
        .collect();
    futures::stream::iter(chunks.into_iter().map(Ok))
}

#[tokio::test]
async fn a_stream_goes_up_in_parts_as_it_arrives_and_a_failed_one_leaves_nothing() {
    let s3 = TestObjectStorage::new();
    let key = s3.key(&["recordings", "call-1", "upload.webm"]);
    let body = Bytes::from(pattern((19 << 20) + 7));

    let put = s3
        .storage
        .put_stream(&key, "video/webm", chunked(&body, (1 << 20) + 3))
        .await
        .expect("put stream");
    assert_eq!(put.size, (19 << 20) + 7);
    let e_tag = put.e_tag.expect("an etag");
    assert!(e_tag.trim_matches('"').ends_with("-3"), "{e_tag}");
    let object = s3.storage.get(&key).await.expect("get");
    assert!(
        object.bytes == body,
        "the bytes read differ from the stream"
    );
    assert_eq!(object.info.content_type.as_deref(), Some("video/webm"));

    // Below the threshold: gathered and put in one request.
    let small = s3.key(&["recordings", "call-1", "small.webm"]);
    let put = s3
        .storage
        .put_stream(
            &small,
            "video/webm",
            chunked(&Bytes::from_static(b"webm in three"), 5),
        )
        .await
        .expect("put small stream");
    assert!(!put.e_tag.expect("etag").contains('-'));
    assert_eq!(
        s3.storage.get(&small).await.expect("get").bytes.as_ref(),
        b"webm in three"
    );

    // A chunk refused past the threshold aborts the upload: the caller's error comes back
    // and no object is left under the key.
    let failed = s3.key(&["recordings", "call-1", "failed.webm"]);
    let refused = futures::stream::once(async {
        Err(ObjectError::Body {
            detail: "the client went away".into(),
        })
    });
    let chunks = chunked(&body, 1 << 20).take(12).chain(refused);
    let err = s3
        .storage
        .put_stream(&failed, "video/webm", Box::pin(chunks))
        .await
        .expect_err("refused chunk");
    assert!(
        matches!(&err, ObjectError::Body { detail } if detail == "the client went away"),
        "{err:?}"
    );
    let err = s3.storage.head(&failed).await.expect_err("nothing stored");
    assert!(matches!(err, ObjectError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn a_file_goes_up_part_by_part_and_a_missing_one_is_named() {
    let s3 = TestObjectStorage::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rec.flv");
    let body = pattern(19 << 20);
    std::fs::write(&file, &body).expect("write");
    let key = s3.key(&["recordings", "live-2", "rec.flv"]);
    let put = s3
        .storage
        .put_file(&key, "video/x-flv", &file)
        .await
        .expect("put file");
    assert_eq!(put.size, 19 << 20);
    let e_tag = put.e_tag.expect("an etag");
    assert!(e_tag.trim_matches('"').ends_with("-3"), "{e_tag}");
    let object = s3.storage.get(&key).await.expect("get");
    assert!(object.bytes == body, "the bytes read differ from the file");
    assert_eq!(object.info.content_type.as_deref(), Some("video/x-flv"));

    // Below the threshold: one request.
    std::fs::write(&file, b"FLV small").expect("write");
    let small = s3
        .storage
        .put_file(&key, "video/x-flv", &file)
        .await
        .expect("put");
    assert!(!small.e_tag.expect("etag").contains('-'));
    assert_eq!(
        s3.storage.get(&key).await.expect("get").bytes.as_ref(),
        b"FLV small"
    );

    let missing = dir.path().join("gone.flv");
    let err = s3
        .storage
        .put_file(&key, "video/x-flv", &missing)
        .await
        .expect_err("no file");
    assert_eq!(err.code(), ErrorCode::Internal);
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read {} to upload it: ", missing.display())),
        "{err}"
    );
}

#[tokio::test]
async fn a_presigned_url_serves_a_plain_http_client_until_it_expires() {
    let s3 = TestObjectStorage::new();
    let key = s3.key(&["proofs", "order-7", "photo.jpg"]);
    s3.storage
        .put(&key, "image/jpeg", Bytes::from_static(b"\xff\xd8\xff jpeg"))
        .await
        .expect("put");
    let http = reqwest::Client::new();

    let url = s3
        .storage
        .presigned_get(&key, Duration::from_secs(600))
        .await
        .expect("sign");
    let response = http.get(&url).send().await.expect("fetch");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/jpeg")
    );
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        b"\xff\xd8\xff jpeg"
    );

    // Without the signature the same object is refused: the URL is what grants access.
    let (unsigned, _) = url.split_once('?').expect("a query");
    let status = http.get(unsigned).send().await.expect("fetch").status();
    assert_eq!(status.as_u16(), 403);

    let short = s3
        .storage
        .presigned_get(&key, Duration::from_secs(1))
        .await
        .expect("sign");
    let (status, body) = eventually("the presigned url to expire", || async {
        let response = http.get(&short).send().await.ok()?;
        let status = response.status().as_u16();
        let body = response.text().await.ok()?;
        (status != 200).then_some((status, body))
    })
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    assert!(body.contains("Request has expired"), "{body}");
}

#[tokio::test]
async fn wrong_credentials_are_refused_and_say_what_to_check() {
    let s3 = TestObjectStorage::new();
    let key = s3.key(&["labels", "l-2.pdf"]);
    for (access_key_id, secret) in [
        (s3.config.access_key_id.clone(), "not-the-secret"),
        ("nobody".to_owned(), "not-the-secret"),
    ] {
        let wrong = ObjectStorage::new(&ObjectStorageConfig {
            access_key_id,
            secret_access_key: SecretString::from(secret),
            ..s3.config.clone()
        })
        .expect("client");
        let errors = [
            wrong
                .put(&key, "application/pdf", Bytes::from_static(b"%PDF"))
                .await
                .map(drop),
            wrong.get(&key).await.map(drop),
            wrong.head(&key).await.map(drop),
            wrong.list(&s3.prefix, 10, None).await.map(drop),
            wrong.ping().await,
        ];
        for result in errors {
            let err = result.expect_err("refused");
            assert!(matches!(err, ObjectError::Credentials { .. }), "{err:?}");
            assert_eq!(err.code(), ErrorCode::Internal);
            let message = err.to_string();
            assert!(
                message.starts_with(&format!(
                    "object storage at {}/titan refused the credentials (403",
                    s3.config.endpoint.as_deref().unwrap_or_default()
                )),
                "{message}"
            );
            assert!(
                message.ends_with("check TITAN_S3_ACCESS_KEY_ID and TITAN_S3_SECRET_ACCESS_KEY"),
                "{message}"
            );
        }
    }
    assert!(
        s3.storage.head(&key).await.is_err(),
        "nothing was written with wrong keys"
    );
}

#[tokio::test]
async fn listings_are_bounded_pages_of_one_prefix() {
    let s3 = TestObjectStorage::new();
    for name in ["0", "1", "2", "3", "4"] {
        s3.storage
            .put(
                &s3.key(&["list", name]),
                "text/plain",
                Bytes::from(name.repeat(3)),
            )
            .await
            .expect("put");
    }
    // A sibling whose name starts like the prefix is not under it.
    s3.storage
        .put(
            &s3.key(&["listing", "x"]),
            "text/plain",
            Bytes::from_static(b"x"),
        )
        .await
        .expect("put");
    let prefix = s3.key(&["list"]);
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = s3
            .storage
            .list(&prefix, 2, token.as_deref())
            .await
            .expect("list");
        assert!(page.objects.len() <= 2, "{page:?}");
        pages.push(
            page.objects
                .iter()
                .map(|o| {
                    (
                        o.key.rsplit('/').next().unwrap_or_default().to_owned(),
                        o.size,
                    )
                })
                .collect::<Vec<_>>(),
        );
        match page.next_page {
            Some(next) => token = Some(next),
            None => break,
        }
        assert!(pages.len() < 10, "the listing never ends");
    }
    let owned = |pairs: &[(&str, u64)]| {
        pairs
            .iter()
            .map(|(k, n)| ((*k).to_owned(), *n))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pages,
        [
            owned(&[("0", 3), ("1", 3)]),
            owned(&[("2", 3), ("3", 3)]),
            owned(&[("4", 3)]),
        ]
    );
    let listed = s3.storage.list(&prefix, 1000, None).await.expect("list");
    assert_eq!(listed.objects.len(), 5);
    assert_eq!(listed.next_page, None);
    let first = &listed.objects[0];
    assert_eq!(first.key, s3.key(&["list", "0"]).as_str());
    assert_eq!(first.content_type, None, "a listing does not carry it");
    assert_eq!(
        ObjectKey::parse(&first.key).map(|k| k.to_string()),
        Ok(first.key.clone())
    );
}

/// An s3s-fs of the test's own, on a free port over a temporary directory; killed when dropped.
struct PrivateS3 {
    child: Child,
    config: ObjectStorageConfig,
    _root: tempfile::TempDir,
}

impl PrivateS3 {
    fn start() -> Self {
        let binary = PathBuf::from(server_url("TITAN_TEST_S3S_FS"));
        let root = tempfile::tempdir().expect("a directory for s3s-fs");
        std::fs::create_dir(root.path().join("private")).expect("the bucket");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "private", "--secret-key", "private-secret"])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let config = ObjectStorageConfig::new(
            format!("http://127.0.0.1:{port}"),
            "private".into(),
            "private".into(),
            SecretString::from("private-secret"),
        );
        Self {
            child,
            config,
            _root: root,
        }
    }

    /// Kills the server (by its PID, through the child handle) and reaps it.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn a_stopped_server_is_unavailable_with_a_reason() {
    let mut server = PrivateS3::start();
    let storage = ObjectStorage::new(&server.config).expect("client");
    let key = ObjectKey::new(["proofs", "order-9", "photo.jpg"]).expect("key");
    eventually("the private s3s-fs to answer", || async {
        storage.ping().await.ok()
    })
    .await;
    storage
        .put(&key, "image/jpeg", Bytes::from_static(b"jpeg"))
        .await
        .expect("put while it runs");

    server.stop();
    let endpoint = server.config.endpoint.clone().unwrap_or_default();
    let errors = [
        storage.get(&key).await.map(drop),
        storage.head(&key).await.map(drop),
        storage
            .put(&key, "image/jpeg", Bytes::from_static(b"jpeg"))
            .await
            .map(drop),
        storage.delete(&key).await,
        storage.ping().await,
    ];
    for result in errors {
        let err = result.expect_err("the server is gone");
        assert!(matches!(err, ObjectError::Unavailable { .. }), "{err:?}");
        assert_eq!(err.code(), ErrorCode::Unavailable);
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "object storage at {endpoint}/private is unavailable: cannot connect ("
            )),
            "{message}"
        );
        assert!(
            message.ends_with("check that the server runs and that TITAN_S3_ENDPOINT points at it"),
            "{message}"
        );
        // A client learns it may retry, not where the store is.
        let status = to_status("proofs.titan.dev", &err);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            !status.message().contains(&endpoint),
            "{}",
            status.message()
        );
    }
}

fn uploads() -> ServiceDef {
    ServiceDef {
        datastores: &[Datastore::ObjectStorage],
        ready_on: &[Datastore::ObjectStorage],
        ..titan_kit::testing::service("uploads", |ctx: ServiceContext| {
            async move {
                ctx.objects()?;
                Ok::<_, KitError>(Mounted::new(&ctx))
            }
            .boxed()
        })
    }
}

fn serve_config(vars: HashMap<&'static str, String>) -> Result<Config, KitError> {
    let mut vars = vars;
    for (name, value) in [
        ("TITAN_GRPC_ADDR", "127.0.0.1:0"),
        ("TITAN_HTTP_ADDR", "127.0.0.1:0"),
        ("TITAN_ADMIN_ADDR", "127.0.0.1:0"),
        (
            "TITAN_AUTH_HS256_SECRET",
            "0123456789abcdef0123456789abcdef",
        ),
    ] {
        vars.insert(name, value.to_owned());
    }
    Config::from_sources(Some("preStopDelaySeconds: 0\n"), move |name| {
        vars.get(name).cloned()
    })
}

#[tokio::test]
async fn a_service_without_a_bucket_is_told_which_variables_to_set() {
    let err = runtime::serve(
        serve_config(HashMap::new()).expect("config"),
        vec![uploads()],
        CancellationToken::new(),
        |_| {},
    )
    .await
    .expect_err("no bucket configured");
    assert_eq!(
        err.to_string(),
        "service uploads needs object storage: set TITAN_S3_BUCKET, TITAN_S3_ACCESS_KEY_ID and \
         TITAN_S3_SECRET_ACCESS_KEY (or objectStorage)"
    );
}

/// `/readyz` of a service that declared object storage follows the bucket: ready while the
/// server answers, not ready (saying why) once it is gone.
#[tokio::test]
async fn readiness_follows_the_object_storage() {
    let mut server = PrivateS3::start();
    let endpoint = server.config.endpoint.clone().unwrap_or_default();
    let vars = HashMap::from([
        ("TITAN_S3_ENDPOINT", endpoint.clone()),
        ("TITAN_S3_BUCKET", "private".to_owned()),
        ("TITAN_S3_ACCESS_KEY_ID", "private".to_owned()),
        ("TITAN_S3_SECRET_ACCESS_KEY", "private-secret".to_owned()),
    ]);
    let Serving {
        bound,
        stop: shutdown,
        task: serving,
    } = serving(serve_config(vars).expect("config"), vec![uploads()]).await;
    let admin = bound.admin;
    let readyz = || async move {
        let r = reqwest::get(format!("http://{admin}/readyz")).await.ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    };
    eventually("ready while the bucket answers", || async {
        readyz().await.filter(|(code, _)| *code == 200)
    })
    .await;

    server.stop();
    let (code, why) = eventually("not ready once the server is gone", || async {
        readyz().await.filter(|(code, _)| *code != 200)
    })
    .await;
    assert_eq!(code, 503);
    assert!(
        why.contains(&format!(
            "object storage: object storage at {endpoint}/private is unavailable: cannot connect"
        )),
        "{why}"
    );

    shutdown.cancel();
    serving.await.expect("join").expect("clean stop");
}
