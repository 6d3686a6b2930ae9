//! The campaign service: campaigns on five channels (EMAIL over SMTP, PUSH and SMS through
//! HTTP providers, BANNER and POPUP served to clients), audiences from segment rules compiled
//! into ClickHouse queries over analytics_events and snapshot when a send starts, one-off and
//! recurring schedules sent by whichever replica claims the work (each (campaign,
//! occurrence, user, channel) delivered at most once, even across a crash), caps, quiet
//! hours, suppressions and the budget, event triggers from the bus (a thank-you after a
//! purchase, an abandoned cart after N hours unless a purchase cancels it), and tracked opens,
//! clicks and conversions with attribution and ROI. PostgreSQL is the record; purchases and
//! trigger events arrive from the bus.
#![forbid(unsafe_code)]

pub mod app;
pub mod channel;
pub mod config;
pub mod domain;
pub mod experiments;
pub mod grpc;
pub mod metrics;
pub mod privacy;
pub mod store;
pub mod testing;
pub mod web;

use std::{sync::Arc, time::Duration};

use futures::FutureExt;
use secrecy::ExposeSecret;
use titan_crds::config::{
    PUSH_TOKEN_ENV, SMS_TOKEN_ENV, SMTP_PASSWORD_ENV, SMTP_USERNAME_ENV, TitanConfig,
};
use titan_kit::{
    Datastore, KitError, Mounted, ServiceContext, ServiceDef, auth::Authenticator,
    events::ConsumerOptions,
};
use titan_proto::campaign::v1::campaign_service_server::CampaignServiceServer;

use crate::{
    app::{Campaigns, Parts},
    channel::{Channels, Smtp, Webhook},
    config::Settings,
    domain::LinkSigner,
    experiments::Experiments,
    store::{ch::ChAudience, consumer::EventHandler, pg::PgStore},
};

/// How often the sender looks for due work.
const SEND_EVERY: Duration = Duration::from_millis(500);
/// A claimed delivery not recorded after this long belongs to a stopped replica.
const CLAIM_TIMEOUT_SECONDS: i64 = 120;
/// SMTP connections per replica: one per message in flight.
const SMTP_POOL: u32 = 128;

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        datastores: &[Datastore::Postgres, Datastore::Redis, Datastore::ClickHouse],
        // Campaigns, deliveries and in-app messages are PostgreSQL; segments (ClickHouse)
        // are read only when a send starts, and bus events (Redis) arrive later.
        ready_on: &[Datastore::Postgres],
        migrator: Some(|| sqlx::migrate!("./migrations")),
        clickhouse_migrations: &[],
        publishes_events: false,
        file_descriptor_set: titan_proto::FILE_DESCRIPTOR_SET,
        mount: |ctx| mount(ctx).boxed(),
    }
}

/// The SMTP login when `smtp.credentialsSecret` is set: the operator passes the Secret's
/// `username` and `password` as [`SMTP_USERNAME_ENV`] and [`SMTP_PASSWORD_ENV`], read
/// through `var`.
pub fn smtp_credentials(
    settings: &Settings,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<(String, String)>, KitError> {
    let Some(secret) = settings
        .smtp
        .as_ref()
        .and_then(|s| s.credentials_secret.as_ref())
    else {
        return Ok(None);
    };
    let read = |name: &str| {
        var(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            KitError::config(
                "services.campaign.smtp.credentialsSecret",
                format!("names Secret {secret:?}, but {name} is not set (its keys are username and password)"),
            )
        })
    };
    Ok(Some((read(SMTP_USERNAME_ENV)?, read(SMTP_PASSWORD_ENV)?)))
}

