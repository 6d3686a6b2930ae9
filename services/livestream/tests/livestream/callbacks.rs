//! The RTMP callback routes as nginx-rtmp calls them: form-encoded POSTs, a 3xx to the stream's
//! id for a valid key (nginx publishes under that name), 403 otherwise; refused from a source
//! outside the media network before the body is read.

use std::net::SocketAddr;

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{Request, StatusCode, header},
};
use titan_livestream::{domain::Status, http::callbacks};
use tower::ServiceExt;

use crate::World;

async fn post(w: &World, from: &str, path: &str, form: &str) -> (StatusCode, Option<String>) {
    let peer: SocketAddr = format!("{from}:40000").parse().expect("address");
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .extension(ConnectInfo(peer))
        .body(Body::from(form.to_owned()))
        .expect("request");
    let response = callbacks(w.app.clone())
        .oneshot(request)
        .await
        .expect("answer");
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().expect("ascii").to_owned());
    (response.status(), location)
}

/// The fields nginx-rtmp 1.2 sends with `notify_method post`.
fn nginx_form(call: &str, name: &str) -> String {
    format!(
        "call={call}&addr=10.1.2.3&clientid=7&app=live&flashver=FMLE%2F3.0&swfurl=&tcurl=rtmp%3A%2F%2Frtmp%3A1935%2Flive&pageurl=&name={name}&type=live"
    )
}

#[tokio::test]
async fn nginx_is_admitted_under_the_stream_id_and_refused_otherwise() {
    let w = World::new().await;
    let (s, key) = w.scheduled("sam").await;
    let wrong = titan_livestream::domain::StreamKey::generate(24);
    assert_eq!(
        post(
            &w,
            "10.1.0.5",
            "/rtmp/publish",
            &nginx_form("publish", wrong.reveal())
        )
        .await,
        (StatusCode::FORBIDDEN, None)
    );
    // A public source is refused even with the right key, and nothing changes.
    assert_eq!(
        post(
            &w,
            "203.0.113.9",
            "/rtmp/publish",
            &nginx_form("publish", key.reveal())
        )
        .await,
        (StatusCode::FORBIDDEN, None)
    );
    assert_eq!(
        w.app.get(&s.id.to_string()).await.expect("ok").status,
        Status::Scheduled
    );

    assert_eq!(
        post(
            &w,
            "10.1.0.5",
            "/rtmp/publish",
            &nginx_form("publish", key.reveal())
        )
        .await,
        (StatusCode::FOUND, Some(s.id.to_string()))
    );
    assert_eq!(
        w.app.get(&s.id.to_string()).await.expect("ok").status,
        Status::Live
    );
    assert_eq!(
        post(
            &w,
            "127.0.0.1",
            "/rtmp/publish",
            &nginx_form("publish", key.reveal())
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );

    // The recorder reports the stored recording; then nginx reports the end.
    let object = format!("recordings/{}/{}-1.flv", s.id, s.id);
    assert_eq!(
        post(
            &w,
            "127.0.0.1",
            "/rtmp/recorded",
            &format!("name={}&key={object}", s.id)
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        post(
            &w,
            "127.0.0.1",
            "/rtmp/recorded",
            &format!("name={}&key=..%2Fx", s.id)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(
            &w,
            "10.1.0.5",
            "/rtmp/publish-done",
            &nginx_form("publish_done", key.reveal())
        )
        .await
        .0,
        StatusCode::OK
    );
    let ended = w.app.get(&s.id.to_string()).await.expect("ok");
    assert_eq!(ended.status, Status::Ended);
    assert_eq!(ended.recording_url.as_deref(), Some(object.as_str()));
    assert_eq!(
        post(
            &w,
            "10.1.0.5",
            "/rtmp/publish-done",
            &nginx_form("publish_done", &uuid::Uuid::now_v7().to_string())
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}
