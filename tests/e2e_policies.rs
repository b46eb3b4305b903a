//! The README's policies (`examples/policies/*.hcl`), loaded as written: operators configure,
//! rotate, manage roles, inspect, tidy and revoke dedicated keys, but read no application key;
//! applications read only what their policy names.

mod support;

use support::{DevServer, Setup, mounted_server, no_rate_limits};

fn token_for(server: &DevServer, policy: &str) -> String {
    server.token_for_example_policy(policy)
}

fn allowed(server: &DevServer, token: &str, args: &[&str]) {
    let out = server.cli_as(token, args);
    assert!(
        out.status.success(),
        "bao {args:?} was refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn denied(server: &DevServer, token: &str, args: &[&str]) {
    let out = server.cli_as(token, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("permission denied"),
        "bao {args:?} was not refused: {err}{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn example_policies_separate_operators_and_applications() {
    let Some(Setup { fake, server }) = mounted_server(no_rate_limits()).await else {
        return;
    };
    let config = support::config_args(&fake, server.dir.path(), &[]);

    let operator = token_for(&server, "qlik-operator");
    let app_key = token_for(&server, "qlik-app-key");
    let app_reporting = token_for(&server, "qlik-app-reporting");
    let app_oauth = token_for(&server, "qlik-app-oauth");

    // The operator sets everything up.
    allowed(&server, &operator, &support::strs(&config));
    allowed(&server, &operator, &["read", "qlik/config"]);
    allowed(&server, &operator, &["write", "-force", "qlik/rotate"]);
    allowed(
        &server,
        &operator,
        &["write", "qlik/roles/reporting", "expiry=PT1H"],
    );
    allowed(
        &server,
        &operator,
        &["write", "qlik/roles/other", "expiry=PT1H"],
    );
    allowed(&server, &operator, &["read", "qlik/roles/reporting"]);
    allowed(&server, &operator, &["list", "qlik/roles"]);
    // OAuth: the operator writes a client and two token roles and rotates the client's
    // secret, but reads no secret lease and no token (those are the applications').
    let client_id = format!("client_id={}", fake.oauth.client_id);
    let client_secret = format!("client_secret={}", fake.oauth.client_secret);
    allowed(
        &server,
        &operator,
        &[
            "write",
            "qlik/oauth/clients/app",
            &client_id,
            &client_secret,
        ],
    );
    allowed(
        &server,
        &operator,
        &["write", "qlik/oauth/roles/reporting", "client=app"],
    );
    allowed(
        &server,
        &operator,
        &["write", "qlik/oauth/roles/other", "client=app"],
    );
    allowed(&server, &operator, &["read", "qlik/oauth/clients/app"]);
    allowed(&server, &operator, &["list", "qlik/oauth/clients"]);
    allowed(&server, &operator, &["list", "qlik/oauth/roles"]);
    allowed(
        &server,
        &operator,
        &["write", "-force", "qlik/oauth/clients/app/rotate"],
    );
    denied(
        &server,
        &operator,
        &["read", "qlik/oauth/clients/app/secret"],
    );
    denied(&server, &operator, &["read", "qlik/oauth/token/reporting"]);

    // Applications read what their policy names, and nothing else.
    allowed(&server, &app_key, &["read", "qlik/key"]);
    allowed(&server, &app_reporting, &["read", "qlik/creds/reporting"]);
    allowed(&server, &app_oauth, &["read", "qlik/oauth/token/reporting"]);
    for args in [
        &["read", "qlik/config"][..],
        &["write", "-force", "qlik/rotate"],
        &["read", "qlik/creds/reporting"],
        &["list", "qlik/keys"],
        &["write", "qlik/roles/mine", "expiry=PT1H"],
        &["read", "qlik/oauth/token/reporting"],
    ] {
        denied(&server, &app_key, args);
    }
    for args in [
        &["read", "qlik/key"][..],
        &["read", "qlik/creds/other"],
        &["read", "qlik/config"],
        &["write", "-force", "qlik/tidy"],
        &["read", "qlik/oauth/token/reporting"],
    ] {
        denied(&server, &app_reporting, args);
    }
    // The OAuth application: its role's token (and renewing its lease, which the default
    // policy allows), not the client, its secret, another role's token or the key paths.
    let read = server.cli_as(
        &app_oauth,
        &["read", "-format=json", "qlik/oauth/token/reporting"],
    );
    assert!(read.status.success(), "{read:?}");
    let lease: serde_json::Value = serde_json::from_slice(&read.stdout).expect("json");
    assert!(lease["data"]["access_token"].as_str().is_some(), "{lease}");
    let lease_id = lease["lease_id"].as_str().expect("lease_id");
    allowed(&server, &app_oauth, &["lease", "renew", lease_id]);
    for args in [
        &["read", "qlik/oauth/clients/app"][..],
        &[
            "write",
            "qlik/oauth/clients/app",
            &client_id,
            &client_secret,
        ],
        &[
            "write",
            "qlik/oauth/clients/mine",
            &client_id,
            &client_secret,
        ],
        &["read", "qlik/oauth/clients/app/secret"],
        &["write", "-force", "qlik/oauth/clients/app/rotate"],
        &["list", "qlik/oauth/clients"],
        &["read", "qlik/oauth/roles/reporting"],
        &[
            "write",
            "qlik/oauth/roles/reporting",
            "client=app",
            "shared=true",
        ],
        &["read", "qlik/oauth/token/other"],
        &["read", "qlik/key"],
        &["read", "qlik/creds/reporting"],
        &["read", "qlik/config"],
    ] {
        denied(&server, &app_oauth, args);
    }

    // The operator inspects, tidies and ends the dedicated keys, but reads no application key.
    allowed(&server, &operator, &["list", "qlik/keys"]);
    let keys = server.json(&["list", "qlik/keys"]);
    let first = keys[0].as_str().expect("a key id");
    allowed(&server, &operator, &["read", &format!("qlik/keys/{first}")]);
    allowed(&server, &operator, &["write", "-force", "qlik/tidy"]);
    allowed(
        &server,
        &operator,
        &["lease", "revoke", "-sync", "-prefix", "qlik/creds/"],
    );
    denied(&server, &operator, &["read", "qlik/key"]);
    denied(&server, &operator, &["read", "qlik/creds/reporting"]);
    allowed(&server, &operator, &["delete", "qlik/roles/other"]);
}
