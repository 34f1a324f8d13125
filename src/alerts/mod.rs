//! Alerting: Alertmanager's webhook (`POST /alerts`), incidents recorded as events under
//! `datasets/incidents/`, and the operators' view of them (`GET /incidents`, acknowledge,
//! resolve).
//!
//! Data flows in one direction: [`payload`] checks what Alertmanager sends, [`incidents`] turns
//! it into events and incidents (deduplicating Alertmanager's retries and repeats), [`journal`]
//! writes the events atomically as Parquet, [`slack`] posts new firing and resolved events with
//! their correlated logs, and [`routes`] is the thin HTTP layer. Alerting
//! rules, routing and Slack formatting for Alertmanager itself live in the shipped files
//! (`prometheus/`, `alertmanager/`), not here.

pub mod config;
pub mod incidents;
pub mod journal;
pub mod payload;
pub mod routes;
pub mod slack;

pub use config::AlertsConfig;
pub use incidents::IncidentStore;
pub use routes::{AlertsState, WebhookMetrics, routes};
