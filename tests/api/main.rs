//! The one integration-test binary: one link step, shared helpers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account;
mod admin;
mod admin_cli;
mod admin_users;
mod audit;
mod authorize;
mod browser;
mod cli;
mod common;
mod counters;
mod deploy;
mod dpop;
mod dpop_rp;
mod faults;
mod hardening;
mod hostile;
mod layers;
mod mongo;
mod oauth;
mod oidc_rp;
mod ops;
mod otp;
mod pages;
mod par;
mod recipes;
mod redis_layout;
mod resource_server;
mod scale;
mod schema;
mod security;
mod tokens;
mod users;
