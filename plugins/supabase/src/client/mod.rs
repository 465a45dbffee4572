//! Talking to the REST API: transport, headers, retries.

mod http;

pub(crate) use http::{Answer, Request, RestClient};
