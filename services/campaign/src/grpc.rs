//! The campaign service's gRPC edge: roles, proto ↔ domain with every input validated before
//! any I/O, and errors → status.

use std::sync::Arc;

use titan_kit::{
    auth::{self, Caller},
    error::to_status,
    idempotency,
    wire::{instant, timestamp},
};
use titan_proto::campaign::v1::{self as pb, campaign_service_server::CampaignService};
use tonic::{Request, Response, Status};

use crate::{
    app::{Audience, CampaignError, CampaignStore, Campaigns, Report},
    domain::{
        Bounce, Campaign, CampaignId, Caps, Channel, Contact, InputError, Model, NewCampaign,
        QuietHours, Rule, SERVICE, Schedule, Segment, Status as CampaignStatus, Template,
        Transition, Trigger, Variant, Variants, variants::MAX_VARIANTS,
    },
};

pub const DOMAIN: &str = "campaign.titan.dev";
const ADMIN: &str = "admin";
const ANALYST: &str = "analyst";
const SERVICE_ROLE: &str = "service";

fn status(e: CampaignError) -> Status {
    to_status(DOMAIN, &e)
}

fn invalid(e: InputError) -> Status {
    status(CampaignError::Invalid(e))
}

pub struct Grpc<S, A> {
    app: Arc<Campaigns<S, A>>,
}

impl<S, A> std::fmt::Debug for Grpc<S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<S, A> Grpc<S, A> {
    pub fn new(app: Arc<Campaigns<S, A>>) -> Self {
        Self { app }
    }
}

fn key<M: prost::Message>(
    method: &'static str,
    caller: &Caller,
    request_id: &str,
    body: &M,
) -> Result<idempotency::Key, Status> {
    idempotency::Key::of_message(SERVICE, method, caller, request_id, body)
        .map_err(|e| to_status(DOMAIN, &e))
}

fn channel_in(v: i32) -> Result<Channel, InputError> {
    match pb::Channel::try_from(v) {
        Ok(pb::Channel::Email) => Ok(Channel::Email),
        Ok(pb::Channel::Push) => Ok(Channel::Push),
        Ok(pb::Channel::Sms) => Ok(Channel::Sms),
        Ok(pb::Channel::Banner) => Ok(Channel::Banner),
        Ok(pb::Channel::Popup) => Ok(Channel::Popup),
        _ => Err(InputError::new(
            "channel",
            "must be EMAIL, PUSH, SMS, BANNER or POPUP",
        )),
    }
}

fn channel_out(c: Channel) -> pb::Channel {
    match c {
        Channel::Email => pb::Channel::Email,
        Channel::Push => pb::Channel::Push,
        Channel::Sms => pb::Channel::Sms,
        Channel::Banner => pb::Channel::Banner,
        Channel::Popup => pb::Channel::Popup,
    }
}

fn status_out(s: CampaignStatus) -> pb::Status {
    match s {
        CampaignStatus::Draft => pb::Status::Draft,
        CampaignStatus::Scheduled => pb::Status::Scheduled,
        CampaignStatus::Running => pb::Status::Running,
        CampaignStatus::Paused => pb::Status::Paused,
        CampaignStatus::Completed => pb::Status::Completed,
        CampaignStatus::Cancelled => pb::Status::Cancelled,
    }
}

