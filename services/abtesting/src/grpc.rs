//! The A/B testing gRPC edge: proto ↔ domain, the admin role check, errors → status.
//! Assignment and flag evaluation are open to any caller (a GrowthBook SDK computes the same
//! from the same definitions in a browser); definitions and results need the admin role.

use std::sync::Arc;

use serde_json::Value;
use titan_kit::{auth, error::to_status, wire};
use titan_proto::abtesting::v1::{self as pb, ab_testing_service_server::AbTestingService};
use tonic::{Request, Response, Status};

use crate::{
    app::{AbError, Abtesting, ExperimentStore, ExposureSink, MetricKind, Results, ResultsSource},
    domain::{
        Assignment, Attributes, Evaluation, Experiment, FeatureFlag, Outcome, RawSpec, Source,
        Status as ExperimentStatus,
        experiment::{Action, Namespace},
        flag::{Condition, Op, Rule},
    },
};

const DOMAIN: &str = "abtesting.titan.dev";
const ADMIN: &str = "admin";

fn status(e: AbError) -> Status {
    to_status(DOMAIN, &e)
}

fn invalid(msg: impl Into<String>) -> Status {
    status(AbError::Invalid(msg.into()))
}

/// The caller, who must be an admin, and the request body.
fn admin<T>(request: Request<T>) -> Result<(auth::Caller, T), Status> {
    auth::caller_with_role(request, ADMIN)
}

fn attributes(s: Option<prost_types::Struct>) -> Attributes {
    s.map(wire::json_object).unwrap_or_default()
}

fn parse_json(field: &str, text: &str) -> Result<Value, Status> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| invalid(format!("{field} is not valid JSON: {e}")))
}

fn to_json(v: &Value) -> String {
    v.to_string()
}

fn raw_spec(spec: Option<pb::ExperimentSpec>) -> Result<RawSpec, Status> {
    let s = spec.ok_or_else(|| invalid("spec is required"))?;
    Ok(RawSpec {
        key: s.key,
        variants: s
            .variants
            .into_iter()
            .map(|v| (v.key, v.weight, v.is_control))
            .collect(),
        coverage: s.coverage,
        hash_attribute: s.hash_attribute,
        seed: s.seed,
        hash_version: s.hash_version,
        namespace: s.namespace.map(|n| Namespace {
            id: n.id,
            start: n.start,
            end: n.end,
        }),
        metrics: s.metrics,
    })
}

fn experiment(e: &Experiment) -> pb::Experiment {
    let s = &e.spec;
    pb::Experiment {
        spec: Some(pb::ExperimentSpec {
            key: s.key.clone(),
            variants: s
                .variants
                .iter()
                .enumerate()
                .map(|(i, v)| pb::Variant {
                    key: v.key.clone(),
                    weight: v.weight,
                    is_control: i == s.control,
                })
                .collect(),
            coverage: Some(s.coverage),
            hash_attribute: s.hash_attribute.clone(),
            seed: s.seed.clone(),
            hash_version: s.hash_version,
            namespace: s.namespace.as_ref().map(|n| pb::Namespace {
                id: n.id.clone(),
                start: n.start,
                end: n.end,
            }),
            metrics: s.metrics.clone(),
        }),
        status: match e.status {
            ExperimentStatus::Draft => pb::ExperimentStatus::Draft,
            ExperimentStatus::Running => pb::ExperimentStatus::Running,
            ExperimentStatus::Paused => pb::ExperimentStatus::Paused,
            ExperimentStatus::Stopped => pb::ExperimentStatus::Stopped,
        } as i32,
    }
}

fn assignment(a: Assignment) -> pb::Assignment {
    pb::Assignment {
        experiment_key: a.experiment_key,
        in_experiment: a.in_experiment,
        variation_index: u32::try_from(a.variation_index).unwrap_or(u32::MAX),
        variation_key: a.variation_key,
        hash_value: a.bucket.unwrap_or(0.0),
        hash_attribute: a.hash_attribute,
        hash_attribute_value: a.hash_attribute_value,
        hash_used: a.hash_used,
        outcome: match a.outcome {
            Outcome::Assigned => pb::AssignmentOutcome::Assigned,
            Outcome::NotRunning => pb::AssignmentOutcome::NotRunning,
            Outcome::NoHashAttribute => pb::AssignmentOutcome::NoHashAttribute,
            Outcome::NotInNamespace => pb::AssignmentOutcome::NotInNamespace,
            Outcome::NotCovered => pb::AssignmentOutcome::NotCovered,
        } as i32,
    }
}

