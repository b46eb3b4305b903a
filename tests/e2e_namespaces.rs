//! The engine mounted in two namespaces of one real OpenBao server: one plugin process serves
//! both mounts, each mount has its own config (another Qlik user here), a token of one
//! namespace gets 403 in the other, leases revoked in one namespace end there only, and
//! `plugin reload` of one namespace's mount restarts the shared process while both mounts
//! keep their storage and leases.

mod support;

use serde_json::Value;
use support::{DevServer, PLUGIN, no_rate_limits};
use vault_plugin_secrets_qlik::fake::{FakeOptions, FakeTenant, RunningFake};

const NAMESPACES: [&str; 2] = ["team-a", "team-b"];

fn alive_at_fake(fake: &RunningFake, id: &str) -> bool {
    fake.fake()
        .keys()
        .iter()
        .any(|k| k.id == id && !k.deleted && k.status == "active")
}

fn owner_at_fake(fake: &RunningFake, id: &str) -> String {
    fake.fake()
        .keys()
        .into_iter()
        .find(|k| k.id == id)
        .map(|k| k.sub)
        .unwrap_or_default()
}

/// `bao read -ns=NS PATH` as JSON: (lease id, key id).
fn lease(server: &DevServer, ns: &str, path: &str) -> (String, String) {
    let read = server.json(&["read", &format!("-ns={ns}"), path]);
    (
        read["lease_id"].as_str().expect("lease_id").to_string(),
        read["data"]["key_id"].as_str().expect("key_id").to_string(),
    )
}

