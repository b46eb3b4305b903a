//! What the Qlik api-keys, users and configs endpoints return, and the token's claims.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

use super::error::QlikError;

/// A key's status (`active`, `expired`, `revoked`; anything else is kept as is).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
    Other(String),
}

impl KeyStatus {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Other(s) => s,
        }
    }
}

impl std::fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for KeyStatus {
    fn from(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "expired" => Self::Expired,
            "revoked" => Self::Revoked,
            other => Self::Other(other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for KeyStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::from(s.as_str()))
    }
}

/// An API key's record (`GET /api/v1/api-keys/{id}`, list items). Never holds the token.
/// Timestamps are RFC 3339 with or without fractional seconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub description: String,
    pub status: KeyStatus,
    pub sub: String,
    pub tenant_id: String,
    pub created_by_user: String,
    #[serde(default)]
    pub created: Option<Timestamp>,
    pub expiry: Timestamp,
}

/// The `201` answer to a create: the record plus the token, shown by Qlik only once.
/// `Debug` redacts the token.
#[derive(Debug, Deserialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: ApiKey,
    pub token: SecretString,
}

/// `POST /api/v1/api-keys` body. `expiry` is a canonical ISO 8601 duration (`P7D`,
/// `PT24H`); when `None`, Qlik uses the tenant's `max_api_key_expiry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateKeyRequest {
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
}

/// The user a key acts as (`GET /api/v1/users/me`, after the redirect).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
}

/// `GET /api/v1/api-keys/configs/{tenantId}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiKeysConfig {
    /// A number in REST; also accepted as a string (Qlik's events type it so).
    #[serde(deserialize_with = "number_or_string")]
    pub max_keys_per_user: u32,
    pub max_api_key_expiry: String,
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u32),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// Filters of `list_keys`. Filtering on another user needs TenantAdmin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub sub: Option<String>,
    pub status: Option<KeyStatus>,
    pub created_by_user: Option<String>,
}

/// What `delete_key` did. A 404 means the key is already gone, which is success for
/// lease revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// 204: deleted (owner) or revoked (TenantAdmin deleting someone else's key).
    Deleted,
    /// 404: no such key (deleted before, or never existed).
    AlreadyGone,
}

/// The claims of a Qlik API key, read WITHOUT verifying the signature (Qlik publishes no
/// key to verify with). Use them to find the key's id and tenant before calling Qlik;
/// Qlik itself decides whether the key is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// `jti`, which is also the key's id in the api-keys API.
    pub key_id: String,
    /// `sub`: the owner's user id.
    pub sub: String,
    /// `tenantId`.
    pub tenant_id: String,
    /// `subType` (`user` for user keys), when present.
    pub sub_type: Option<String>,
}

#[derive(Deserialize)]
struct RawClaims {
    jti: String,
    sub: String,
    #[serde(rename = "tenantId")]
    tenant_id: String,
    #[serde(default, rename = "subType")]
    sub_type: Option<String>,
}

