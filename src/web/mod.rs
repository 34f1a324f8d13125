//! The HTTP face of the exporter: serving (plain or TLS), authentication and, later, the router
//! and its thin handlers.
//!
//! [`web_config`] reads exporter-toolkit's `--web.config.file` (the file node_exporter takes),
//! [`auth`] turns its users and our webhook token into roles that routes require, and [`serve`]
//! runs a router over HTTP or HTTPS with graceful shutdown. Handlers never check credentials
//! themselves: a route declares the [`auth::Role`] it needs with [`auth::Authenticator::require`].

pub mod auth;
pub mod serve;
pub mod web_config;
