//! Qlik's answers as the client reads them: every response type, error bodies and API key
//! tokens (JWT claims) from arbitrary bytes. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use vault_plugin_secrets_qlik::qlik::{
    ApiKey, ApiKeysConfig, CreatedKey, ErrorBody, User, token_claims,
};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<ApiKey>(data);
    let _ = serde_json::from_slice::<CreatedKey>(data);
    let _ = serde_json::from_slice::<User>(data);
    let _ = serde_json::from_slice::<ApiKeysConfig>(data);
    let _ = serde_json::from_slice::<Vec<ApiKey>>(data);
    if let Some(body) = ErrorBody::parse(data) {
        let _ = body.summary();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = token_claims(&SecretString::from(text.to_string()));
    }
});
