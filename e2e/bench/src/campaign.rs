//! The campaign load generator: `titan serve campaign analytics` (release) with a real SMTP
//! server (aiosmtpd, `TITAN_TEST_AIOSMTPD`, logging each message's recipients or, with `--sink
//! maildir`, writing a file per message as the tests do) or, to measure the sender alone, a
//! counting relay (`--sink counting`: SMTP with PIPELINING, counts messages and recipients,
//! stores nothing); a segment of `users` buyers
//! generated in `analytics_events` with their contacts; one EMAIL campaign scheduled now,
//! timed until every delivery is recorded SENT and checked against the messages counted at
//! the SMTP server (each recipient once); then `events` more events and EstimateSegment timed
//! over them.

use std::{
    collections::HashSet,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use titan_campaign::testing::SmtpServer;
use titan_e2e::{Cell, CellOptions, authed, seconds_from_now};
use titan_kit::reexport::sqlx;
use titan_proto::campaign::v1::{self as pb, campaign_service_client::CampaignServiceClient};

/// Rows per INSERT of the evaluation data set: about 3 s each on this machine, a tenth of the
/// cell's query deadline.
const EVALUATION_SLICE: u64 = 1_000_000;

#[derive(Debug, Clone)]
pub struct CampaignOptions {
    /// Segment members, each with a contact and a purchase.
    pub users: u32,
    /// Events generated for the segment evaluation timing (0 skips it).
    pub events: u64,
    pub batch: u32,
    pub release: bool,
    pub sink: Sink,
}

/// The SMTP server the campaign sends to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Sink {
    /// aiosmtpd writing every message to a maildir, a file each (what the tests use).
    Maildir,
    /// aiosmtpd writing only each message's recipients, one line per message, to a file:
    /// the real server's SMTP without the maildir's file per message.
    #[default]
    Recipients,
    /// A relay that only counts messages and recipients.
    Counting,
}

/// aiosmtpd with a handler that appends each message's recipients as one line.
const RECIPIENTS: &str = r#"
import sys, time
from aiosmtpd.controller import Controller
host, port, path = sys.argv[1:4]
out = open(path, "w", buffering=1)
class Recipients:
    async def handle_DATA(self, server, session, envelope):
        out.write(" ".join(envelope.rcpt_tos) + "\n")
        return "250 OK"
Controller(Recipients(), hostname=host, port=int(port)).start()
while True:
    time.sleep(3600)
"#;

/// The aiosmtpd of [`Sink::Recipients`]; stopped when dropped.
struct RecipientLog {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl RecipientLog {
    async fn start() -> anyhow::Result<(Self, u16)> {
        let python = std::env::var("TITAN_TEST_AIOSMTPD")
            .context("TITAN_TEST_AIOSMTPD (aiosmtpd's python) is not set")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("recipients");
        let child = tokio::process::Command::new(python)
            .args(["-c", RECIPIENTS, "127.0.0.1", &port.to_string()])
            .arg(&path)
            .kill_on_drop(true)
            .spawn()
            .context("start aiosmtpd")?;
        titan_kit::testing::eventually("aiosmtpd to listen", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop)
        })
        .await;
        Ok((
            Self {
                path,
                _dir: dir,
                _child: child,
            },
            port,
        ))
    }

    /// Messages received and distinct recipients.
    fn counts(&self) -> anyhow::Result<(u64, u64)> {
        let text = std::fs::read_to_string(&self.path)?;
        let distinct: HashSet<&str> = text.split_whitespace().collect();
        Ok((text.lines().count() as u64, distinct.len() as u64))
    }
}

/// A relay speaking just enough SMTP for lettre (EHLO with PIPELINING, MAIL, RCPT, DATA,
/// RSET, NOOP, QUIT) that counts each message and its recipients and stores nothing.
#[derive(Debug, Clone, Default)]
struct CountingSink {
    messages: Arc<AtomicU64>,
    recipients: Arc<Mutex<HashSet<String>>>,
}

