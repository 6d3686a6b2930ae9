//! Fraud's gRPC edge: proto ↔ domain and errors → status. The role is checked before the
//! input is parsed, so a caller without it learns nothing about what it sent.

use std::sync::Arc;

use titan_kit::{
    auth,
    error::to_status,
    wire::{instant, timestamp},
};
use titan_proto::fraud::v1::{self as pb, fraud_service_server::FraudService};
use tonic::{Request, Response, Status};

use crate::{
    app::{
        Case, Decided, Fraud, FraudError, FraudStore, HotStore, ModelVersion, RuleInput, SERVICE,
        SavedRule, require,
    },
    domain::{
        CaseStatus, Decision, InputError, Level, Signal, Transaction, Verdict,
        rules::{Action, Mode},
        transaction as t,
    },
};

pub const DOMAIN: &str = "fraud.titan.dev";

fn status(e: &FraudError) -> Status {
    to_status(DOMAIN, e)
}

pub struct Grpc<S, V> {
    app: Arc<Fraud<S, V>>,
}

impl<S, V> std::fmt::Debug for Grpc<S, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<S, V> Grpc<S, V> {
    pub fn new(app: Arc<Fraud<S, V>>) -> Self {
        Self { app }
    }
}

fn level(l: Level) -> i32 {
    (match l {
        Level::Low => pb::Level::Low,
        Level::Medium => pb::Level::Medium,
        Level::High => pb::Level::High,
        Level::Critical => pb::Level::Critical,
    }) as i32
}

fn decision(d: Decision) -> i32 {
    (match d {
        Decision::Approve => pb::Decision::Approve,
        Decision::Review => pb::Decision::Review,
        Decision::Reject => pb::Decision::Reject,
    }) as i32
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Review => "review",
        Action::Block => "block",
        Action::AddScore(_) => "add_score",
    }
}

/// The transaction a client sent, every field checked before any I/O.
pub fn transaction(r: &pb::CheckTransactionRequest) -> Result<Transaction, InputError> {
    Ok(Transaction {
        transaction_id: t::ident("transaction_id", &r.transaction_id)?,
        user_id: t::ident("user_id", &r.user_id)?,
        amount: t::amount("amount", r.amount)?,
        currency: t::currency("currency", &r.currency)?,
        ip: t::ip("ip", &r.ip)?,
        device: t::optional_ident("device_fingerprint", &r.device_fingerprint)?,
        card: t::optional_ident("card_fingerprint", &r.card_fingerprint)?,
        email_domain: t::email_domain("email_domain", &r.email_domain)?,
        user_agent: t::user_agent("user_agent", &r.user_agent)?,
        country: t::country("country", &r.country)?,
        billing_country: t::country("billing_country", &r.billing_country)?,
        shipping_country: t::country("shipping_country", &r.shipping_country)?,
        account_created_at: match &r.account_created_at {
            Some(ts) => Some(instant(ts).ok_or_else(|| {
                InputError::new("account_created_at", "is not a valid timestamp")
            })?),
            None => None,
        },
    })
}

fn decided(d: &Decided) -> pb::CheckTransactionResponse {
    pb::CheckTransactionResponse {
        transaction_id: d.transaction_id.clone(),
        score: d.score,
        level: level(d.level),
        decision: decision(d.decision),
        reasons: d
            .reasons
            .iter()
            .map(|r| pb::Reason {
                code: r.code.clone(),
                message: r.message.clone(),
                contribution: r.contribution,
            })
            .collect(),
        model_version: d.model_version.unwrap_or_default(),
        rules: d
            .rule_hits
            .iter()
            .map(|h| pb::RuleHit {
                rule: h.rule.clone(),
                version: h.version,
                action: action_name(h.action).to_owned(),
                shadow: h.shadow,
            })
            .collect(),
        degraded: d.degraded,
        case_id: d.case_id.map(|c| c.to_string()).unwrap_or_default(),
        decided_at: Some(timestamp(d.decided_at)),
    }
}

fn rule(s: &SavedRule) -> pb::Rule {
    let r = &s.rule;
    pb::Rule {
        name: r.name.clone(),
        version: r.version,
        priority: r.priority,
        condition: r.condition.clone(),
        action: (match r.action {
            Action::Allow => pb::RuleAction::Allow,
            Action::Review => pb::RuleAction::ReviewAction,
            Action::Block => pb::RuleAction::Block,
            Action::AddScore(_) => pb::RuleAction::AddScore,
        }) as i32,
        add_score: match r.action {
            Action::AddScore(s) => s,
            _ => 0.0,
        },
        mode: (match r.mode {
            Mode::Enforce => pb::RuleMode::Enforce,
            Mode::Shadow => pb::RuleMode::Shadow,
            Mode::Disabled => pb::RuleMode::Disabled,
        }) as i32,
        created_by: s.created_by.clone(),
        created_at: Some(timestamp(s.created_at)),
    }
}

