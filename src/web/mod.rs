//! The HTTP face of the exporter: the router and its thin handlers, and the one error type they
//! answer with.

pub mod error;
pub mod router;