fn op(code: i32) -> Result<Op, Status> {
    use pb::ConditionOp as P;
    Ok(match P::try_from(code).unwrap_or(P::Unspecified) {
        P::Eq => Op::Eq,
        P::Ne => Op::Ne,
        P::In => Op::In,
        P::NotIn => Op::NotIn,
        P::Gt => Op::Gt,
        P::Gte => Op::Gte,
        P::Lt => Op::Lt,
        P::Lte => Op::Lte,
        P::VersionEq => Op::VersionEq,
        P::VersionNe => Op::VersionNe,
        P::VersionGt => Op::VersionGt,
        P::VersionGte => Op::VersionGte,
        P::VersionLt => Op::VersionLt,
        P::VersionLte => Op::VersionLte,
        P::Unspecified => return Err(invalid(format!("condition op {code} is not a known op"))),
    })
}

fn op_code(op: Op) -> pb::ConditionOp {
    use pb::ConditionOp as P;
    match op {
        Op::Eq => P::Eq,
        Op::Ne => P::Ne,
        Op::In => P::In,
        Op::NotIn => P::NotIn,
        Op::Gt => P::Gt,
        Op::Gte => P::Gte,
        Op::Lt => P::Lt,
        Op::Lte => P::Lte,
        Op::VersionEq => P::VersionEq,
        Op::VersionNe => P::VersionNe,
        Op::VersionGt => P::VersionGt,
        Op::VersionGte => P::VersionGte,
        Op::VersionLt => P::VersionLt,
        Op::VersionLte => P::VersionLte,
    }
}