/// The providers the settings configure; `var` reads the environment (the SMTP login and the
/// providers' tokens).
pub fn channels(
    settings: &Settings,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Channels, KitError> {
    let email = match &settings.smtp {
        Some(smtp) => {
            let port = u16::try_from(smtp.port)
                .map_err(|_| KitError::config("services.campaign.smtp.port", "above 65535"))?;
            Some(
                Smtp::new(
                    &smtp.host,
                    port,
                    &smtp.from,
                    smtp_credentials(settings, &var)?,
                    SMTP_POOL,
                )
                .map_err(|e| KitError::config("services.campaign.smtp", e))?,
            )
        }
        None => None,
    };
    // A provider's token, when the operator set one from `providerTokensSecret`.
    let webhook = |field: &str, url: &Option<String>, token: &str| {
        url.as_deref()
            .map(|u| {
                Webhook::new(u, var(token).filter(|t| !t.is_empty()))
                    .map_err(|e| KitError::config(field, e))
            })
            .transpose()
    };
    Ok(Channels {
        email,
        push: webhook(
            "services.campaign.pushProviderUrl",
            &settings.push_provider_url,
            PUSH_TOKEN_ENV,
        )?,
        sms: webhook(
            "services.campaign.smsProviderUrl",
            &settings.sms_provider_url,
            SMS_TOKEN_ENV,
        )?,
    })
}

async fn mount(ctx: ServiceContext) -> Result<Mounted, KitError> {
    let settings = ctx.settings(Settings::from_yaml)?;
    let pool = ctx.postgres()?;
    // Links are signed with a key derived from the cell's token secret (every replica has it).
    let secret = ctx.config.auth.hs256_secret.as_ref().ok_or_else(|| {
        KitError::config(
            "auth.hs256Secret",
            "campaign signs its links with a key derived from it; set TITAN_AUTH_HS256_SECRET",
        )
    })?;
    let app = Arc::new(Campaigns::new(
        PgStore::new(pool.clone()),
        ChAudience::new(ctx.clickhouse()?),
        Parts {
            channels: channels(&settings, |name| std::env::var(name).ok())?,
            experiments: Some(Experiments::new(
                titan_kit::tls::endpoint(
                    "services.campaign.abtestingUrl",
                    &settings.abtesting_url,
                    &ctx.config.tls,
                )?,
                Authenticator::new(&ctx.config.auth)?,
            )),
            links: LinkSigner::derive(secret.expose_secret().as_bytes()),
            public_base_url: settings.public_base_url.clone(),
            settings,
            clock: Arc::new(chrono::Utc::now),
            metrics: metrics::Metrics::new(&ctx.registry)?,
            claim_timeout: chrono::Duration::seconds(CLAIM_TIMEOUT_SECONDS),
        },
    ));
    let sender = app.clone();
    let mut mounted = Mounted::new(&ctx)
        .grpc(CampaignServiceServer::new(grpc::Grpc::new(app.clone())))
        .http(web::router(app))
        .personal_data(privacy::Privacy::new(pool.clone()));
    for source in store::consumer::SOURCES {
        mounted = mounted.consume(
            format!("campaign-{source}-events"),
            ConsumerOptions::new(source, domain::SERVICE, &ctx.instance(), &ctx.config.events),
            EventHandler,
        );
    }
    Ok(mounted.every("campaign-sender", SEND_EVERY, move || {
        let app = sender.clone();
        async move { app.tick().await.map(drop) }
    }))
}

#[cfg(test)]
mod tests {
    use titan_crds::config::SmtpConfig;

    use super::*;

    #[test]
    fn the_smtp_login_is_read_only_when_a_secret_is_named_and_then_required() {
        let mut settings = Settings {
            smtp: Some(SmtpConfig {
                host: "smtp.example".into(),
                port: 587,
                from: "shop@example.com".into(),
                credentials_secret: None,
            }),
            ..Settings::default()
        };
        let both = |name: &str| Some(format!("{name}-value"));
        assert_eq!(smtp_credentials(&settings, both).expect("no login"), None);
        if let Some(smtp) = settings.smtp.as_mut() {
            smtp.credentials_secret = Some("smtp-login".into());
        }
        assert_eq!(
            smtp_credentials(&settings, both).expect("login"),
            Some((
                format!("{SMTP_USERNAME_ENV}-value"),
                format!("{SMTP_PASSWORD_ENV}-value")
            ))
        );
        let no_password = |name: &str| (name == SMTP_USERNAME_ENV).then(|| "shop".to_owned());
        let e = smtp_credentials(&settings, no_password).expect_err("password missing");
        assert!(e.to_string().contains(SMTP_PASSWORD_ENV), "{e}");
    }
}