fn segment_in(s: Option<pb::Segment>) -> Result<Segment, InputError> {
    let s = s.ok_or_else(|| InputError::new("segment", "is required"))?;
    let rules = s
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            use pb::segment_rule::Rule as R;
            Ok(match r.rule {
                Some(R::PurchasedWithin(p)) => Rule::PurchasedWithin {
                    within_days: p.within_days,
                },
                Some(R::ViewedNotBought(v)) => Rule::ViewedNotBought {
                    product_id: v.product_id,
                    within_days: v.within_days,
                },
                Some(R::CountryIn(c)) => Rule::CountryIn {
                    countries: c.countries,
                    within_days: c.within_days,
                },
                Some(R::EventCount(e)) => Rule::EventCount {
                    name: e.name,
                    min_count: e.min_count,
                    within_days: e.within_days,
                },
                Some(R::LevelBetween(l)) => Rule::LevelBetween {
                    min: l.min,
                    max: l.max,
                },
                None => {
                    return Err(InputError::new(
                        format!("segment.rules[{i}]"),
                        "names no rule",
                    ));
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Segment::new(rules)
}

fn segment_out(s: &Segment) -> pb::Segment {
    use pb::segment_rule::Rule as R;
    pb::Segment {
        rules: s
            .rules()
            .iter()
            .map(|r| pb::SegmentRule {
                rule: Some(match r.clone() {
                    Rule::PurchasedWithin { within_days } => {
                        R::PurchasedWithin(pb::PurchasedWithin { within_days })
                    }
                    Rule::ViewedNotBought {
                        product_id,
                        within_days,
                    } => R::ViewedNotBought(pb::ViewedNotBought {
                        product_id,
                        within_days,
                    }),
                    Rule::CountryIn {
                        countries,
                        within_days,
                    } => R::CountryIn(pb::CountryIn {
                        countries,
                        within_days,
                    }),
                    Rule::EventCount {
                        name,
                        min_count,
                        within_days,
                    } => R::EventCount(pb::EventCount {
                        name,
                        min_count,
                        within_days,
                    }),
                    Rule::LevelBetween { min, max } => {
                        R::LevelBetween(pb::LevelBetween { min, max })
                    }
                }),
            })
            .collect(),
    }
}

fn campaign_out(c: &Campaign) -> pb::Campaign {
    let s = &c.spec;
    pb::Campaign {
        id: c.id.to_string(),
        name: s.name.clone(),
        channel: channel_out(s.channel).into(),
        status: status_out(c.status).into(),
        content: Some(pb::Content {
            subject: s.template.subject_source().to_owned(),
            body: s.template.body_source().to_owned(),
            click_url: s.template.click_url().to_owned(),
        }),
        segment: s.trigger.is_none().then(|| segment_out(&s.segment)),
        trigger: s.trigger.as_ref().map(|t| pb::Trigger {
            event: t.event.clone(),
            delay_hours: t.delay_hours,
            cancel_event: t.cancel_source().to_owned(),
        }),
        variants: s.variants.as_ref().map(variants_out),
        caps: Some(pb::Caps {
            max_per_user: s.caps.max_per_user,
            window_hours: s.caps.window_hours,
        }),
        quiet_hours: Some(pb::QuietHours {
            start_hour: s.quiet_hours.start_hour,
            end_hour: s.quiet_hours.end_hour,
        }),
        budget: s.budget,
        cost_per_message: s.cost_per_message,
        currency: s.currency.to_string(),
        schedule: c.schedule.map(|sc| pb::Schedule {
            start_at: Some(timestamp(sc.start_at)),
            repeat_every_hours: sc.repeat_every_hours,
            end_at: sc.end_at.map(timestamp),
        }),
        spent: c.spent,
        created_at: Some(timestamp(c.created_at)),
    }
}

fn campaign_id(s: &str) -> Result<CampaignId, Status> {
    CampaignId::parse("campaign_id", s).map_err(invalid)
}

fn new_campaign(r: &pb::CreateCampaignRequest) -> Result<NewCampaign, InputError> {
    let channel = channel_in(r.channel)?;
    let content = r
        .content
        .as_ref()
        .ok_or_else(|| InputError::new("content", "is required"))?;
    let template = Template::new(&content.subject, &content.body, &content.click_url)?;
    let trigger = r
        .trigger
        .as_ref()
        .map(|t| Trigger::new(&t.event, t.delay_hours, &t.cancel_event))
        .transpose()?;
    let segment = match (&trigger, &r.segment) {
        (None, s) => segment_in(s.clone())?,
        (Some(_), None) => Segment::anyone(),
        (Some(_), Some(_)) => {
            return Err(InputError::new(
                "segment",
                "must be absent on a triggered campaign (its audience is whoever triggers it)",
            ));
        }
    };
    let caps = r
        .caps
        .map(|c| Caps::new(c.max_per_user, c.window_hours))
        .transpose()?
        .unwrap_or(Caps::NONE);
    let quiet = r
        .quiet_hours
        .map(|q| QuietHours::new(q.start_hour, q.end_hour))
        .transpose()?
        .unwrap_or(QuietHours::NONE);
    let variants = r
        .variants
        .as_ref()
        .map(|v| variants_in(v, template.click_url()))
        .transpose()?;
    let c = NewCampaign::new(
        &r.name,
        channel,
        template,
        segment,
        caps,
        quiet,
        r.budget,
        r.cost_per_message,
        &r.currency,
    )?;
    let c = match trigger {
        Some(t) => c.triggered(t),
        None => c,
    };
    match variants {
        Some(v) => c.with_variants(v),
        None => Ok(c),
    }
}

fn variants_in(v: &pb::Variants, click_url: &str) -> Result<Variants, InputError> {
    if v.contents.len() > MAX_VARIANTS {
        return Err(InputError::new(
            "variants.contents",
            format!("must hold 1-{MAX_VARIANTS} variants"),
        ));
    }
    let contents = v
        .contents
        .iter()
        .enumerate()
        .map(|(i, vc)| {
            let field = |f: &str| format!("variants.contents[{i}].{f}");
            let content = vc
                .content
                .as_ref()
                .ok_or_else(|| InputError::new(field("content"), "is required"))?;
            if !content.click_url.is_empty() {
                return Err(InputError::new(
                    field("content.click_url"),
                    "must be empty: every variant links to the campaign's click_url",
                ));
            }
            let template = Template::new(&content.subject, &content.body, click_url)
                .map_err(|e| InputError::new(field(&e.field), e.message))?;
            Ok(Variant {
                key: vc.key.clone(),
                template,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Variants::new(&v.experiment_key, contents)
}

fn variants_out(v: &Variants) -> pb::Variants {
    pb::Variants {
        experiment_key: v.experiment_key.clone(),
        contents: v
            .contents
            .iter()
            .map(|vc| pb::VariantContent {
                key: vc.key.clone(),
                content: Some(pb::Content {
                    subject: vc.template.subject_source().to_owned(),
                    body: vc.template.body_source().to_owned(),
                    click_url: String::new(),
                }),
            })
            .collect(),
    }
}

fn schedule_in(s: Option<&pb::Schedule>) -> Result<Schedule, InputError> {
    let s = s.ok_or_else(|| InputError::new("schedule", "is required"))?;
    let start = s
        .start_at
        .as_ref()
        .ok_or_else(|| InputError::new("schedule.start_at", "is required"))?;
    let start = instant(start)
        .ok_or_else(|| InputError::new("schedule.start_at", "is not a valid timestamp"))?;
    let end = match &s.end_at {
        Some(t) => Some(
            instant(t)
                .ok_or_else(|| InputError::new("schedule.end_at", "is not a valid timestamp"))?,
        ),
        None => None,
    };
    Schedule::new(start, s.repeat_every_hours, end)
}

fn report_out(r: Report) -> pb::GetCampaignReportResponse {
    let c = r.counts;
    pb::GetCampaignReportResponse {
        sent: c.sent + c.bounced,
        delivered: c.sent,
        opened: c.opened,
        clicked: c.clicked,
        converted: r.converted,
        failed: c.failed,
        suppressed: c.suppressed,
        capped: c.capped,
        revenue: r.revenue,
        cost: r.cost,
        roi: r.roi,
        variants: c
            .variants
            .into_iter()
            .map(|v| pb::VariantReport {
                key: v.key,
                sent: v.sent,
                opened: v.opened,
                clicked: v.clicked,
            })
            .collect(),
        attribution: match r.model {
            Model::LastTouch => pb::Attribution::LastTouch,
            Model::FirstTouch => pb::Attribution::FirstTouch,
            Model::Linear => pb::Attribution::Linear,
            Model::TimeDecay { .. } => pb::Attribution::TimeDecay,
        }
        .into(),
    }
}

impl<S: CampaignStore, A: Audience> Grpc<S, A> {
    async fn steer(
        &self,
        caller: &Caller,
        method: &'static str,
        request_id: &str,
        campaign: &str,
        body: &impl prost::Message,
        t: Transition,
    ) -> Result<pb::Campaign, Status> {
        let id = campaign_id(campaign)?;
        let key = key(method, caller, request_id, body)?;
        let c = self
            .app
            .transition(&key, id, t, None)
            .await
            .map_err(status)?;
        Ok(campaign_out(&c))
    }
}

#[tonic::async_trait]
impl<S: CampaignStore, A: Audience> CampaignService for Grpc<S, A> {
    async fn put_contact(
        &self,
        request: Request<pb::PutContactRequest>,
    ) -> Result<Response<pb::PutContactResponse>, Status> {
        let caller = auth::caller(&request)?;
        caller.require_any_role(&[SERVICE_ROLE, ADMIN])?;
        let r = request.into_inner();
        let c = Contact::new(
            &r.user_id,
            &r.email,
            &r.phone,
            &r.push_token,
            &r.time_zone,
            r.level,
            &r.first_name,
            &r.country,
        )
        .map_err(invalid)?;
        self.app.put_contact(&c).await.map_err(status)?;
        Ok(Response::new(pb::PutContactResponse {}))
    }

    async fn record_bounce(
        &self,
        request: Request<pb::RecordBounceRequest>,
    ) -> Result<Response<pb::RecordBounceResponse>, Status> {
        let caller = auth::caller(&request)?;
        caller.require_any_role(&[SERVICE_ROLE, ADMIN])?;
        let r = request.into_inner();
        let b = Bounce::new(&r.message_id, r.permanent, &r.diagnostic).map_err(invalid)?;
        self.app.bounced(&b).await.map_err(status)?;
        Ok(Response::new(pb::RecordBounceResponse {}))
    }

    async fn create_campaign(
        &self,
        request: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::CreateCampaignResponse>, Status> {
        let (caller, r) = auth::caller_with_role(request, ADMIN)?;
        let spec = new_campaign(&r).map_err(invalid)?;
        let key = key("CreateCampaign", &caller, &r.request_id, &r)?;
        let c = self.app.create(&key, spec).await.map_err(status)?;
        Ok(Response::new(pb::CreateCampaignResponse {
            campaign: Some(campaign_out(&c)),
        }))
    }

    async fn get_campaign(
        &self,
        request: Request<pb::GetCampaignRequest>,
    ) -> Result<Response<pb::GetCampaignResponse>, Status> {
        let caller = auth::caller(&request)?;
        caller.require_any_role(&[ADMIN, ANALYST])?;
        let id = campaign_id(&request.get_ref().campaign_id)?;
        let c = self.app.get(id).await.map_err(status)?;
        Ok(Response::new(pb::GetCampaignResponse {
            campaign: Some(campaign_out(&c)),
        }))
    }

    async fn list_campaigns(
        &self,
        request: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        let caller = auth::caller(&request)?;
        caller.require_any_role(&[ADMIN, ANALYST])?;
        let r = request.into_inner();
        if r.page_size > crate::app::MAX_PAGE {
            return Err(invalid(InputError::new(
                "page_size",
                format!("{} is above {}", r.page_size, crate::app::MAX_PAGE),
            )));
        }
        let size = if r.page_size == 0 { 50 } else { r.page_size };
        let after = if r.page_token.is_empty() {
            None
        } else {
            Some(CampaignId::parse("page_token", &r.page_token).map_err(invalid)?)
        };
        let page = self.app.list(after, size).await.map_err(status)?;
        let next = if page.len() == size as usize {
            page.last().map(|c| c.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListCampaignsResponse {
            campaigns: page.iter().map(campaign_out).collect(),
            next_page_token: next,
        }))
    }

    async fn estimate_segment(
        &self,
        request: Request<pb::EstimateSegmentRequest>,
    ) -> Result<Response<pb::EstimateSegmentResponse>, Status> {
        let caller = auth::caller(&request)?;
        caller.require_any_role(&[ADMIN, ANALYST])?;
        let segment = segment_in(request.into_inner().segment).map_err(invalid)?;
        let users = self.app.estimate(&segment).await.map_err(status)?;
        Ok(Response::new(pb::EstimateSegmentResponse { users }))
    }

    async fn schedule_campaign(
        &self,
        request: Request<pb::ScheduleCampaignRequest>,
    ) -> Result<Response<pb::ScheduleCampaignResponse>, Status> {
        let (caller, r) = auth::caller_with_role(request, ADMIN)?;
        let id = campaign_id(&r.campaign_id)?;
        let schedule = schedule_in(r.schedule.as_ref()).map_err(invalid)?;
        let key = key("ScheduleCampaign", &caller, &r.request_id, &r)?;
        let c = self
            .app
            .transition(&key, id, Transition::Schedule, Some(schedule))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ScheduleCampaignResponse {
            campaign: Some(campaign_out(&c)),
        }))
    }

    async fn pause_campaign(
        &self,
        request: Request<pb::PauseCampaignRequest>,
    ) -> Result<Response<pb::PauseCampaignResponse>, Status> {
        let (caller, r) = auth::caller_with_role(request, ADMIN)?;
        let campaign = self
            .steer(
                &caller,
                "PauseCampaign",
                &r.request_id,
                &r.campaign_id,
                &r,
                Transition::Pause,
            )
            .await?;
        Ok(Response::new(pb::PauseCampaignResponse {
            campaign: Some(campaign),
        }))
    }

    async fn resume_campaign(
        &self,
        request: Request<pb::ResumeCampaignRequest>,
    ) -> Result<Response<pb::ResumeCampaignResponse>, Status> {
        let (caller, r) = auth::caller_with_role(request, ADMIN)?;
        let campaign = self
            .steer(
                &caller,
                "ResumeCampaign",
                &r.request_id,
                &r.campaign_id,
                &r,
                Transition::Resume,
            )
            .await?;
        Ok(Response::new(pb::ResumeCampaignResponse {
            campaign: Some(campaign),
        }))
    }

    async fn cancel_campaign(
        &self,
        request: Request<pb::CancelCampaignRequest>,
    ) -> Result<Response<pb::CancelCampaignResponse>, Status> {
        let (caller, r) = auth::caller_with_role(request, ADMIN)?;
        let campaign = self
            .steer(
                &caller,
                "CancelCampaign",
                &r.request_id,
                &r.campaign_id,
                &r,
                Transition::Cancel,
            )
            .await?;
        Ok(Response::new(pb::CancelCampaignResponse {
            campaign: Some(campaign),
        }))
    }

    async fn get_in_app_messages(
        &self,
        request: Request<pb::GetInAppMessagesRequest>,
    ) -> Result<Response<pb::GetInAppMessagesResponse>, Status> {
        let caller = auth::caller(&request)?;
        let messages = self.app.in_app(&caller.user_id).await.map_err(status)?;
        Ok(Response::new(pb::GetInAppMessagesResponse {
            messages: messages
                .into_iter()
                .map(|m| pb::InAppMessage {
                    campaign_id: m.campaign.to_string(),
                    channel: channel_out(m.channel).into(),
                    subject: m.subject,
                    body: m.body,
                    click_url: m.click_url,
                })
                .collect(),
        }))
    }

    async fn get_campaign_report(
        &self,
        request: Request<pb::GetCampaignReportRequest>,
    ) -> Result<Response<pb::GetCampaignReportResponse>, Status> {
        let caller = auth::caller(&request)?;
        caller.require_any_role(&[ADMIN, ANALYST])?;
        let r = request.into_inner();
        let id = campaign_id(&r.campaign_id)?;
        let model = match pb::Attribution::try_from(r.attribution) {
            Ok(pb::Attribution::Unspecified) => None,
            Ok(pb::Attribution::LastTouch) => Some(Model::LastTouch),
            Ok(pb::Attribution::FirstTouch) => Some(Model::FirstTouch),
            Ok(pb::Attribution::Linear) => Some(Model::Linear),
            Ok(pb::Attribution::TimeDecay) => Some(self.app.time_decay()),
            Err(_) => {
                return Err(invalid(InputError::new(
                    "attribution",
                    format!("{} is not an attribution model", r.attribution),
                )));
            }
        };
        let report = self.app.report(id, model).await.map_err(status)?;
        Ok(Response::new(report_out(report)))
    }
}
