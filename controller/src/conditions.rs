//! The status conditions: their types, reasons, and how the observed state maps to them.
use k8s_openapi::jiff::Timestamp;

use crate::{
    claims::Conflict,
    crd::Condition,
    health::{self, Dependency, Outage},
};

/// Condition types.
pub mod types {
    /// The configuration of the current spec is live on every target Deployment.
    pub const READY: &str = "Ready";
    /// Target Deployments are rolling to a new configuration.
    pub const PROGRESSING: &str = "Progressing";
    /// The spec cannot be applied (the last good configuration stays in place), or a store is down.
    pub const DEGRADED: &str = "Degraded";
}

/// Condition reasons.
pub mod reasons {
    /// Every target Deployment runs pods of the current configuration.
    pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
    /// Some target Deployment has not yet replaced its pods.
    pub const ROLLOUT_IN_PROGRESS: &str = "RolloutInProgress";
    /// Every pod runs the current configuration, but some are not available (not ready).
    pub const PODS_UNAVAILABLE: &str = "PodsUnavailable";
    /// The ConfigMap is applied but no Deployment matches the target selector.
    pub const NO_TARGETS: &str = "NoTargets";
    /// The spec breaks a rule of the configuration model.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The current spec is applied.
    pub const SPEC_APPLIED: &str = "SpecApplied";
    /// Pods report Redis unreachable.
    pub const REDIS_UNAVAILABLE: &str = "RedisUnavailable";
    /// Pods report PostgreSQL unreachable.
    pub const POSTGRES_UNAVAILABLE: &str = "PostgresUnavailable";
    /// Pods report both stores unreachable.
    pub const STORES_UNAVAILABLE: &str = "RedisAndPostgresUnavailable";
    /// The selector matches Deployments held by another cache (or the controller's own): left alone.
    pub const TARGET_CONFLICT: &str = "TargetConflict";
}

/// Event reasons, published on transitions only.
pub mod events {
    /// The ConfigMap was created or its data changed.
    pub const CONFIG_APPLIED: &str = "ConfigApplied";
    /// Target Deployments got a new config-hash annotation.
    pub const ROLLOUT_STARTED: &str = "RolloutStarted";
    /// Every target Deployment runs the new configuration.
    pub const ROLLOUT_COMPLETE: &str = super::reasons::ROLLOUT_COMPLETE;
    /// Degraded is no longer true.
    pub const RECOVERED: &str = "Recovered";
    /// Target pods report a new loss of Redis data (a Warning, one per loss).
    pub const DATA_LOSS_DETECTED: &str = "DataLossDetected";
}

/// Where the target Deployments stand with the configuration that is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// No Deployment matches the selector.
    NoTargets,
    /// These Deployments (by name) have not finished rolling out; `total` are targeted.
    Pending { pending: Vec<String>, total: usize },
    /// Every Deployment runs the configuration, but these have pods that are not available.
    Unavailable { unavailable: Vec<String>, total: usize },
    /// All `total` Deployments run the configuration.
    Complete { total: usize },
}

/// What a reconcile found, from which the conditions follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The spec is valid and its configuration (`hash`) is applied to the Deployments it holds; pods
    /// report these outages; these selected Deployments are left to their holders.
    Applied { hash: String, rollout: Rollout, outages: Vec<Outage>, conflicts: Vec<Conflict> },
    /// The spec is invalid, for this reason.
    Invalid { message: String },
}

