//! The HTTP routes messages link to, on the HTTP port: the open pixel, the click redirect and
//! the unsubscribe page (GET shows a confirmation button, POST unsubscribes, which is also
//! RFC 8058's one-click POST from mail clients). Every link is signed; a forged or altered
//! one gets 404 and counts nothing.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};

use crate::app::{Audience, CampaignStore, Campaigns};

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

pub fn router<S: CampaignStore, A: Audience>(app: Arc<Campaigns<S, A>>) -> Router {
    Router::new()
        .route("/v1/campaign/o/{token}", get(open::<S, A>))
        .route("/v1/campaign/c/{token}", get(click::<S, A>))
        .route(
            "/v1/campaign/u/{token}",
            get(unsubscribe_page::<S, A>).post(unsubscribe::<S, A>),
        )
        .with_state(app)
}

fn failed(e: &crate::app::CampaignError) -> Response {
    tracing::error!(error = %e, "campaign link failed");
    (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "unknown link\n").into_response()
}

async fn open<S: CampaignStore, A: Audience>(
    State(app): State<Arc<Campaigns<S, A>>>,
    Path(token): Path<String>,
) -> Response {
    // The pixel is served whatever happens: a mail client shows no broken image.
    if let Err(e) = app.opened(&token).await {
        tracing::warn!(error = %e, "open not recorded");
    }
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PIXEL,
    )
        .into_response()
}

async fn click<S: CampaignStore, A: Audience>(
    State(app): State<Arc<Campaigns<S, A>>>,
    Path(token): Path<String>,
) -> Response {
    match app.clicked(&token).await {
        Ok(Some(url)) => Redirect::to(&url).into_response(),
        Ok(None) => not_found(),
        Err(e) => failed(&e),
    }
}

async fn unsubscribe_page<S: CampaignStore, A: Audience>(
    State(app): State<Arc<Campaigns<S, A>>>,
    Path(token): Path<String>,
) -> Response {
    // A GET changes nothing: mail scanners follow links.
    match app.unsubscribe_link(&token) {
        Some(l) => Html(format!(
            "<!doctype html><title>Unsubscribe</title><form method=\"post\">\
             <p>Stop receiving {} messages?</p><button type=\"submit\">Unsubscribe</button></form>",
            l.channel.as_str()
        ))
        .into_response(),
        None => not_found(),
    }
}

async fn unsubscribe<S: CampaignStore, A: Audience>(
    State(app): State<Arc<Campaigns<S, A>>>,
    Path(token): Path<String>,
) -> Response {
    match app.unsubscribe(&token).await {
        Ok(Some(channel)) => Html(format!(
            "<!doctype html><title>Unsubscribed</title><p>You will receive no more {} messages.</p>",
            channel.as_str()
        ))
        .into_response(),
        Ok(None) => not_found(),
        Err(e) => failed(&e),
    }
}