fn flag_in(f: Option<pb::Flag>, default_hash_version: u32) -> Result<FeatureFlag, Status> {
    let f = f.ok_or_else(|| invalid("flag is required"))?;
    let mut rules = Vec::with_capacity(f.rules.len());
    for (i, r) in f.rules.into_iter().enumerate() {
        let conditions = r
            .conditions
            .into_iter()
            .map(|c| {
                Ok(Condition {
                    operand: parse_json(
                        &format!("rules[{i}] condition value_json"),
                        &c.value_json,
                    )?,
                    op: op(c.op)?,
                    attribute: c.attribute,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let field = |name: &str| format!("rules[{i}].{name}");
        rules.push(match r.kind {
            Some(pb::rule::Kind::Force(force)) => Rule::Force {
                conditions,
                value: parse_json(&field("force.value_json"), &force.value_json)?,
            },
            Some(pb::rule::Kind::Rollout(rollout)) => Rule::Rollout {
                conditions,
                value: parse_json(&field("rollout.value_json"), &rollout.value_json)?,
                coverage: rollout.coverage,
                hash_attribute: rollout.hash_attribute,
                seed: rollout.seed,
                hash_version: if rollout.hash_version == 0 {
                    default_hash_version
                } else {
                    rollout.hash_version
                },
            },
            Some(pb::rule::Kind::Experiment(exp)) => Rule::Experiment {
                conditions,
                values: exp
                    .values_json
                    .iter()
                    .map(|v| parse_json(&field("experiment.values_json"), v))
                    .collect::<Result<_, _>>()?,
                experiment_key: exp.experiment_key,
            },
            None => {
                return Err(invalid(format!(
                    "rules[{i}] needs force, rollout or experiment"
                )));
            }
        });
    }
    Ok(FeatureFlag {
        default_value: parse_json("default_value_json", &f.default_value_json)?,
        key: f.key,
        environment: f.environment,
        rules,
    })
}

fn flag_out(f: &FeatureFlag) -> pb::Flag {
    let conditions = |cs: &[Condition]| {
        cs.iter()
            .map(|c| pb::Condition {
                attribute: c.attribute.clone(),
                op: op_code(c.op) as i32,
                value_json: to_json(&c.operand),
            })
            .collect()
    };
    pb::Flag {
        key: f.key.clone(),
        environment: f.environment.clone(),
        default_value_json: to_json(&f.default_value),
        rules: f
            .rules
            .iter()
            .map(|r| match r {
                Rule::Force {
                    conditions: c,
                    value,
                } => pb::Rule {
                    conditions: conditions(c),
                    kind: Some(pb::rule::Kind::Force(pb::ForceRule {
                        value_json: to_json(value),
                    })),
                },
                Rule::Rollout {
                    conditions: c,
                    value,
                    coverage,
                    hash_attribute,
                    seed,
                    hash_version,
                } => pb::Rule {
                    conditions: conditions(c),
                    kind: Some(pb::rule::Kind::Rollout(pb::RolloutRule {
                        value_json: to_json(value),
                        coverage: *coverage,
                        hash_attribute: hash_attribute.clone(),
                        seed: seed.clone(),
                        hash_version: *hash_version,
                    })),
                },
                Rule::Experiment {
                    conditions: c,
                    experiment_key,
                    values,
                } => pb::Rule {
                    conditions: conditions(c),
                    kind: Some(pb::rule::Kind::Experiment(pb::ExperimentRule {
                        experiment_key: experiment_key.clone(),
                        values_json: values.iter().map(to_json).collect(),
                    })),
                },
            })
            .collect(),
    }
}

fn evaluation(e: Evaluation) -> pb::FlagValue {
    pb::FlagValue {
        key: e.key,
        value_json: to_json(&e.value),
        source: match e.source {
            Source::Default => pb::FlagSource::Default,
            Source::Force => pb::FlagSource::Force,
            Source::Rollout => pb::FlagSource::Rollout,
            Source::Experiment => pb::FlagSource::Experiment,
        } as i32,
        rule_index: e.rule.map_or(-1, |i| i32::try_from(i).unwrap_or(i32::MAX)),
        assignment: e.assignment.map(assignment),
    }
}

fn results(r: Results) -> pb::GetResultsResponse {
    pb::GetResultsResponse {
        experiment_key: r.experiment_key,
        users: r
            .users
            .into_iter()
            .map(|u| pb::VariantUsers {
                index: u.index,
                key: u.key,
                users: u.users,
                expected_share: u.expected_share,
            })
            .collect(),
        srm: Some(r.srm.map_or(
            pb::SampleRatioMismatch {
                chi_square: 0.0,
                p_value: 1.0,
                mismatch: false,
                computed: false,
            },
            |s| pb::SampleRatioMismatch {
                chi_square: s.chi_square,
                p_value: s.p_value,
                mismatch: r.srm_mismatch,
                computed: true,
            },
        )),
        metrics: r
            .metrics
            .into_iter()
            .map(|m| pb::MetricResult {
                metric: m.metric,
                kind: match m.kind {
                    MetricKind::Conversion(_) => pb::MetricKind::Conversion,
                    MetricKind::Revenue => pb::MetricKind::Revenue,
                } as i32,
                variants: m
                    .variants
                    .into_iter()
                    .map(|v| {
                        let (lift, no_lift_reason) = match v.lift {
                            None => (None, String::new()),
                            Some(Ok(l)) => (
                                Some(pb::Lift {
                                    relative: l.relative,
                                    std_error: l.std_error,
                                    ci_low: l.ci_low,
                                    ci_high: l.ci_high,
                                    p_value: l.p_value,
                                    degrees_of_freedom: l.df,
                                    chance_to_beat_control: l.chance_to_beat_control,
                                }),
                                String::new(),
                            ),
                            Some(Err(why)) => (None, why.reason().to_owned()),
                        };
                        pb::VariantMetric {
                            index: v.index,
                            key: v.key,
                            users: v.sample.n,
                            mean: v.sample.mean(),
                            lift,
                            no_lift_reason,
                        }
                    })
                    .collect(),
            })
            .collect(),
        confidence_level: r.confidence_level,
    }
}

pub struct Grpc<S, E, R> {
    app: Arc<Abtesting<S, E, R>>,
}

impl<S, E, R> std::fmt::Debug for Grpc<S, E, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<S, E, R> Grpc<S, E, R> {
    pub fn new(app: Arc<Abtesting<S, E, R>>) -> Self {
        Self { app }
    }
}

impl<S: ExperimentStore, E: ExposureSink, R: ResultsSource> Grpc<S, E, R> {
    async fn change_status(
        &self,
        request: Request<pb::ChangeExperimentStatusRequest>,
        action: Action,
    ) -> Result<Response<pb::ChangeExperimentStatusResponse>, Status> {
        let (caller, r) = admin(request)?;
        let e = self
            .app
            .change_status(&caller, &r.request_id, &r.key, action)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ChangeExperimentStatusResponse {
            experiment: Some(experiment(&e)),
        }))
    }
}

#[tonic::async_trait]
impl<S: ExperimentStore, E: ExposureSink, R: ResultsSource> AbTestingService for Grpc<S, E, R> {
    async fn create_experiment(
        &self,
        request: Request<pb::CreateExperimentRequest>,
    ) -> Result<Response<pb::CreateExperimentResponse>, Status> {
        let (caller, r) = admin(request)?;
        let e = self
            .app
            .create_experiment(&caller, &r.request_id, raw_spec(r.spec)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateExperimentResponse {
            experiment: Some(experiment(&e)),
        }))
    }

    async fn update_experiment(
        &self,
        request: Request<pb::UpdateExperimentRequest>,
    ) -> Result<Response<pb::UpdateExperimentResponse>, Status> {
        let (caller, r) = admin(request)?;
        let e = self
            .app
            .update_experiment(&caller, &r.request_id, raw_spec(r.spec)?, r.force)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateExperimentResponse {
            experiment: Some(experiment(&e)),
        }))
    }

    async fn start_experiment(
        &self,
        request: Request<pb::ChangeExperimentStatusRequest>,
    ) -> Result<Response<pb::ChangeExperimentStatusResponse>, Status> {
        self.change_status(request, Action::Start).await
    }

    async fn pause_experiment(
        &self,
        request: Request<pb::ChangeExperimentStatusRequest>,
    ) -> Result<Response<pb::ChangeExperimentStatusResponse>, Status> {
        self.change_status(request, Action::Pause).await
    }

    async fn stop_experiment(
        &self,
        request: Request<pb::ChangeExperimentStatusRequest>,
    ) -> Result<Response<pb::ChangeExperimentStatusResponse>, Status> {
        self.change_status(request, Action::Stop).await
    }

    async fn get_experiment(
        &self,
        request: Request<pb::GetExperimentRequest>,
    ) -> Result<Response<pb::GetExperimentResponse>, Status> {
        let (_, r) = admin(request)?;
        let e = self.app.experiment(&r.key).map_err(status)?;
        Ok(Response::new(pb::GetExperimentResponse {
            experiment: Some(experiment(&e)),
        }))
    }

    async fn list_experiments(
        &self,
        request: Request<pb::ListExperimentsRequest>,
    ) -> Result<Response<pb::ListExperimentsResponse>, Status> {
        admin(request)?;
        Ok(Response::new(pb::ListExperimentsResponse {
            experiments: self.app.experiments().iter().map(experiment).collect(),
        }))
    }

    async fn assign(
        &self,
        request: Request<pb::AssignRequest>,
    ) -> Result<Response<pb::AssignResponse>, Status> {
        let caller = auth::caller(&request).ok();
        let r = request.into_inner();
        let a = self
            .app
            .assign(
                caller.as_ref(),
                &r.experiment_key,
                &attributes(r.attributes),
            )
            .map_err(status)?;
        Ok(Response::new(pb::AssignResponse {
            assignment: Some(assignment(a)),
        }))
    }

    async fn assign_batch(
        &self,
        request: Request<pb::AssignBatchRequest>,
    ) -> Result<Response<pb::AssignBatchResponse>, Status> {
        let caller = auth::caller(&request).ok();
        let r = request.into_inner();
        let all = self
            .app
            .assign_batch(
                caller.as_ref(),
                &r.experiment_keys,
                &attributes(r.attributes),
            )
            .map_err(status)?;
        Ok(Response::new(pb::AssignBatchResponse {
            assignments: all.into_iter().map(assignment).collect(),
        }))
    }

    async fn upsert_flag(
        &self,
        request: Request<pb::UpsertFlagRequest>,
    ) -> Result<Response<pb::UpsertFlagResponse>, Status> {
        let (caller, r) = admin(request)?;
        let flag = flag_in(r.flag, self.app.settings().default_hash_version)?;
        let saved = self
            .app
            .upsert_flag(&caller, &r.request_id, flag)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpsertFlagResponse {
            flag: Some(flag_out(&saved)),
        }))
    }

    async fn list_flags(
        &self,
        request: Request<pb::ListFlagsRequest>,
    ) -> Result<Response<pb::ListFlagsResponse>, Status> {
        let (_, r) = admin(request)?;
        Ok(Response::new(pb::ListFlagsResponse {
            flags: self
                .app
                .flags(&r.environment)
                .iter()
                .map(flag_out)
                .collect(),
        }))
    }

    async fn evaluate_flags(
        &self,
        request: Request<pb::EvaluateFlagsRequest>,
    ) -> Result<Response<pb::EvaluateFlagsResponse>, Status> {
        let caller = auth::caller(&request).ok();
        let r = request.into_inner();
        let flags =
            self.app
                .evaluate_flags(caller.as_ref(), &r.environment, &attributes(r.attributes));
        Ok(Response::new(pb::EvaluateFlagsResponse {
            flags: flags.into_iter().map(evaluation).collect(),
        }))
    }

    async fn get_results(
        &self,
        request: Request<pb::GetResultsRequest>,
    ) -> Result<Response<pb::GetResultsResponse>, Status> {
        let (_, r) = admin(request)?;
        let out = self.app.results(&r.experiment_key).await.map_err(status)?;
        Ok(Response::new(results(out)))
    }
}