impl CountingSink {
    async fn start() -> anyhow::Result<(Self, u16)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let sink = Self::default();
        let accepting = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = accepting.clone();
                // A session ends when lettre closes its pooled connection; an I/O error
                // there is that close, and what was counted stays counted.
                tokio::spawn(async move { sink.session(stream).await.ok() });
            }
        });
        Ok((sink, port))
    }

    async fn session(&self, stream: tokio::net::TcpStream) -> std::io::Result<()> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        write.write_all(b"220 sink ESMTP\r\n").await?;
        let mut line = Vec::new();
        let mut to = Vec::new();
        loop {
            line.clear();
            if read.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            let command = String::from_utf8_lossy(&line).to_ascii_uppercase();
            let reply: &[u8] = if command.starts_with("EHLO") {
                b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
            } else if command.starts_with("MAIL") {
                to.clear();
                b"250 ok\r\n"
            } else if command.starts_with("RCPT") {
                let text = String::from_utf8_lossy(&line);
                let address = text
                    .split_once('<')
                    .and_then(|(_, rest)| rest.split_once('>'))
                    .map(|(a, _)| a.to_owned())
                    .unwrap_or_default();
                to.push(address);
                b"250 ok\r\n"
            } else if command.starts_with("DATA") {
                write.write_all(b"354 go on\r\n").await?;
                loop {
                    line.clear();
                    if read.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" {
                        break;
                    }
                }
                self.messages.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut seen) = self.recipients.lock() {
                    seen.extend(to.drain(..));
                }
                b"250 ok\r\n"
            } else if command.starts_with("QUIT") {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else if command.starts_with("RSET")
                || command.starts_with("NOOP")
                || command.starts_with("HELO")
            {
                b"250 ok\r\n"
            } else {
                b"500 not understood\r\n"
            };
            write.write_all(reply).await?;
        }
    }

    /// Messages received and distinct recipients.
    fn counts(&self) -> (u64, u64) {
        let distinct = self.recipients.lock().map(|r| r.len()).unwrap_or(0);
        (self.messages.load(Ordering::Relaxed), distinct as u64)
    }
}

impl CampaignOptions {
    /// CI's short mode: a small segment, for the checks only.
    pub fn quick() -> Self {
        Self {
            users: 500,
            events: 20_000,
            batch: 100,
            release: false,
            sink: Sink::Maildir,
        }
    }
}

#[derive(Debug, Default)]
pub struct CampaignReport {
    pub users: u32,
    pub sink: Sink,
    pub sent: u64,
    pub received: u64,
    pub distinct: u64,
    pub send: Duration,
    pub events: u64,
    /// EstimateSegment of each segment over the events, as the admin sees it.
    pub estimates: Vec<(&'static str, u64, Duration)>,
}

impl CampaignReport {
    /// Every member got exactly one message.
    pub fn exact(&self) -> bool {
        self.sent == u64::from(self.users)
            && self.received == self.sent
            && self.distinct == self.received
    }
}

impl fmt::Display for CampaignReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.send.as_secs_f64().max(f64::EPSILON);
        writeln!(f, "campaign email to a {}-user segment", self.users)?;
        writeln!(
            f,
            "  sent {} in {:?}: {:.0} emails/s (target ≥ 2,000/s)",
            self.sent,
            self.send,
            self.sent as f64 / secs
        )?;
        writeln!(
            f,
            "  at the SMTP server ({:?}): {} messages, {} distinct recipients",
            self.sink, self.received, self.distinct
        )?;
        if self.events > 0 {
            writeln!(f, "  segment evaluation over {} events:", self.events)?;
            for (name, users, took) in &self.estimates {
                writeln!(f, "    {name:<40} {users:>9} users in {took:?}")?;
            }
        }
        Ok(())
    }
}

fn segment(rule: pb::segment_rule::Rule) -> Option<pb::Segment> {
    Some(pb::Segment {
        rules: vec![pb::SegmentRule { rule: Some(rule) }],
    })
}

