//! ES384 JWT-shaped API keys, as Qlik Cloud issues them.
//!
//! Header `{"alg":"ES384","kid":<id>,"typ":"JWT"}`, payload claims in the order
//! `subType, tenantId, jti, aud, iss, sub`, no `exp`/`iat`/`nbf` (validity is server-side
//! state), signature = raw 96-byte P-384 `r||s`, every part base64url without padding.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_FIXED, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// `aud` claim of every Qlik API key.
pub const AUDIENCE: &str = "qlik.api";
/// `iss` claim of every Qlik API key.
pub const ISSUER: &str = "qlik.api/api-keys";

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    kid: &'a str,
    typ: &'static str,
}

/// The six claims, in the order real keys carry them (serde keeps struct field order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "subType")]
    pub sub_type: String,
    #[serde(rename = "tenantId")]
    pub tenant_id: String,
    pub jti: String,
    pub aud: String,
    pub iss: String,
    pub sub: String,
}

/// Why a bearer token was not accepted as one of ours.
#[derive(Debug, thiserror::Error)]
pub enum TokenRejected {
    #[error("not a three-part JWT")]
    Shape,
    #[error("bad base64url or JSON in the token")]
    Encoding,
    #[error("signature does not verify")]
    Signature,
}

/// The tenant's signing key (a fresh P-384 key per fake instance).
pub struct TokenSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").finish_non_exhaustive()
    }
}

impl TokenSigner {
    pub fn generate() -> Result<Self, aws_lc_rs::error::Unspecified> {
        Ok(Self {
            key: EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)?,
            rng: SystemRandom::new(),
        })
    }

    /// Uncompressed SEC1 public point (97 bytes), for tests that verify signatures.
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// Signs a key token for `key_id` owned by `sub` in `tenant_id`.
    pub fn issue(
        &self,
        key_id: &str,
        sub: &str,
        tenant_id: &str,
    ) -> Result<String, aws_lc_rs::error::Unspecified> {
        let header = Header {
            alg: "ES384",
            kid: key_id,
            typ: "JWT",
        };
        let claims = Claims {
            sub_type: "user".into(),
            tenant_id: tenant_id.into(),
            jti: key_id.into(),
            aud: AUDIENCE.into(),
            iss: ISSUER.into(),
            sub: sub.into(),
        };
        let header = serde_json::to_vec(&header).map_err(|_| aws_lc_rs::error::Unspecified)?;
        let claims = serde_json::to_vec(&claims).map_err(|_| aws_lc_rs::error::Unspecified)?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self.key.sign(&self.rng, signing_input.as_bytes())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// Checks the signature and returns the claims. Validity (expiry, revocation, deletion)
    /// is decided by the caller from server-side state.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenRejected> {
        verify_with_public_key(&self.public_key(), token)
    }
}

/// Verifies an ES384 token against an uncompressed P-384 public key and returns its claims.
pub fn verify_with_public_key(public_key: &[u8], token: &str) -> Result<Claims, TokenRejected> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRejected::Shape);
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenRejected::Encoding)?;
    let signing_input_len = header.len() + 1 + payload.len();
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, public_key)
        .verify(&token.as_bytes()[..signing_input_len], &signature)
        .map_err(|_| TokenRejected::Signature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenRejected::Encoding)?;
    serde_json::from_slice(&payload).map_err(|_| TokenRejected::Encoding)
}
