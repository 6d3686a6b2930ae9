//! The Fleet controller's Prometheus client: one instant query (`/api/v1/query`) per cell for a
//! fleet's `spec.analysis`, its answer read as one number, no data, or an error a person can
//! act on. Bounded: a request gives up after [`QUERY_TIMEOUT`] (and asks Prometheus to stop
//! evaluating by then), and an answer larger than [`MAX_BODY_BYTES`] is refused unread.

use std::time::Duration;

use serde::Deserialize;

/// How long one query may take, connection included.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read: one series is a few hundred bytes; many more means the query does not
/// aggregate, which is refused anyway.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Longest error text kept from Prometheus (it goes into a condition message).
const MAX_ERROR_CHARS: usize = 500;

/// What a query answered for one cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// One number.
    Value(f64),
    /// No series, or NaN (a ratio over no traffic: 0/0): nothing to judge, which is healthy.
    NoData,
}

/// Why a query has no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The HTTP client could not be built (its TLS setup failed).
    #[error("cannot build the HTTP client for prometheus: {0}")]
    Client(String),
    /// No answer: refused connection, timeout, broken transfer.
    #[error("prometheus at {url} did not answer: {cause}")]
    Unreachable {
        /// The query URL.
        url: String,
        /// The cause, with its sources.
        cause: String,
    },
    /// The answer was cut at [`MAX_BODY_BYTES`].
    #[error("prometheus at {url} answered more than {MAX_BODY_BYTES} bytes")]
    TooLarge {
        /// The query URL.
        url: String,
    },
    /// Prometheus refused the query (bad PromQL, timeout, overload).
    #[error("prometheus at {url} refused the query ({status}, {kind}): {error}")]
    Refused {
        /// The query URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Prometheus' `errorType` (`bad_data`, `timeout`, `execution`).
        kind: String,
        /// Prometheus' `error`.
        error: String,
    },
    /// Not the JSON of Prometheus' query API (a proxy's error page, another server).
    #[error(
        "prometheus at {url} answered {status} with something other than a query result: {cause}"
    )]
    Malformed {
        /// The query URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        cause: String,
    },
    /// A result that is not one number: a range vector, a string, or several series.
    #[error("the query must answer a scalar or one series, and answered {0}")]
    Shape(String),
}

/// A client of one Prometheus HTTP API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    client: reqwest::Client,
    url: String,
}

/// The JSON of `/api/v1/query`, success or error.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

/// One sample: `[<unix time>, "<value>"]`; the time is that of the query.
type Sample = (serde::de::IgnoredAny, String);

#[derive(Deserialize)]
struct Series {
    value: Sample,
}

impl Prometheus {
    /// A client for the Prometheus whose HTTP API is at `base` (`http://prometheus:9090`).
    pub fn new(base: &str) -> Result<Self, QueryError> {
        Ok(Self {
            client: shared_client()?,
            url: format!("{}/api/v1/query", base.trim_end_matches('/')),
        })
    }

    /// Runs `query` at the current time.
    pub async fn query(&self, query: &str) -> Result<Answer, QueryError> {
        let unreachable = |e: reqwest::Error| QueryError::Unreachable {
            url: self.url.clone(),
            cause: causes(&e),
        };
        // POST: a query may be longer than a URL should be. `timeout` makes Prometheus give up
        // when this client does, instead of evaluating for nobody.
        let mut response = self
            .client
            .post(&self.url)
            .form(&[
                ("query", query),
                ("timeout", &format!("{}s", QUERY_TIMEOUT.as_secs())),
            ])
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let too_large = || QueryError::TooLarge {
            url: self.url.clone(),
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(too_large());
        }
        // By chunks: a server that omits or misstates its length is cut at the limit.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        answer(&self.url, status, &body)
    }
}

