//! Cryptographic building blocks: signing keys, JWTs, password hashing and
//! random secrets. Nothing here knows about HTTP or storage.

pub mod jwt;
pub mod keys;
pub mod password;
pub mod secret;