/// A condition without its transition time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The three conditions that follow from an observation.
pub fn desired(observed: &Observed) -> [Desired; 3] {
    let d = |type_, status, reason, message: String| Desired { type_, status, reason, message };
    match observed {
        Observed::Invalid { message } => [
            d(types::READY, false, reasons::INVALID_SPEC, "the spec is invalid; see Degraded".into()),
            d(types::PROGRESSING, false, reasons::INVALID_SPEC, "the last valid configuration stays in place".into()),
            d(types::DEGRADED, true, reasons::INVALID_SPEC, message.clone()),
        ],
        Observed::Applied { hash, rollout, outages, conflicts } => {
            let short = &hash[..hash.len().min(12)];
            let healthy = match (conflicts.is_empty(), outage_reason(outages)) {
                (false, _) => {
                    d(types::DEGRADED, true, reasons::TARGET_CONFLICT, describe_conflicts(conflicts, outages))
                }
                (true, Some(reason)) => d(types::DEGRADED, true, reason, health::describe(outages)),
                (true, None) => {
                    d(types::DEGRADED, false, reasons::SPEC_APPLIED, format!("configuration {short} applied"))
                }
            };
            match rollout {
                Rollout::NoTargets if !conflicts.is_empty() => {
                    let message = "every Deployment the target selector matches is held elsewhere; see Degraded";
                    [
                        d(types::READY, false, reasons::TARGET_CONFLICT, message.to_owned()),
                        d(types::PROGRESSING, false, reasons::TARGET_CONFLICT, message.to_owned()),
                        healthy,
                    ]
                }
                Rollout::NoTargets => {
                    let message = "no Deployment matches the target selector".to_owned();
                    [
                        d(types::READY, false, reasons::NO_TARGETS, message.clone()),
                        d(types::PROGRESSING, false, reasons::NO_TARGETS, message),
                        healthy,
                    ]
                }
                Rollout::Pending { pending, total } => {
                    let message = format!(
                        "waiting for {} of {total} Deployments to run configuration {short}: {}",
                        pending.len(),
                        pending.join(", ")
                    );
                    [
                        d(types::READY, false, reasons::ROLLOUT_IN_PROGRESS, message.clone()),
                        d(types::PROGRESSING, true, reasons::ROLLOUT_IN_PROGRESS, message),
                        healthy,
                    ]
                }
                Rollout::Unavailable { unavailable, total } => {
                    let message = format!(
                        "configuration {short} is on all {total} Deployments, but {} of them have pods that are not \
                         available: {}",
                        unavailable.len(),
                        unavailable.join(", ")
                    );
                    [
                        d(types::READY, false, reasons::PODS_UNAVAILABLE, message.clone()),
                        d(types::PROGRESSING, false, reasons::PODS_UNAVAILABLE, message),
                        healthy,
                    ]
                }
                Rollout::Complete { total } => {
                    let message = format!("configuration {short} is live on {total} Deployments");
                    [
                        d(types::READY, true, reasons::ROLLOUT_COMPLETE, message.clone()),
                        d(types::PROGRESSING, false, reasons::ROLLOUT_COMPLETE, message),
                        healthy,
                    ]
                }
            }
        }
    }
}

/// One sentence per Deployment left alone, then the outages if any.
fn describe_conflicts(conflicts: &[Conflict], outages: &[Outage]) -> String {
    let mut lines: Vec<String> = conflicts
        .iter()
        .map(|c| format!("Deployment {} is held by {}, so this cache does not roll it", c.deployment, c.holder))
        .collect();
    if !outages.is_empty() {
        lines.push(health::describe(outages));
    }
    lines.join("; ")
}

fn outage_reason(outages: &[Outage]) -> Option<&'static str> {
    let down = |dependency| outages.iter().any(|o| o.dependency == dependency);
    match (down(Dependency::Redis), down(Dependency::Postgres)) {
        (true, true) => Some(reasons::STORES_UNAVAILABLE),
        (true, false) => Some(reasons::REDIS_UNAVAILABLE),
        (false, true) => Some(reasons::POSTGRES_UNAVAILABLE),
        (false, false) => None,
    }
}

/// When the pods could not all be asked, a store outage reported before stands (their silence is no
/// recovery), unless the spec is refused or the pods that did answer report an outage of their own.
pub fn hold_store_outage(previous: &[Condition], desired: &mut [Desired; 3]) {
    let outages = [reasons::REDIS_UNAVAILABLE, reasons::POSTGRES_UNAVAILABLE, reasons::STORES_UNAVAILABLE];
    let Some(was) = find(previous, types::DEGRADED).filter(|c| c.status == "True") else { return };
    let Some(reason) = outages.into_iter().find(|r| *r == was.reason) else { return };
    if let Some(degraded) = desired.iter_mut().find(|d| d.type_ == types::DEGRADED && !d.status) {
        *degraded = Desired { type_: types::DEGRADED, status: true, reason, message: was.message.clone() };
    }
}