/// Decodes a Qlik API key's JWT payload without verifying it.
pub fn token_claims(token: &SecretString) -> Result<TokenClaims, QlikError> {
    let invalid = |reason: &str| QlikError::InvalidKeyFormat {
        reason: reason.to_string(),
    };
    let token = token.expose_secret().trim();
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("expected a JWT (three dot-separated parts)"));
    };
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .or_else(|_| URL_SAFE.decode(payload))
        .map_err(|_| invalid("the JWT payload is not base64url"))?;
    let raw: RawClaims = serde_json::from_slice(&payload)
        .map_err(|_| invalid("the JWT payload lacks the jti, sub or tenantId claim"))?;
    if raw.jti.is_empty() || raw.sub.is_empty() || raw.tenant_id.is_empty() {
        return Err(invalid("the JWT has an empty jti, sub or tenantId claim"));
    }
    Ok(TokenClaims {
        key_id: raw.jti,
        sub: raw.sub,
        tenant_id: raw.tenant_id,
        sub_type: raw.sub_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_json(created: &str, expiry: &str) -> String {
        format!(
            r#"{{"id":"3f2b","description":"d","status":"active","sub":"64ef645a3b7009d55dee5a2b","subType":"user",
            "tenantId":"t","createdByUser":"64ef645a3b7009d55dee5a2b","created":"{created}","expiry":"{expiry}"}}"#
        )
    }

    #[test]
    fn timestamps_with_and_without_fractions() {
        let key: ApiKey = serde_json::from_str(&key_json(
            "2018-10-30T07:06:22Z",
            "2020-12-18T13:59:23.399Z",
        ))
        .unwrap();
        assert_eq!(key.created, Some("2018-10-30T07:06:22Z".parse().unwrap()));
        assert_eq!(
            key.expiry.as_millisecond(),
            "2020-12-18T13:59:23Z"
                .parse::<Timestamp>()
                .unwrap()
                .as_millisecond()
                + 399
        );
    }

    #[test]
    fn created_is_optional_expiry_is_not() {
        let without_created = r#"{"id":"a","description":"","status":"revoked","sub":"s","tenantId":"t","createdByUser":"u","expiry":"2026-11-26T05:00:00.123Z"}"#;
        let key: ApiKey = serde_json::from_str(without_created).unwrap();
        assert_eq!((key.created, key.status), (None, KeyStatus::Revoked));
        let without_expiry = r#"{"id":"a","description":"","status":"active","sub":"s","tenantId":"t","createdByUser":"u"}"#;
        assert!(serde_json::from_str::<ApiKey>(without_expiry).is_err());
    }

    #[test]
    fn unknown_status_is_kept() {
        let json =
            key_json("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z").replace("active", "suspended");
        let key: ApiKey = serde_json::from_str(&json).unwrap();
        assert_eq!(key.status, KeyStatus::Other("suspended".into()));
    }

    #[test]
    fn created_key_reads_token_and_redacts_it() {
        let json = key_json("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
            .replace("\"d\",", "\"d\",\"token\":\"secret-token\",");
        let created: CreatedKey = serde_json::from_str(&json).unwrap();
        assert_eq!(created.token.expose_secret(), "secret-token");
        assert!(!format!("{created:?}").contains("secret-token"));
    }

    #[test]
    fn config_accepts_number_or_string() {
        let a: ApiKeysConfig = serde_json::from_str(r#"{"max_keys_per_user":5,"max_api_key_expiry":"PT24H","scim_externalClient_expiry":"P365D"}"#).unwrap();
        let b: ApiKeysConfig =
            serde_json::from_str(r#"{"max_keys_per_user":"5","max_api_key_expiry":"PT24H"}"#)
                .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.max_keys_per_user, 5);
    }

    #[test]
    fn claims_of_a_qlik_shaped_token() {
        let payload = URL_SAFE_NO_PAD.encode(
            r#"{"subType":"user","tenantId":"TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT","jti":"0b5b5c4e-8d1e-4f7e-9a57-4a4f1d7a1c11","aud":"qlik.api","iss":"qlik.api/api-keys","sub":"64ef645a3b7009d55dee5a2b"}"#,
        );
        let token = SecretString::from(format!("eyJhbGciOiJFUzM4NCJ9.{payload}.c2ln"));
        let claims = token_claims(&token).unwrap();
        assert_eq!(claims.key_id, "0b5b5c4e-8d1e-4f7e-9a57-4a4f1d7a1c11");
        assert_eq!(claims.sub, "64ef645a3b7009d55dee5a2b");
        assert_eq!(claims.tenant_id, "TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT");
        assert_eq!(claims.sub_type.as_deref(), Some("user"));
    }

    #[test]
    fn claims_errors_never_echo_the_token() {
        for bad in ["not-a-jwt", "a.b", "a.!!!.c", "a.e30.c", "a.b.c.d"] {
            let err = token_claims(&SecretString::from(bad.to_string())).unwrap_err();
            assert!(
                matches!(err, QlikError::InvalidKeyFormat { .. }),
                "{bad}: {err}"
            );
            assert!(!err.to_string().contains(bad), "{err}");
        }
    }
}
