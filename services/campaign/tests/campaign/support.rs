//! The harness: a campaign app on a private database, a private ClickHouse database with
//! analytics_events, a test clock, an SMTP server of the test's own and an HTTP provider stub.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use chrono::{DateTime, Duration, TimeZone, Utc};
use titan_campaign::{
    app::{Campaigns, Parts},
    channel::{Channels, Smtp},
    config::Settings,
    domain::{
        Caps, Channel, Contact, LinkSigner, NewCampaign, QuietHours, Rule, Schedule, Segment,
        Template, Transition,
    },
    experiments::Experiments,
    metrics::Metrics,
    store::{ch::ChAudience, pg::PgStore},
    testing::SmtpServer,
};
use titan_crds::config::PUSH_TOKEN_ENV;
use titan_kit::{
    datastores::{clickhouse, postgres},
    idempotency,
    testing::{TestClickHouse, TestClock, TestPostgres},
};

pub type App = Campaigns<PgStore, ChAudience>;

/// The test clock's start: every data set is relative to it.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0)
        .single()
        .expect("valid time")
}

pub struct Env {
    pub pg: TestPostgres,
    pub ch: TestClickHouse,
    pub clock: TestClock,
    pub app: Arc<App>,
    pub smtp: Option<SmtpServer>,
}

pub const SECRET: &[u8] = b"campaign-test-secret-campaign-test-secret";
pub const BASE: &str = "http://links.test";

pub struct Setup {
    pub smtp: bool,
    /// The SMTP login (user, password) the email provider uses.
    pub smtp_login: Option<(String, String)>,
    /// The abtesting client for campaigns with variants.
    pub experiments: Option<Experiments>,
    pub push_url: Option<String>,
    /// The push provider's token, as the operator passes it from `providerTokensSecret`.
    pub push_token: Option<String>,
    pub batch: u32,
    /// The global send rate (0 = none).
    pub rate: u32,
    pub claim_timeout: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            smtp: false,
            experiments: None,
            smtp_login: None,
            push_url: None,
            push_token: None,
            batch: 500,
            rate: 0,
            claim_timeout: Duration::seconds(120),
        }
    }
}

pub async fn env(setup: Setup) -> Env {
    let pg = TestPostgres::new().await;
    postgres::migrate(
        &pg.pool,
        "campaign",
        (titan_campaign::service().migrator.expect("migrations"))(),
    )
    .await
    .expect("campaign migrations");
    let ch = TestClickHouse::new().await;
    clickhouse::migrate(&ch.client, "analytics", titan_analytics::store::MIGRATIONS)
        .await
        .expect("analytics tables");
    let smtp = if setup.smtp {
        Some(SmtpServer::start().await)
    } else {
        None
    };
    let clock = TestClock::at(t0());
    let app = app_on(&pg, &ch, &clock, smtp.as_ref(), &setup);
    Env {
        pg,
        ch,
        clock,
        app,
        smtp,
    }
}

impl Env {
    /// Registers contacts.
    pub async fn contacts(&self, contacts: &[Contact]) {
        for c in contacts {
            self.app.put_contact(c).await.expect("contact");
        }
    }

    /// Users who bought 24 hours before t0 (so a `purchased_within` rule selects them), each
    /// with a contact `<user>@shop.test` in UTC at level 1.
    pub async fn buyers(&self, users: &[&str]) {
        let rows: Vec<Ev<'_>> = users
            .iter()
            .map(|u| Ev(u, "flashsale.purchased", 24, "p1", 1000, "FR"))
            .collect();
        events(&self.ch, &rows).await;
        let contacts: Vec<Contact> = users
            .iter()
            .map(|u| contact(u, &format!("{u}@shop.test"), "", 1))
            .collect();
        self.contacts(&contacts).await;
    }
}

/// Another replica on the same stores.
pub fn app_on(
    pg: &TestPostgres,
    ch: &TestClickHouse,
    clock: &TestClock,
    smtp: Option<&SmtpServer>,
    setup: &Setup,
) -> Arc<App> {
    let settings = Settings {
        send_batch_size: setup.batch,
        send_rate_per_second: setup.rate,
        push_provider_url: setup.push_url.clone(),
        ..Settings::default()
    };
    // The providers as the service builds them, its environment replaced by the setup's.
    let configured = titan_campaign::channels(&settings, |name| {
        (name == PUSH_TOKEN_ENV)
            .then(|| setup.push_token.clone())
            .flatten()
    })
    .expect("providers");
    let channels = Channels {
        email: smtp.map(|s| {
            Smtp::new(
                "127.0.0.1",
                s.port,
                "shop@titan.test",
                setup.smtp_login.clone(),
                8,
            )
            .expect("smtp transport")
        }),
        push: configured.push,
        sms: None,
    };
    Arc::new(Campaigns::new(
        PgStore::new(pg.pool.clone()),
        ChAudience::new(ch.client.clone()),
        Parts {
            settings,
            channels,
            experiments: setup.experiments.clone(),
            links: LinkSigner::derive(SECRET),
            public_base_url: BASE.into(),
            clock: clock.clock(),
            metrics: Metrics::new(&prometheus::Registry::new()).expect("metrics"),
            claim_timeout: setup.claim_timeout,
        },
    ))
}

