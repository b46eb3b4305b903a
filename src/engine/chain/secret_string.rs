//! The one place a secret (a key, a client secret) is written out in clear: the mount's own
//! storage (`config` and the OAuth client records are seal-wrapped, intents too).

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serializer};

/// Serialises a secret as a plain string (only into the mount's storage).
pub fn serialize<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

/// Reads it back.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}