fn rule_input(r: Option<pb::Rule>) -> Result<RuleInput, InputError> {
    let r = r.ok_or_else(|| InputError::new("rule", "is required"))?;
    let action = match pb::RuleAction::try_from(r.action) {
        Ok(pb::RuleAction::Allow) => Some(Action::Allow),
        Ok(pb::RuleAction::ReviewAction) => Some(Action::Review),
        Ok(pb::RuleAction::Block) => Some(Action::Block),
        Ok(pb::RuleAction::AddScore) if r.add_score.is_finite() => {
            Some(Action::AddScore(r.add_score))
        }
        Ok(pb::RuleAction::AddScore) => {
            return Err(InputError::new("rule.add_score", "must be a finite number"));
        }
        Ok(pb::RuleAction::Unspecified) => None,
        Err(_) => {
            return Err(InputError::new(
                "rule.action",
                format!("{} is not an action", r.action),
            ));
        }
    };
    let mode = match pb::RuleMode::try_from(r.mode) {
        Ok(pb::RuleMode::Enforce) => Some(Mode::Enforce),
        Ok(pb::RuleMode::Shadow) => Some(Mode::Shadow),
        Ok(pb::RuleMode::Disabled) => Some(Mode::Disabled),
        Ok(pb::RuleMode::Unspecified) => None,
        Err(_) => {
            return Err(InputError::new(
                "rule.mode",
                format!("{} is not a mode", r.mode),
            ));
        }
    };
    Ok(RuleInput {
        name: r.name,
        priority: r.priority,
        condition: r.condition,
        action,
        mode,
    })
}

fn model(m: &ModelVersion) -> pb::ModelVersion {
    pb::ModelVersion {
        version: m.version,
        intercept: m.model.intercept,
        weights: Signal::ALL
            .iter()
            .zip(&m.model.weights)
            .map(|(s, w)| (s.as_str().to_owned(), *w))
            .collect(),
        auc: m.auc,
        brier: m.brier,
        train_examples: m.train_examples,
        test_examples: m.test_examples,
        active: m.active,
        created_at: Some(timestamp(m.created_at)),
    }
}

fn case(c: &Case) -> pb::Case {
    pb::Case {
        id: c.id.to_string(),
        transaction_id: c.transaction_id.clone(),
        user_id: c.user_id.clone(),
        score: c.score,
        level: level(c.level),
        status: (match c.status {
            CaseStatus::Open => pb::CaseStatus::Open,
            CaseStatus::Assigned => pb::CaseStatus::Assigned,
            CaseStatus::Decided => pb::CaseStatus::Decided,
        }) as i32,
        assignee: c.assignee.clone().unwrap_or_default(),
        verdict: (match c.verdict {
            Some(Verdict::Fraud) => pb::Verdict::Fraud,
            Some(Verdict::Legitimate) => pb::Verdict::Legitimate,
            None => pb::Verdict::Unspecified,
        }) as i32,
        reason: c.reason.clone().unwrap_or_default(),
        opened_at: Some(timestamp(c.opened_at)),
        decided_at: c.decided_at.map(timestamp),
    }
}

#[tonic::async_trait]
impl<S: FraudStore, V: HotStore> FraudService for Grpc<S, V> {
    async fn check_transaction(
        &self,
        request: Request<pb::CheckTransactionRequest>,
    ) -> Result<Response<pb::CheckTransactionResponse>, Status> {
        let caller = auth::caller(&request)?;
        require(&caller, &[SERVICE]).map_err(|e| status(&e))?;
        let t = transaction(request.get_ref()).map_err(|e| status(&e.into()))?;
        let d = self.app.check(&caller, t).await.map_err(|e| status(&e))?;
        Ok(Response::new(decided(&d)))
    }