/// One analytics event: (user, name, hours before t0, product, revenue, country).
pub struct Ev<'a>(
    pub &'a str,
    pub &'a str,
    pub i64,
    pub &'a str,
    pub i64,
    pub &'a str,
);

pub async fn events(ch: &TestClickHouse, rows: &[Ev<'_>]) {
    let mut values = Vec::new();
    for (i, Ev(user, name, hours, product, revenue, country)) in rows.iter().enumerate() {
        let at = (t0() - Duration::hours(*hours)).timestamp();
        let order = if *revenue > 0 {
            format!("o-{i}")
        } else {
            String::new()
        };
        let source = if *revenue > 0 { "bus" } else { "client" };
        values.push(format!(
            "('e-{i}', '{name}', '{user}', '', toDateTime({at}), 0, toDate(toDateTime({at})), '{{}}', '', '', \
             '{country}', '', 'test', '{product}', '{order}', '', {revenue}, 'USD', '{source}', now())"
        ));
    }
    ch.client
        .query(&format!(
            "INSERT INTO analytics_events VALUES {}",
            values.join(", ")
        ))
        .execute()
        .await
        .expect("insert events");
}

pub fn contact(user: &str, email: &str, tz: &str, level: u32) -> Contact {
    Contact::new(
        user,
        email,
        "",
        &format!("push-{user}"),
        tz,
        level,
        "Ann",
        "FR",
    )
    .expect("contact")
}

pub fn spec(channel: Channel, rules: Vec<Rule>) -> NewCampaign {
    NewCampaign::new(
        "Winter sale",
        channel,
        Template::new(
            "Hello {{ first_name }}",
            "<p>Hi {{ first_name }} & welcome, level {{ level }}.</p>\
             <a href=\"{{ click_url }}\">shop</a> <a href=\"{{ unsubscribe_url }}\">unsubscribe</a>",
            "https://shop.test/winter",
        )
        .expect("template"),
        Segment::new(rules).expect("segment"),
        Caps::NONE,
        QuietHours::NONE,
        1_000_000,
        10,
        "USD",
    )
    .expect("campaign")
}

static REQUESTS: AtomicU32 = AtomicU32::new(0);

pub fn key(method: &'static str) -> idempotency::Key {
    let n = REQUESTS.fetch_add(1, Ordering::SeqCst);
    idempotency::Key::new(
        "campaign",
        method,
        "admin-1",
        &format!("r-{n}-{}", uuid::Uuid::new_v4()),
        b"",
    )
    .expect("key")
}

/// Creates and schedules a campaign due now (at the test clock).
pub async fn launch(env: &Env, spec: NewCampaign) -> titan_campaign::domain::Campaign {
    let c = env
        .app
        .create(&key("CreateCampaign"), spec)
        .await
        .expect("create");
    env.app
        .transition(
            &key("ScheduleCampaign"),
            c.id,
            Transition::Schedule,
            Some(Schedule::new(env.clock.now(), 0, None).expect("schedule")),
        )
        .await
        .expect("schedule")
}

/// Deliveries of a campaign by status.
pub async fn statuses(env: &Env, id: titan_campaign::domain::CampaignId) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM campaign_deliveries WHERE campaign_id = $1 GROUP BY status",
    )
    .bind(id.uuid())
    .fetch_all(&env.pg.pool)
    .await
    .expect("statuses");
    rows.into_iter().collect()
}

/// An HTTP provider that answers 500 to the first `failures` requests, then 200, and keeps
/// what it accepted.
#[derive(Clone, Default)]
pub struct Stub {
    pub failures: Arc<AtomicU32>,
    pub requests: Arc<AtomicU32>,
    pub accepted: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    /// The `Authorization` header of every request ("" when absent).
    pub authorizations: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    pub async fn start(failures: u32) -> (Self, String) {
        use axum::{Json, extract::State, http::HeaderMap, routing::post};
        let stub = Self::default();
        stub.failures.store(failures, Ordering::SeqCst);
        let app = axum::Router::new()
            .route(
                "/send",
                post(
                    |State(s): State<Stub>,
                     headers: HeaderMap,
                     Json(v): Json<serde_json::Value>| async move {
                        s.requests.fetch_add(1, Ordering::SeqCst);
                        let authorization = headers
                            .get("authorization")
                            .and_then(|a| a.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        s.authorizations.lock().expect("lock").push(authorization);
                        if s.failures
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
                            .is_ok()
                        {
                            return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        let key = headers
                            .get("idempotency-key")
                            .and_then(|k| k.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        s.accepted.lock().expect("lock").push((key, v));
                        axum::http::StatusCode::OK
                    },
                ),
            )
            .with_state(stub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/send", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (stub, url)
    }
}
