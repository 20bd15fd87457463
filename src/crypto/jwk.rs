//! Verification keys from JWKs: each key with the one algorithm it may
//! verify. One implementation, in [`tessera_resource::jwk`]: our own key
//! set builds them strictly ([`decoding_key_of`] errs on a published key
//! that cannot verify); a JWK Set fetched from elsewhere skips the keys we
//! cannot use ([`decoding_keys`]).

pub use tessera_resource::jwk::{
    JwkError, KeyMap, decoding_key, decoding_key_of, decoding_keys, key_algorithm,
};
