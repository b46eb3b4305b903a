//! `tidy` and its periodic run: reconcile the mount's records with Qlik.
//!
//! - Interrupted operations (intents older than [`INTENT_GRACE`]): a key they minted and
//!   recorded is deleted unless it became the stored key or a tracked key; the intent goes.
//! - Orphans: keys at Qlik that carry this mount's marker but are tracked nowhere are deleted.
//! - Superseded keys that nothing holds, and keys whose deletion failed, are deleted.
//! - Keys past their expiry are forgotten (with their hold entries).
//! - Hold entries of keys that are tracked nowhere (left by an interrupted `forget`) go.
//!
//! At most [`MAX_DELETES`] deletions a run, so a large backlog cannot eat Qlik's tier-2 budget.

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;

use crate::engine::QlikBackend;
use crate::engine::api_key::config;
use crate::engine::chain::records::{Intent, IntentKind, KeyKind, KeyRecord, KeyState};
use crate::engine::tenant::qlik_error;
use crate::framework::RequestError;
use crate::qlik::{DeleteOutcome, ListFilter};

/// An intent younger than this may belong to an operation still running.
pub const INTENT_GRACE: Duration = Duration::from_secs(120);
/// Deletions per run at most.
pub const MAX_DELETES: usize = 20;
/// Where the periodic run notes when it last ran (its first write: a standby stops there).
pub const PERIODIC_MARK: &str = "tidy/last_periodic_run";
/// How often the periodic tick runs tidy.
pub const PERIOD: Duration = Duration::from_secs(600);
/// How often the periodic run also lists the owner's keys at Qlik to find orphans when
/// nothing in storage points at one (see [`periodic`]); each mount at its own phase.
pub const FULL_SCAN_PERIOD: Duration = Duration::from_secs(6 * 3600);

/// When this mount's first backstop scan is due: at a phase of [`FULL_SCAN_PERIOD`] derived
/// from its id, so that the mounts of a process do not all list their keys at once.
pub(crate) fn first_full_scan(mount_id: &str) -> tokio::time::Instant {
    let hash = mount_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let phase = Duration::from_secs(hash % FULL_SCAN_PERIOD.as_secs());
    tokio::time::Instant::now() + phase
}

/// What a run did.
#[derive(Debug, Default)]
pub struct TidyReport {
    /// Untracked marked keys deleted.
    pub orphans_deleted: usize,
    /// Superseded keys deleted.
    pub superseded_deleted: usize,
    /// Intents cleaned up.
    pub intents_resolved: usize,
    /// Expired records forgotten.
    pub expired_forgotten: usize,
    /// Hold entries of untracked keys removed.
    pub holds_removed: usize,
    /// Errors.
    pub errors: Vec<String>,
}

/// The periodic run, at most every [`PERIOD`]. It lists the owner's keys at Qlik (the orphan
/// scan) only when storage points at work there: an intent (an operation that may have left
/// a key behind: every mint writes one first), or the mount's backstop scan is due
/// ([`FULL_SCAN_PERIOD`], at a phase of its own). Otherwise it calls Qlik only for records that
/// need a deletion, so a tick over many idle mounts makes no Qlik call at all, and a plugin
/// start does not list every mount's keys at once.
pub(crate) async fn periodic(backend: &QlikBackend) -> Result<(), RequestError> {
    let mut last = backend.last_tidy.lock().await;
    let now = tokio::time::Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < PERIOD) {
        return Ok(());
    }
    // Only the active node may reconcile: a standby's view of storage may lag behind, and an
    // orphan scan there could delete a key the active node has just minted and recorded.
    // This first write fails read-only on a standby, before any Qlik call.
    let stamp = jiff::Timestamp::now().to_string();
    crate::framework::storage::put_json(backend.storage.as_ref(), PERIODIC_MARK, &stamp).await?;
    *last = Some(now);
    drop(last);
    let full_scan = {
        let mut next = backend.next_full_scan.lock().await;
        if now >= *next {
            *next = now + FULL_SCAN_PERIOD;
            true
        } else {
            false
        }
    };
    match tidy_with(backend, INTENT_GRACE, full_scan).await {
        Ok(report) if !report.errors.is_empty() => {
            tracing::warn!(errors = ?report.errors, "periodic tidy left work for the next run");
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(error) if error.is_read_only() => Err(error),
        Err(error) => {
            tracing::warn!(%error, "periodic tidy failed");
            Ok(())
        }
    }
}

/// One reconciliation. Intents younger than `grace` are left alone.
pub async fn tidy(backend: &QlikBackend, grace: Duration) -> Result<TidyReport, RequestError> {
    tidy_with(backend, grace, true).await
}

