//! The rules of Tessera: no HTTP and no database types here.

pub mod account;
pub mod admin;
pub mod audit;
pub mod authorize;
pub mod clients;
pub mod dpop;
pub mod error;
pub mod grants;
pub mod oidc;
pub mod otp;
pub mod page;
pub mod par;
pub mod pkce;
pub mod scope;
pub mod throttle;
pub mod tokens;
pub mod users;
pub mod validate;

pub use error::{DomainError, FieldErrors, GrantError};
