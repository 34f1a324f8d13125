//! The HTTP face of the exporter: the router and its thin handlers, the one error type they
//! answer with, serving (plain or TLS) and authentication.
//!
//! [`web_config`] reads exporter-toolkit's `--web.config.file` (the file node_exporter takes),
//! [`auth`] turns its users and our webhook token into roles that routes require, and [`serve`]
//! runs a router over HTTP or HTTPS with graceful shutdown. Handlers never check credentials
//! themselves: a route declares the [`auth::Role`] it needs with [`auth::Authenticator::require`].

pub mod auth;
pub mod error;
pub mod escape;
pub mod logs;
pub mod retrain;
pub mod router;
pub mod serve;
pub mod web_config;
