//! Tier-2 pacing: a burst of deletions stays inside Qlik's rate limit instead of earning 429s.
//! (No timings are asserted: only what reached the fake tenant.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{secret, start_fake_with};
use vault_plugin_secrets_qlik::fake::SettingsPatch;
use vault_plugin_secrets_qlik::qlik::{
    ClientConfig, CreateKeyRequest, ErrorKind, QlikClient, QlikError, Tier2Pacer,
};

fn create(description: &str, expiry: Option<&str>) -> CreateKeyRequest {
    CreateKeyRequest {
        description: description.into(),
        expiry: expiry.map(str::to_string),
    }
}

fn paced_client(
    fake: &vault_plugin_secrets_qlik::fake::RunningFake,
    pacer: Arc<Tier2Pacer>,
) -> QlikClient {
    QlikClient::new_paced(
        ClientConfig {
            tenant_url: fake.url.clone(),
            ca_cert_pem: Some(fake.ca_pem.clone()),
            request_timeout: Duration::from_secs(30),
            max_retries: 4,
        },
        pacer,
    )
    .expect("client builds")
}

#[tokio::test]
async fn a_burst_of_concurrent_deletes_is_paced_below_the_tier2_limit() {
    // The fake allows 10 tier-2 calls per 1 s window (Qlik: 100 a minute); so does the pacer.
    let fake = start_fake_with(SettingsPatch {
        rate_limits_enabled: Some(false),
        max_keys_per_user: Some(100),
        ..Default::default()
    })
    .await;
    let pacer = Arc::new(Tier2Pacer::new(10, Duration::from_secs(1)));
    let client = paced_client(&fake, pacer);
    let root = secret(&fake.service.api_key);
    let mut ids = Vec::new();
    for i in 0..25 {
        let key = client
            .create_key(&root, &create(&format!("burst {i}"), Some("PT1H")))
            .await
            .expect("create");
        ids.push(key.key.id);
    }
    fake.update_settings(SettingsPatch {
        rate_limits_enabled: Some(true),
        tier2_per_window: Some(10),
        rate_window_seconds: Some(1),
        ..Default::default()
    })
    .expect("settings");
    // Wait out the bucket's credit from the creates (they took slots without waiting).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deletes = ids.iter().map(|id| {
        let (client, root, id) = (client.clone(), root.clone(), id.clone());
        tokio::spawn(async move { client.delete_key(&root, &id).await })
    });
    for task in deletes.collect::<Vec<_>>() {
        task.await.expect("task").expect("delete");
    }
    let statuses: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses.len(), 25, "one DELETE per key: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 204 || *s == 200),
        "no 429 reached the client: {statuses:?}"
    );
    assert!(
        fake.keys()
            .iter()
            .filter(|k| ids.contains(&k.id))
            .all(|k| k.deleted)
    );
}

#[tokio::test]
async fn a_delete_that_cannot_get_a_slot_in_time_is_not_sent() {
    let fake = start_fake_with(SettingsPatch {
        rate_limits_enabled: Some(false),
        ..Default::default()
    })
    .await;
    // 10 a minute: a burst of one, then one slot every 6.7 s.
    let client = paced_client(
        &fake,
        Arc::new(Tier2Pacer::new(10, Duration::from_secs(60))),
    );
    let root = secret(&fake.service.api_key);
    let a = client
        .create_key(&root, &create("a", Some("PT1H")))
        .await
        .expect("create");
    // The create took the only slot: a delete allowed to wait 100 ms gets none.
    let error = client
        .delete_key_within(&root, &a.key.id, Duration::from_millis(100))
        .await
        .expect_err("no slot within 100 ms");
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    let QlikError::RateLimited { retry_after, .. } = &error else {
        panic!("expected RateLimited, got {error:?}");
    };
    assert!(retry_after.is_some_and(|d| d > Duration::from_secs(1)));
    assert!(
        fake.requests().iter().all(|r| r.method != "DELETE"),
        "nothing was sent"
    );
}