/// The new conditions; a condition whose status did not change keeps its transition time.
pub fn merge(previous: &[Condition], desired: [Desired; 3], now: Timestamp) -> Vec<Condition> {
    desired
        .into_iter()
        .map(|want| {
            let status = if want.status { "True" } else { "False" }.to_owned();
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == want.type_ && c.status == status)
                .map_or_else(|| rfc3339_seconds(now), |c| c.last_transition_time.clone());
            Condition {
                type_: want.type_.to_owned(),
                status,
                reason: want.reason.to_owned(),
                message: want.message,
                last_transition_time,
            }
        })
        .collect()
}

/// An event for a condition that changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// The events that tell how `current` differs from `previous`: Ready turning true, Degraded turning
/// true or changing its reason (a warning with that reason), and Degraded turning false.
pub fn transitions(previous: &[Condition], current: &[Condition]) -> Vec<Transition> {
    let is_true = |c: Option<&Condition>| c.is_some_and(|c| c.status == "True");
    let mut out = Vec::new();
    let (was, now) = (find(previous, types::DEGRADED), find(current, types::DEGRADED));
    if let Some(now) = now.filter(|c| c.status == "True") {
        if !is_true(was) || was.is_some_and(|w| w.reason != now.reason) {
            out.push(Transition { warning: true, reason: now.reason.clone(), note: now.message.clone() });
        }
    } else if is_true(was) {
        let note = now.map_or_else(String::new, |c| c.message.clone());
        out.push(Transition { warning: false, reason: events::RECOVERED.to_owned(), note });
    }
    if let Some(ready) = find(current, types::READY).filter(|c| c.status == "True")
        && !is_true(find(previous, types::READY))
    {
        out.push(Transition {
            warning: false,
            reason: events::ROLLOUT_COMPLETE.to_owned(),
            note: ready.message.clone(),
        });
    }
    out
}