/// The operator's one HTTP client for Prometheus, built on first use: its connection pool and
/// TLS roots then serve every round, instead of a client (and a new connection) per round.
fn shared_client() -> Result<reqwest::Client, QueryError> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client.clone());
    }
    let client = reqwest::Client::builder()
        .timeout(QUERY_TIMEOUT)
        .connect_timeout(QUERY_TIMEOUT)
        .user_agent(concat!("titan-operator/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| QueryError::Client(causes(&e)))?;
    Ok(CLIENT.get_or_init(|| client).clone())
}

/// Reads the body of a `/api/v1/query` answer with HTTP `status`.
pub fn answer(url: &str, status: u16, body: &[u8]) -> Result<Answer, QueryError> {
    let malformed = |cause: String| QueryError::Malformed {
        url: url.to_string(),
        status,
        cause,
    };
    let parsed: Response = serde_json::from_slice(body).map_err(|e| {
        let start: String = String::from_utf8_lossy(body).chars().take(100).collect();
        malformed(format!("{e} (it begins {start:?})"))
    })?;
    if parsed.status != "success" {
        return Err(QueryError::Refused {
            url: url.to_string(),
            status,
            kind: parsed.error_type.unwrap_or_default(),
            error: parsed
                .error
                .unwrap_or_default()
                .chars()
                .take(MAX_ERROR_CHARS)
                .collect(),
        });
    }
    let data = parsed
        .data
        .ok_or_else(|| malformed("status success without data".into()))?;
    let sample = match data.result_type.as_str() {
        "scalar" => serde_json::from_value::<Sample>(data.result)
            .map_err(|e| malformed(format!("a scalar that is not [time, value]: {e}")))?,
        "vector" => {
            let mut series: Vec<Series> = serde_json::from_value(data.result)
                .map_err(|e| malformed(format!("a vector that is not a list of samples: {e}")))?;
            match series.len() {
                0 => return Ok(Answer::NoData),
                1 => series.remove(0).value,
                n => {
                    return Err(QueryError::Shape(format!(
                        "{n} series (aggregate it, e.g. with sum(...))"
                    )));
                }
            }
        }
        "matrix" => return Err(QueryError::Shape("a range vector (drop the [range] of its outermost selector, or wrap it in a function such as rate)".into())),
        other => return Err(QueryError::Shape(format!("a {other}"))),
    };
    // Prometheus writes values as Go formats them: `NaN`, `+Inf`, `-Inf` or a decimal.
    let value = match sample.1.as_str() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        text => text
            .parse::<f64>()
            .map_err(|e| malformed(format!("the value {text:?} is not a number: {e}")))?,
    };
    Ok(if value.is_nan() {
        Answer::NoData
    } else {
        Answer::Value(value)
    })
}

/// An error and its sources, `: `-joined (reqwest's own text names only the URL).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://p:9090/api/v1/query";

    fn read(body: &str) -> Result<Answer, String> {
        answer(URL, 200, body.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn scalars_and_single_series_are_numbers_and_nothing_is_no_data() {
        assert_eq!(
            read(
                r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.5,"0.25"]}}"#
            ),
            Ok(Answer::Value(0.25))
        );
        assert_eq!(
            read(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"cell":"a"},"value":[1700000000,"+Inf"]}]}}"#
            ),
            Ok(Answer::Value(f64::INFINITY))
        );
        assert_eq!(
            read(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
            Ok(Answer::NoData)
        );
        assert_eq!(
            read(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#
            ),
            Ok(Answer::NoData)
        );
    }

    #[test]
    fn errors_and_other_shapes_say_what_is_wrong() {
        assert_eq!(
            answer(
                URL,
                400,
                br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}"#
            )
            .map_err(|e| e.to_string()),
            Err("prometheus at http://p:9090/api/v1/query refused the query (400, bad_data): 1:5: parse error: unexpected end of input".into())
        );
        assert_eq!(
            read(r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}}"#),
            Err("the query must answer a scalar or one series, and answered 2 series (aggregate it, e.g. with sum(...))".into())
        );
        assert_eq!(
            read(r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#),
            Err("the query must answer a scalar or one series, and answered a string".into())
        );
        assert!(
            read(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
                .is_err_and(|e| e.contains("answered a range vector"))
        );
        assert_eq!(
            answer(URL, 502, b"<html>Bad Gateway</html>").map_err(|e| e.to_string()),
            Err("prometheus at http://p:9090/api/v1/query answered 502 with something other than a query result: expected value at line 1 column 1 (it begins \"<html>Bad Gateway</html>\")".into())
        );
        assert_eq!(
            read(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"many"]}}"#),
            Err("prometheus at http://p:9090/api/v1/query answered 200 with something other than a query result: the value \"many\" is not a number: invalid float literal".into())
        );
    }
}
