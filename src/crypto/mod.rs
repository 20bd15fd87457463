//! Cryptographic building blocks: signing keys, JWKs, JWTs, password
//! hashing and random secrets. Nothing here knows about HTTP, storage or
//! the domain.

pub mod jwk;
pub mod jwt;
pub mod keys;
pub mod password;
pub mod secret;
