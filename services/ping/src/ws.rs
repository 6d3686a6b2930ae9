//! The ping service's WebSocket, `GET /v1/ping/ws`: the smallest use of `kit::realtime` and a
//! cell's smoke test of its fan-out. Frames: `echo` (the ack carries the payload back),
//! `subscribe` / `unsubscribe` `{topic}` and `publish` `{topic, data}`, which reaches every
//! socket subscribed to `ping:<topic>` on every replica as `{type: "message", payload:
//! {topic, data, from}}`.

use serde::Deserialize;
use serde_json::{Value, json};
use titan_kit::realtime::{Endpoint, FrameError, Realtime, Session};

pub const PATH: &str = "/v1/ping/ws";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Topic {
    topic: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    topic: String,
    #[serde(default)]
    data: Value,
}

fn parse<T: serde::de::DeserializeOwned>(payload: Value) -> Result<T, FrameError> {
    serde_json::from_value(payload).map_err(|e| FrameError::new("INVALID_ARGUMENT", e.to_string()))
}

/// Topics are names a client chooses: short, printable, no spaces.
fn topic(name: &str) -> Result<String, FrameError> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FrameError::new(
            "INVALID_ARGUMENT",
            "topic must be 1 to 64 printable characters without spaces",
        ));
    }
    Ok(format!("ping:{name}"))
}

pub fn router(realtime: &Realtime) -> axum::Router {
    let hub = realtime.hub();
    let endpoint = Endpoint::new()
        .on(
            "echo",
            |_s: Session, payload: Value| async move { Ok(payload) },
        )
        .on("subscribe", |s: Session, payload: Value| async move {
            let Topic { topic: name } = parse(payload)?;
            s.subscribe(&topic(&name)?).await?;
            Ok(json!({ "topic": name }))
        })
        .on("unsubscribe", |s: Session, payload: Value| async move {
            let Topic { topic: name } = parse(payload)?;
            s.unsubscribe(&topic(&name)?)?;
            Ok(json!({ "topic": name }))
        })
        .on("publish", move |s: Session, payload: Value| {
            let hub = hub.clone();
            async move {
                let Publish { topic: name, data } = parse(payload)?;
                let hub = hub.ok_or_else(|| {
                    FrameError::new(
                        "UNAVAILABLE",
                        "publishing needs redis, which is not connected",
                    )
                })?;
                let message = json!({ "topic": name, "data": data, "from": s.caller().user_id });
                hub.publish(&topic(&name)?, "message", &message)
                    .await
                    .map_err(|e| FrameError::new("UNAVAILABLE", e.to_string()))?;
                Ok(Value::Null)
            }
        });
    realtime.route(PATH, endpoint)
}