pub async fn campaign(o: &CampaignOptions) -> anyhow::Result<CampaignReport> {
    // Only one of them runs; the others stay `None`.
    let (mut smtp, mut log, mut counting) = (None, None, None);
    let port = match o.sink {
        Sink::Maildir => smtp.insert(SmtpServer::start().await).port,
        Sink::Recipients => {
            let (started, port) = RecipientLog::start().await?;
            log = Some(started);
            port
        }
        Sink::Counting => {
            let (sink, port) = CountingSink::start().await?;
            counting = Some(sink);
            port
        }
    };
    let cell = Cell::start_with(CellOptions {
        services: vec!["campaign".into(), "analytics".into()],
        config: Some(format!(
            "services:\n  campaign:\n    sendBatchSize: {}\n    smtp:\n      host: 127.0.0.1\n      port: {}\n      from: shop@titan.test\n",
            o.batch, port
        )),
        release: o.release,
    })
    .await;
    let mut client = CampaignServiceClient::new(cell.channel().await);
    let admin = cell.token("bench", &["admin"]);
    let now = chrono::Utc::now().timestamp();
    // One verified purchase per member in the last week.
    cell.clickhouse
        .client
        .query(&format!(
            "INSERT INTO analytics_events (event_id, name, user_id, time, date, product_id, order_id, revenue, country, source) \
             SELECT concat('m', toString(number)), 'flashsale.purchased', concat('u', toString(number)), \
                    toDateTime({now} - 86400 - number % 500000), toDate(toDateTime({now} - 86400 - number % 500000)), \
                    concat('p', toString(number % 1000)), concat('o', toString(number)), 1999, 'FR', 'bus' \
             FROM system.numbers LIMIT {}",
            o.users
        ))
        .execute()
        .await
        .context("segment events")?;
    sqlx::query(
        "INSERT INTO campaign_contacts (user_id, email, phone, push_token, time_zone, level, first_name, country, updated_at)
         SELECT 'u' || n, 'u' || n || '@shop.test', '', '', 'UTC', n % 11, 'Ann', 'FR', now()
         FROM generate_series(0, $1 - 1) AS n",
    )
    .bind(i64::from(o.users))
    .execute(&cell.db.pool)
    .await
    .context("contacts")?;

    let created = client
        .create_campaign(authed(
            pb::CreateCampaignRequest {
                request_id: "bench".into(),
                name: "bench".into(),
                channel: pb::Channel::Email.into(),
                content: Some(pb::Content {
                    subject: "Hello {{ first_name }}".into(),
                    body: "<p>Hi {{ first_name }}, level {{ level }}.</p><a href=\"{{ unsubscribe_url }}\">unsubscribe</a>".into(),
                    click_url: String::new(),
                }),
                segment: segment(pb::segment_rule::Rule::PurchasedWithin(pb::PurchasedWithin {
                    within_days: 30,
                })),
                caps: None,
                quiet_hours: None,
                budget: i64::MAX,
                cost_per_message: 1,
                currency: "USD".into(),
                trigger: None,
                variants: None,
            },
            &admin,
        ))
        .await?
        .into_inner()
        .campaign
        .context("campaign")?;
    let started = Instant::now();
    client
        .schedule_campaign(authed(
            pb::ScheduleCampaignRequest {
                request_id: "bench-s".into(),
                campaign_id: created.id.clone(),
                schedule: Some(pb::Schedule {
                    start_at: Some(seconds_from_now(0)),
                    repeat_every_hours: 0,
                    end_at: None,
                }),
            },
            &admin,
        ))
        .await?;
    let deadline = started + Duration::from_secs(600);
    // Polled through the pending and sending partial indexes, not by counting every
    // delivery: a scan of the whole table ten times a second cost PostgreSQL more CPU than
    // the claims it was timing. Before the snapshot there is nothing open either, so the
    // first wait is for the snapshot's rows.
    let mut snapshot = false;
    loop {
        let open: i64 = if snapshot {
            sqlx::query_scalar(
                "SELECT count(*) FROM campaign_deliveries WHERE status IN ('PENDING', 'SENDING')",
            )
            .fetch_one(&cell.db.pool)
            .await?
        } else {
            sqlx::query_scalar("SELECT $1 - count(*) FROM campaign_deliveries")
                .bind(i64::from(o.users))
                .fetch_one(&cell.db.pool)
                .await?
        };
        match (snapshot, open) {
            (false, 0) => snapshot = true,
            (true, 0) => break,
            _ => {}
        }
        ensure!(
            Instant::now() < deadline,
            "{open} deliveries still open after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent: i64 =
        sqlx::query_scalar("SELECT count(*) FROM campaign_deliveries WHERE status = 'SENT'")
            .fetch_one(&cell.db.pool)
            .await?;
    let sent = u64::try_from(sent)?;
    let send = started.elapsed();
    let (received, distinct) = if let Some(smtp) = &smtp {
        let mails = smtp.messages();
        let distinct: HashSet<&str> = mails.iter().map(|m| m.headers["to"].as_str()).collect();
        (mails.len() as u64, distinct.len() as u64)
    } else if let Some(log) = &log {
        log.counts()?
    } else {
        counting.as_ref().map_or((0, 0), CountingSink::counts)
    };
    let mut report = CampaignReport {
        users: o.users,
        sink: o.sink,
        sent,
        received,
        distinct,
        send,
        events: o.events,
        estimates: Vec::new(),
    };
    if o.events == 0 {
        return Ok(report);
    }
    // The evaluation data set: events of 1,000,000 users over 30 days, a tenth of them
    // purchases, views of 1,000 products, ten countries. Loaded in slices: the cell's client
    // gives every query `max_execution_time` (30 s), and one 10-million-row INSERT through the
    // analytics rollup views outlasts it once earlier scenarios keep ClickHouse merging.
    for start in (0..o.events).step_by(EVALUATION_SLICE as usize) {
        let rows = EVALUATION_SLICE.min(o.events - start);
        cell.clickhouse
            .client
            .query(&format!(
            "INSERT INTO analytics_events (event_id, name, user_id, time, date, product_id, order_id, revenue, country, source) \
             SELECT concat('x', toString(number)), \
                    if(number % 10 = 0, 'flashsale.purchased', if(number % 10 < 5, 'product_view', 'page_view')), \
                    concat('u', toString(intHash32(number) % 1000000)), \
                    toDateTime({now} - intHash32(number + 7) % 2592000), \
                    toDate(toDateTime({now} - intHash32(number + 7) % 2592000)), \
                    concat('p', toString(intHash32(number + 3) % 1000)), \
                    if(number % 10 = 0, concat('x', toString(number)), ''), \
                    if(number % 10 = 0, 2500, 0), \
                    arrayElement(['FR', 'DE', 'US', 'JP', 'BR', 'IN', 'GB', 'ES', 'IT', 'CA'], intHash32(number + 11) % 10 + 1), \
                    if(number % 10 = 0, 'bus', 'client') \
             FROM (SELECT number + {start} AS number FROM system.numbers LIMIT {rows})"
            ))
            .execute()
            .await
            .with_context(|| format!("evaluation events {start}..{}", start + rows))?;
    }
    use pb::segment_rule::Rule as R;
    let segments: Vec<(&'static str, Option<pb::Segment>)> = vec![
        (
            "purchased in the last 7 days",
            segment(R::PurchasedWithin(pb::PurchasedWithin { within_days: 7 })),
        ),
        (
            "viewed p42 in 30 days, not bought",
            segment(R::ViewedNotBought(pb::ViewedNotBought {
                product_id: "p42".into(),
                within_days: 30,
            })),
        ),
        (
            "last country FR or DE (30 days)",
            segment(R::CountryIn(pb::CountryIn {
                countries: vec!["FR".into(), "DE".into()],
                within_days: 30,
            })),
        ),
        (
            "≥ 5 page views in 30 days",
            segment(R::EventCount(pb::EventCount {
                name: "page_view".into(),
                min_count: 5,
                within_days: 30,
            })),
        ),
    ];
    for (name, s) in segments {
        let started = Instant::now();
        let users = client
            .estimate_segment(authed(pb::EstimateSegmentRequest { segment: s }, &admin))
            .await?
            .into_inner()
            .users;
        report.estimates.push((name, users, started.elapsed()));
    }
    Ok(report)
}
