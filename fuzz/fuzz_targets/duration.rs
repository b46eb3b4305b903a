//! The duration parser on arbitrary text: never panics, and whatever it accepts prints in
//! its canonical ISO 8601 form and parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_plugin_secrets_qlik::duration::KeyDuration;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = KeyDuration::parse(text) {
        assert!(d.as_secs() > 0, "zero accepted from {text:?}");
        let iso = d.to_iso();
        let back = KeyDuration::parse(&iso).expect("canonical form parses");
        assert_eq!(back, d, "{text:?} -> {iso}");
    }
});