    async fn record_chargeback(
        &self,
        request: Request<pb::RecordChargebackRequest>,
    ) -> Result<Response<pb::RecordChargebackResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let chargebacks = self
            .app
            .chargeback(&caller, &r.transaction_id, &r.user_id, r.amount, &r.reason)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::RecordChargebackResponse { chargebacks }))
    }

    async fn record_payment_failure(
        &self,
        request: Request<pb::RecordPaymentFailureRequest>,
    ) -> Result<Response<pb::RecordPaymentFailureResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let failed_payments_7d = self
            .app
            .payment_failure(&caller, &r.payment_id, &r.user_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::RecordPaymentFailureResponse {
            failed_payments_7d,
        }))
    }

    async fn get_trust(
        &self,
        request: Request<pb::GetTrustRequest>,
    ) -> Result<Response<pb::GetTrustResponse>, Status> {
        let caller = auth::caller(&request)?;
        let t = self
            .app
            .trust(&caller, &request.get_ref().user_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetTrustResponse {
            trust: t.trust,
            account_age_days: i64::from(t.account_age_days),
            successful_orders: t.successful_orders,
            chargebacks: t.chargebacks,
        }))
    }

    async fn save_rule(
        &self,
        request: Request<pb::SaveRuleRequest>,
    ) -> Result<Response<pb::SaveRuleResponse>, Status> {
        let caller = auth::caller(&request)?;
        require(&caller, &[crate::app::ADMIN]).map_err(|e| status(&e))?;
        let input = rule_input(request.into_inner().rule).map_err(|e| status(&e.into()))?;
        let saved = self
            .app
            .save_rule(&caller, input)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::SaveRuleResponse {
            rule: Some(rule(&saved)),
        }))
    }

    async fn list_rules(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        let caller = auth::caller(&request)?;
        let rules = self.app.rules(&caller).await.map_err(|e| status(&e))?;
        Ok(Response::new(pb::ListRulesResponse {
            rules: rules.iter().map(rule).collect(),
        }))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let models = self.app.models(&caller).await.map_err(|e| status(&e))?;
        Ok(Response::new(pb::ListModelsResponse {
            models: models.iter().map(model).collect(),
        }))
    }

    async fn promote_model(
        &self,
        request: Request<pb::PromoteModelRequest>,
    ) -> Result<Response<pb::PromoteModelResponse>, Status> {
        let caller = auth::caller(&request)?;
        let m = self
            .app
            .promote(&caller, request.get_ref().version)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::PromoteModelResponse {
            model: Some(model(&m)),
        }))
    }

    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        let caller = auth::caller(&request)?;
        require(&caller, &[crate::app::ANALYST]).map_err(|e| status(&e))?;
        let r = request.get_ref();
        let filter = match pb::CaseStatus::try_from(r.status) {
            Ok(pb::CaseStatus::Unspecified) => None,
            Ok(pb::CaseStatus::Open) => Some(CaseStatus::Open),
            Ok(pb::CaseStatus::Assigned) => Some(CaseStatus::Assigned),
            Ok(pb::CaseStatus::Decided) => Some(CaseStatus::Decided),
            Err(_) => {
                let e = InputError::new("status", format!("{} is not a case status", r.status));
                return Err(status(&e.into()));
            }
        };
        let (cases, next) = self
            .app
            .cases(&caller, filter, r.page_size, &r.page_token)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::ListCasesResponse {
            cases: cases.iter().map(case).collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    async fn assign_case(
        &self,
        request: Request<pb::AssignCaseRequest>,
    ) -> Result<Response<pb::AssignCaseResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let c = self
            .app
            .assign(&caller, &r.case_id, &r.assignee)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::AssignCaseResponse {
            case: Some(case(&c)),
        }))
    }

    async fn decide_case(
        &self,
        request: Request<pb::DecideCaseRequest>,
    ) -> Result<Response<pb::DecideCaseResponse>, Status> {
        let caller = auth::caller(&request)?;
        require(&caller, &[crate::app::ANALYST]).map_err(|e| status(&e))?;
        let r = request.get_ref();
        let verdict = match pb::Verdict::try_from(r.verdict) {
            Ok(pb::Verdict::Fraud) => Some(Verdict::Fraud),
            Ok(pb::Verdict::Legitimate) => Some(Verdict::Legitimate),
            Ok(pb::Verdict::Unspecified) => None,
            Err(_) => {
                let e = InputError::new("verdict", format!("{} is not a verdict", r.verdict));
                return Err(status(&e.into()));
            }
        };
        let c = self
            .app
            .decide_case(&caller, &r.case_id, verdict, &r.reason)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::DecideCaseResponse {
            case: Some(case(&c)),
        }))
    }
}
