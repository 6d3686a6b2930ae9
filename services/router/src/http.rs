//! `GET /v1/route?key=…` on the HTTP port: `Lookup` for clients that speak only HTTP (a web
//! front end choosing its cell). JSON `{cell, bucket, tableVersion}`; a refusal is
//! `{reason, message}` with 400 (a bad key) or 503 (no table yet). Like the gRPC method it needs
//! no token, and it reads none.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router as HttpRouter,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use titan_kit::ServiceError;

use crate::app::{Router, RouterError};

pub fn routes(app: Arc<Router>) -> HttpRouter {
    HttpRouter::new()
        .route("/v1/route", get(route))
        .with_state(app)
}

async fn route(
    State(app): State<Arc<Router>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let key = query.get("key").map_or("", String::as_str);
    match app.lookup(key) {
        Ok((routed, version)) => Json(json!({
            "cell": routed.cell.as_str(),
            "bucket": routed.bucket,
            "tableVersion": version,
        }))
        .into_response(),
        Err(e) => refusal(&e),
    }
}

fn refusal(error: &RouterError) -> Response {
    let status = match error.code() {
        titan_kit::ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = json!({
        "reason": error.reason().unwrap_or("UNAVAILABLE"),
        "message": error.to_string(),
    });
    (status, Json(body)).into_response()
}
