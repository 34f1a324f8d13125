//! anomaly-exporter: an anomaly-detection companion for Prometheus.
//!
//! The daemon reads signals from Prometheus, scores every (service, signal) series with its own
//! isolation forest, and exports the scores as metrics. The modules follow the data:
//! source → features → [`forest`] → classify → export and store, with logs, alerts and the web
//! layer beside them. This crate is the library behind the `anomaly-exporter` binary.

pub mod alerts;
pub mod calendar;
pub mod classify;
pub mod cli;
pub mod commands;
pub mod config;
pub mod detect;
pub mod engine;
pub mod evaluate;
pub mod export;
pub mod features;
pub mod forest;
pub mod logs;
pub mod process;
pub mod simulate;
pub mod source;
pub mod store;
pub mod table;
pub mod train;
mod unique_keys;
pub mod web;