fn lease_alive(server: &DevServer, ns: &str, lease_id: &str) -> bool {
    server
        .cli(&["lease", "lookup", &format!("-ns={ns}"), lease_id])
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_namespaces_one_process_own_config_isolated_policies_and_revocation() {
    let fake = FakeTenant::start(FakeOptions::default())
        .await
        .expect("fake");
    fake.update_settings(no_rate_limits()).expect("settings");
    let Some(server) = DevServer::start() else {
        return;
    };
    let user_b = fake
        .fake()
        .create_user("team-b service", true, false)
        .expect("user");
    let ca = server.dir.path().join("fake-ca.pem");
    std::fs::write(&ca, &fake.ca_pem).expect("ca");
    let url = fake.url.as_str().trim_end_matches('/').to_string();
    let users = [
        (fake.service.api_key.clone(), fake.service.user_id.clone()),
        (user_b.api_key.clone(), user_b.user_id.clone()),
    ];
    let policy = server.dir.path().join("app.hcl");
    std::fs::write(&policy, "path \"qlik/key\" { capabilities = [\"read\"] }\n").expect("policy");

    let mut app_tokens = Vec::new();
    for (ns, (api_key, _)) in NAMESPACES.iter().zip(&users) {
        let ns_flag = format!("-ns={ns}");
        server.ok(&["namespace", "create", ns]);
        server.ok(&["secrets", "enable", &ns_flag, "-path=qlik", PLUGIN]);
        server.ok(&[
            "write",
            &ns_flag,
            "qlik/config",
            &format!("tenant_url={url}"),
            &format!("api_key={api_key}"),
            &format!("ca_cert=@{}", ca.display()),
        ]);
        server.ok(&["write", &ns_flag, "qlik/roles/app", "expiry=PT1H"]);
        server.ok(&[
            "policy",
            "write",
            &ns_flag,
            "app",
            policy.to_str().expect("path"),
        ]);
        let token: Value = server.json(&["token", "create", &ns_flag, "-policy=app"]);
        app_tokens.push(
            token["auth"]["client_token"]
                .as_str()
                .expect("token")
                .to_string(),
        );
    }

    // Each mount has its own config: its own Qlik user.
    for (ns, (_, user_id)) in NAMESPACES.iter().zip(&users) {
        let config = server.json(&["read", &format!("-ns={ns}"), "qlik/config"]);
        assert_eq!(
            config["data"]["owner_id"],
            user_id.as_str(),
            "{ns}: {config}"
        );
    }
    assert_eq!(
        server.plugin_pids().len(),
        1,
        "one plugin process serves both namespaces"
    );

    // Policies are per namespace: team-a's app token reads team-a's key, and gets 403 in
    // team-b (and the other way round).
    for (i, ns) in NAMESPACES.iter().enumerate() {
        let other = NAMESPACES[1 - i];
        let own = server.cli_as(&app_tokens[i], &["read", &format!("-ns={ns}"), "qlik/key"]);
        assert!(
            own.status.success(),
            "{ns}'s token in {ns}: {}",
            String::from_utf8_lossy(&own.stderr)
        );
        let out = server.cli_as(
            &app_tokens[i],
            &["read", &format!("-ns={other}"), "qlik/key"],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("403") && err.contains("permission denied"),
            "{ns}'s token in {other} was not refused with 403: {err}"
        );
    }
    // Those reads made leases; end them before counting.
    for ns in NAMESPACES {
        server.ok(&["lease", "revoke", &format!("-ns={ns}"), "-prefix", "qlik/"]);
    }

    // Dedicated keys per namespace, minted with that namespace's user.
    let mut creds = Vec::new();
    for (ns, (_, user_id)) in NAMESPACES.iter().zip(&users) {
        let mut leases = Vec::new();
        for _ in 0..2 {
            let (lease_id, key_id) = lease(&server, ns, "qlik/creds/app");
            assert_eq!(&owner_at_fake(&fake, &key_id), user_id, "{ns}");
            assert!(alive_at_fake(&fake, &key_id));
            leases.push((lease_id, key_id));
        }
        creds.push(leases);
    }

    // `plugin reload` of team-a's mount (it needs -ns): the shared process restarts, both
    // mounts answer afterwards with their storage intact.
    let before = server.plugin_pids();
    server.ok(&["plugin", "reload", "-ns=team-a", "-mounts=qlik/"]);
    server.wait_for(
        "the plugin to restart",
        std::time::Duration::from_secs(30),
        || {
            for ns in NAMESPACES {
                if !server
                    .cli(&["read", &format!("-ns={ns}"), "qlik/config"])
                    .status
                    .success()
                {
                    return false;
                }
            }
            true
        },
    );
    let after = server.plugin_pids();
    assert_eq!(after.len(), 1, "still one process: {after:?}");
    assert_ne!(before, after, "the reload restarted the shared process");
    for (ns, (_, user_id)) in NAMESPACES.iter().zip(&users) {
        let config = server.json(&["read", &format!("-ns={ns}"), "qlik/config"]);
        assert_eq!(
            config["data"]["owner_id"],
            user_id.as_str(),
            "{ns} after reload"
        );
    }

    // Revocation in team-a ends team-a's leases and keys only.
    server.ok(&["lease", "revoke", "-ns=team-a", "-prefix", "qlik/"]);
    for (lease_id, key_id) in &creds[0] {
        assert!(!lease_alive(&server, "team-a", lease_id));
        server.wait_for(
            &format!("team-a key {key_id} deleted at Qlik"),
            std::time::Duration::from_secs(20),
            || !alive_at_fake(&fake, key_id),
        );
    }
    for (lease_id, key_id) in &creds[1] {
        assert!(
            alive_at_fake(&fake, key_id),
            "team-b key {key_id} untouched"
        );
        assert!(
            lease_alive(&server, "team-b", lease_id),
            "team-b lease {lease_id}"
        );
    }
    // (Not asserted: a root token revoking team-b's lease id with `-ns=team-a`. Such a
    // revocation is queued in the background, and in one CI run team-b's key was gone when it
    // was checked: the root token is not confined by `-ns`, so that case says nothing about
    // the engine. Confinement by namespace is checked above with the app tokens.)
    server.ok(&["lease", "revoke", "-ns=team-b", "-prefix", "qlik/"]);
    for (_, key_id) in &creds[1] {
        server.wait_for(
            &format!("team-b key {key_id} deleted at Qlik"),
            std::time::Duration::from_secs(20),
            || !alive_at_fake(&fake, key_id),
        );
    }
    // Each mount tracks only its stored key now.
    for (ns, (_, user_id)) in NAMESPACES.iter().zip(&users) {
        let keys = server.json(&["list", &format!("-ns={ns}"), "qlik/keys"]);
        let ids: Vec<&str> = keys
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(ids.len(), 1, "{ns}: {keys}");
        assert_eq!(&owner_at_fake(&fake, ids[0]), user_id, "{ns}");
    }
    // OAuth in a namespace: a client and a role of team-a's mount; the token lease's end,
    // revoked in team-a, revokes the token at Qlik.
    let ns = "-ns=team-a";
    server.ok(&[
        "write",
        ns,
        "qlik/oauth/clients/app",
        &format!("client_id={}", fake.oauth.client_id),
        &format!("client_secret={}", fake.oauth.client_secret),
    ]);
    server.ok(&["write", ns, "qlik/oauth/roles/own", "client=app"]);
    let lease = server.json(&["read", ns, "qlik/oauth/token/own"]);
    let token = lease["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(fake.ca_pem.as_bytes()).expect("ca"))
        .build()
        .expect("client");
    let me = |token: String| {
        let http = http.clone();
        let url = format!("{}api/v1/users/me", fake.url);
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("fake")
                .status()
                .as_u16()
        }
    };
    assert_eq!(me(token.clone()).await, 200);
    assert!(
        server
            .cli(&["read", "-ns=team-b", "qlik/oauth/clients/app"])
            .stdout
            .is_empty(),
        "team-b's mount has no OAuth client"
    );
    server.ok(&[
        "lease",
        "revoke",
        ns,
        lease["lease_id"].as_str().expect("lease"),
    ]);
    let mut status = 200;
    for _ in 0..40 {
        status = me(token.clone()).await;
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(status, 401, "the revoked token is refused at Qlik");
}
