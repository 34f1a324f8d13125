//! Alerting: Alertmanager's webhook (`POST /alerts`), incidents recorded as events under
//! `datasets/incidents/`, and the operators' view of them (`GET /incidents`, acknowledge,
//! resolve).
//!
//! Data flows in one direction: [`payload`] checks what Alertmanager sends, [`incidents`] turns
//! it into events and incidents (deduplicating Alertmanager's retries and repeats), [`journal`]
//! writes the events atomically as Parquet, [`slack`] posts new firing and resolved events with
//! their correlated logs (at least once across restarts: [`deliveries`] records what Slack
//! received), and [`routes`] is the thin HTTP layer. Alerting
//! rules, routing and Slack formatting for Alertmanager itself live in the shipped files
//! (`prometheus/`, `alertmanager/`), not here.

pub mod config;
pub mod deliveries;
pub mod incidents;
pub mod journal;
pub mod payload;
pub mod routes;
pub mod slack;

pub use config::AlertsConfig;
pub use incidents::IncidentStore;
pub use routes::{AlertsState, WebhookMetrics, compact_incidents, routes};

/// Where an alert's `severity` label sorts: critical first (0), then high, warning and normal;
/// a value that names no severity last.
pub(crate) fn severity_rank(label: &str) -> u8 {
    crate::classify::Severity::from_label(label)
        .map_or(u8::MAX, |severity| crate::classify::Severity::Critical as u8 - severity as u8)
}

#[cfg(test)]
mod tests {
    use super::severity_rank;

    #[test]
    fn severities_rank_critical_first_and_unknown_last() {
        let ranks: Vec<u8> = ["critical", "high", "warning", "normal", "page", ""].map(severity_rank).to_vec();
        assert!(ranks.windows(2).take(4).all(|pair| pair[0] < pair[1]), "{ranks:?}");
        assert_eq!(ranks[4], ranks[5]);
    }
}