/// [`tidy`], with the orphan scan at Qlik only if `full_scan` or an intent exists.
async fn tidy_with(
    backend: &QlikBackend,
    grace: Duration,
    full_scan: bool,
) -> Result<TidyReport, RequestError> {
    let mut report = TidyReport::default();
    let storage = backend.storage.as_ref();
    let Some(config) = config::load(backend)
        .await?
        .filter(config::Config::has_api_key)
    else {
        return Ok(report);
    };
    // A rotation must not run underneath: the stored key is the bearer of every call here.
    let _rotation = backend.rotation_lock.lock().await;
    // No key is minted while tidy compares Qlik with the records (see `mint_lock`).
    let _mint = backend.mint_lock.lock().await;
    let config = config::load(backend).await?.unwrap_or(config);
    let client = backend.client(&config).await?;
    let token = &config.key.token;
    let now = Timestamp::now();
    let mut deletes = 0usize;

    // Interrupted operations.
    let mut young_markers = Vec::new();
    let ops = Intent::ops(storage).await?;
    let scan = full_scan || !ops.is_empty();
    for op in ops {
        let Some(intent) = Intent::load(storage, &op).await? else {
            continue;
        };
        if intent.kind == IntentKind::SecretRotate {
            // An OAuth client's secret: `oauth::secrets::tidy` resolves it.
            continue;
        }
        let age = now.duration_since(intent.started_at).as_secs();
        if age < grace.as_secs() as i64 {
            young_markers.push(intent.marker.clone());
            continue;
        }
        if let Some(minted) = &intent.minted {
            let tracked = minted.id == config.key_info.key_id
                || KeyRecord::load(storage, &minted.id).await?.is_some();
            if !tracked {
                if deletes >= MAX_DELETES {
                    break;
                }
                deletes += 1;
                if let Err(e) = client.delete_key(token, &minted.id).await {
                    report.errors.push(format!(
                        "deleting key {} of interrupted operation {op}: {e}",
                        minted.id
                    ));
                    continue;
                }
                report.orphans_deleted += 1;
            }
        }
        Intent::remove(storage, &op).await?;
        report.intents_resolved += 1;
    }

    // Orphans at Qlik: this mount's marker, tracked nowhere.
    let tracked: HashSet<String> = KeyRecord::ids(storage).await?.into_iter().collect();
    let marker = backend.mount_marker();
    let at_qlik = if scan {
        client
            .list_keys(
                token,
                &ListFilter {
                    sub: Some(config.key_info.owner_id.clone()),
                    status: None,
                    created_by_user: None,
                },
            )
            .await
            .map_err(|e| qlik_error(&e, "listing keys at Qlik"))?
    } else {
        Vec::new()
    };
    for key in &at_qlik {
        let ours = key.description.contains(&marker);
        let busy = young_markers
            .iter()
            .any(|m| key.description.contains(m.as_str()));
        let active = matches!(key.status, crate::qlik::KeyStatus::Active);
        if !ours || busy || !active || tracked.contains(&key.id) || key.id == config.key_info.key_id
        {
            continue;
        }
        if deletes >= MAX_DELETES {
            report
                .errors
                .push("deletion budget of this run used up; the next run continues".into());
            break;
        }
        deletes += 1;
        match client.delete_key(token, &key.id).await {
            Ok(_) => {
                tracing::warn!(key_id = %key.id, "orphan key deleted at Qlik");
                report.orphans_deleted += 1;
            }
            Err(e) => report
                .errors
                .push(format!("deleting orphan {}: {e}", key.id)),
        }
    }

    // Records: superseded keys nobody holds, failed deletions, expired keys.
    for id in tracked {
        let Some(record) = KeyRecord::load(storage, &id).await? else {
            continue;
        };
        if record.expires_at <= now && id != config.key_info.key_id {
            KeyRecord::forget(storage, &id).await?;
            report.expired_forgotten += 1;
            continue;
        }
        // Holds are counted (a listing) only for superseded keys: nothing else goes for them.
        let unheld_superseded =
            record.kind == KeyKind::Superseded && !record.is_held(storage).await?;
        if !(unheld_superseded || record.state == KeyState::DeletePending)
            || id == config.key_info.key_id
        {
            continue;
        }
        if deletes >= MAX_DELETES {
            report
                .errors
                .push("deletion budget of this run used up; the next run continues".into());
            break;
        }
        deletes += 1;
        match client.delete_key(token, &id).await {
            Ok(DeleteOutcome::Deleted | DeleteOutcome::AlreadyGone) => {
                let _state = backend.state_lock.lock().await;
                KeyRecord::forget(storage, &id).await?;
                report.superseded_deleted += 1;
            }
            Err(e) => report.errors.push(format!("deleting key {id}: {e}")),
        }
    }

    // Hold entries whose key is tracked nowhere: nothing would ever release them. Checked and
    // removed under the state lock, as reads register holds, so that a hold on the stored key
    // (which keeps its holds even without a record) is never taken for an orphan.
    for id in KeyRecord::held_ids(storage).await? {
        let _state = backend.state_lock.lock().await;
        let stored = config::load(backend).await?.map(|c| c.key_info.key_id);
        if stored.as_deref() == Some(id.as_str()) || KeyRecord::load(storage, &id).await?.is_some()
        {
            continue;
        }
        let removed = KeyRecord::remove_holds(storage, &id).await?;
        tracing::info!(key_id = %id, removed, "lease holds on an untracked key removed");
        report.holds_removed += removed;
    }
    tracing::info!(
        orphans = report.orphans_deleted,
        superseded = report.superseded_deleted,
        intents = report.intents_resolved,
        expired = report.expired_forgotten,
        holds = report.holds_removed,
        errors = report.errors.len(),
        "tidy done"
    );
    Ok(report)
}