/// A time as metav1.Time writes it: whole seconds, UTC.
fn rfc3339_seconds(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_time_and_a_changed_one_gets_now() {
        let pending = Observed::Applied {
            hash: "ab".repeat(32),
            rollout: Rollout::Pending { pending: vec!["api".into()], total: 1 },
            outages: vec![],
            conflicts: vec![],
        };
        let first = merge(&[], desired(&pending), at(1));
        assert_eq!(merge(&first, desired(&pending), at(2)), first);

        let complete = Observed::Applied {
            hash: "ab".repeat(32),
            rollout: Rollout::Complete { total: 1 },
            outages: vec![],
            conflicts: vec![],
        };
        let second = merge(&first, desired(&complete), at(3));
        let ready = find(&second, types::READY).unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", reasons::ROLLOUT_COMPLETE));
        assert_eq!(ready.last_transition_time, "1970-01-01T00:00:03Z");
        let degraded = find(&second, types::DEGRADED).unwrap();
        assert_eq!(degraded.last_transition_time, "1970-01-01T00:00:01Z");
    }

    #[test]
    fn an_invalid_spec_is_degraded_and_not_ready() {
        let conditions = merge(&[], desired(&Observed::Invalid { message: "spec.x: bad".into() }), at(1));
        let degraded = find(&conditions, types::DEGRADED).unwrap();
        assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", reasons::INVALID_SPEC));
        assert_eq!(degraded.message, "spec.x: bad");
        assert_eq!(find(&conditions, types::READY).unwrap().status, "False");
    }

    #[test]
    fn pods_that_fall_unavailable_after_a_rollout_are_not_a_rollout() {
        let rollout = Rollout::Unavailable { unavailable: vec!["api".into()], total: 2 };
        let conditions = merge(
            &[],
            desired(&Observed::Applied { hash: "ef".repeat(32), rollout, outages: vec![], conflicts: vec![] }),
            at(1),
        );
        for type_ in [types::READY, types::PROGRESSING] {
            let c = find(&conditions, type_).unwrap();
            assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", reasons::PODS_UNAVAILABLE), "{type_}");
            assert!(c.message.ends_with("not available: api"), "{}", c.message);
        }
    }

    #[test]
    fn events_follow_the_transitions_of_ready_and_degraded() {
        let observed = |outages| Observed::Applied {
            hash: "cd".repeat(32),
            rollout: Rollout::Complete { total: 1 },
            outages,
            conflicts: vec![],
        };
        let down = vec![Outage { dependency: Dependency::Redis, pod: "api-1".into(), error: "refused".into() }];
        let healthy = merge(&[], desired(&observed(vec![])), at(1));
        let reasons_of = |ts: Vec<Transition>| ts.into_iter().map(|t| (t.warning, t.reason)).collect::<Vec<_>>();
        let one = |warning: bool, reason: &str| vec![(warning, reason.to_owned())];
        assert_eq!(reasons_of(transitions(&[], &healthy)), one(false, events::ROLLOUT_COMPLETE));
        assert!(transitions(&healthy, &healthy).is_empty());
        let degraded = merge(&healthy, desired(&observed(down)), at(2));
        assert_eq!(reasons_of(transitions(&healthy, &degraded)), one(true, reasons::REDIS_UNAVAILABLE));
        assert!(transitions(&degraded, &degraded).is_empty());
        assert_eq!(reasons_of(transitions(&degraded, &healthy)), one(false, events::RECOVERED));
        let invalid = merge(&degraded, desired(&Observed::Invalid { message: "spec.x: bad".into() }), at(3));
        assert_eq!(reasons_of(transitions(&degraded, &invalid)), one(true, reasons::INVALID_SPEC));
    }

    #[test]
    fn a_store_outage_stands_while_the_pods_cannot_be_asked() {
        let observed = |outages| Observed::Applied {
            hash: "cd".repeat(32),
            rollout: Rollout::Complete { total: 1 },
            outages,
            conflicts: vec![],
        };
        let down = vec![Outage { dependency: Dependency::Postgres, pod: "api-1".into(), error: "refused".into() }];
        let degraded = merge(&[], desired(&observed(down)), at(1));
        let mut unknown = desired(&observed(vec![]));
        hold_store_outage(&degraded, &mut unknown);
        let held = merge(&degraded, unknown, at(2));
        assert_eq!(held, degraded, "no false recovery");
        assert!(transitions(&degraded, &held).is_empty());
        let mut invalid = desired(&Observed::Invalid { message: "spec.x: bad".into() });
        hold_store_outage(&degraded, &mut invalid);
        assert_eq!(invalid[2].reason, reasons::INVALID_SPEC);
        let healthy = merge(&[], desired(&observed(vec![])), at(1));
        let mut unknown = desired(&observed(vec![]));
        hold_store_outage(&healthy, &mut unknown);
        assert_eq!(merge(&healthy, unknown, at(2)), healthy);
    }

    #[test]
    fn a_store_reported_down_degrades_a_live_configuration_with_its_reason() {
        let outage = |dependency, pod: &str| Outage { dependency, pod: pod.into(), error: "connection refused".into() };
        let observed = |outages| Observed::Applied {
            hash: "cd".repeat(32),
            rollout: Rollout::Complete { total: 2 },
            outages,
            conflicts: vec![],
        };
        for (outages, reason) in [
            (vec![outage(Dependency::Redis, "api-1")], reasons::REDIS_UNAVAILABLE),
            (vec![outage(Dependency::Postgres, "worker-1")], reasons::POSTGRES_UNAVAILABLE),
            (
                vec![outage(Dependency::Redis, "api-1"), outage(Dependency::Postgres, "api-1")],
                reasons::STORES_UNAVAILABLE,
            ),
        ] {
            let conditions = merge(&[], desired(&observed(outages)), at(1));
            let degraded = find(&conditions, types::DEGRADED).unwrap();
            assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", reason));
            assert!(degraded.message.contains("unreachable from"), "{}", degraded.message);
            assert_eq!(find(&conditions, types::READY).unwrap().status, "True", "the configuration is still live");
        }
        let recovered = merge(&[], desired(&observed(vec![])), at(2));
        assert_eq!(find(&recovered, types::DEGRADED).unwrap().status, "False");
    }
}
