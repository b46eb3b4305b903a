//! The chain's order, the same for every credential kind (`docs/design.md` §2):
//!
//! 1. an intent is written, then the new credential is minted and recorded in the intent
//!    before anything else is done with it ([`Link::mint`]);
//! 2. it is verified ([`Link::verify`]); one that does not work is deleted and never stored;
//! 3. it is stored as the current credential, the old one superseded ([`Link::store`]);
//! 4. the intent goes ([`Link::finish`]);
//! 5. only then may the old one be deleted at Qlik: at once when no lease holds it (or when
//!    the caller asks, for a leaked credential), else when its last lease ends.
//!
//! A credential kind (`engine::api_key`, `engine::oauth`) implements the steps; what only
//! one kind needs (the key's expiry healing and key-limit last resort, a secret's hint) stays
//! inside its steps.

/// One credential kind's steps of a rotation, called by [`rotate`] in the chain's order.
#[async_trait::async_trait]
pub trait Link: Send + Sync {
    /// A minted credential (already recorded in the operation's intent).
    type New: Send + Sync;
    /// What the chain's record is once the new credential is stored.
    type Stored: Send + Sync;
    /// Failures of the kind's steps.
    type Error: Send + From<crate::framework::StorageError>;

    /// What the credential is called in messages ("key", "client secret").
    const NOUN: &'static str;

    /// The id of the current credential.
    fn current_id(&self) -> String;

    /// The id of a minted one.
    fn new_id(new: &Self::New) -> String;

    /// Writes the operation's intent, mints the new credential and records it in the intent
    /// (a retried request resumes with what its first attempt minted). Warnings go in
    /// `warnings`.
    async fn mint(&self, op: &str, warnings: &mut Vec<String>) -> Result<Self::New, Self::Error>;

    /// Checks that the new credential works as the current one does.
    async fn verify(&self, new: &Self::New) -> Result<(), Self::Error>;

    /// Deletes a new credential that failed verification; whether it is gone.
    async fn discard(&self, new: &Self::New) -> bool;

    /// Stores the new credential as current (with lease hold `hold` on it) and the old one
    /// as superseded, in one step; answers the stored record and how many leases hold the
    /// old one.
    async fn store(
        &self,
        new: &Self::New,
        hold: Option<&str>,
    ) -> Result<(Self::Stored, usize), Self::Error>;

    /// A retried request whose first attempt stored its credential before a crash: the
    /// stored record, with `hold` added.
    async fn stored_already(&self, hold: Option<&str>) -> Result<Self::Stored, Self::Error>;

    /// The operation is complete: its intent goes.
    async fn finish(&self, op: &str) -> Result<(), Self::Error>;

    /// Deletes the old credential at Qlik now; a warning for the answer when that did not
    /// happen at once.
    async fn delete_old(&self, stored: &Self::Stored, old_id: &str) -> Option<String>;
}

/// What a rotation produced.
pub struct Rotated<L: Link> {
    /// The new credential.
    pub new: L::New,
    /// The chain's record now.
    pub stored: L::Stored,
    /// The previous credential's id.
    pub old_id: String,
    /// What happened to the previous credential, and anything else worth saying.
    pub warnings: Vec<String>,
}

/// Rotates one chain (see the module docs for the order).
pub async fn rotate<L: Link>(
    link: &L,
    op: &str,
    hold: Option<&str>,
    delete_old_now: bool,
) -> Result<Rotated<L>, L::Error> {
    let mut warnings = Vec::new();
    let new = link.mint(op, &mut warnings).await?;
    let old_id = link.current_id();
    if L::new_id(&new) == old_id {
        // A retried request whose first attempt stored the credential before the crash.
        let stored = link.stored_already(hold).await?;
        link.finish(op).await?;
        return Ok(Rotated {
            new,
            stored,
            old_id,
            warnings: Vec::new(),
        });
    }
    // Verify before storing: a credential that does not work never becomes the current one.
    if let Err(error) = link.verify(&new).await {
        if link.discard(&new).await {
            link.finish(op).await?;
        }
        return Err(error);
    }
    let (stored, old_holds) = link.store(&new, hold).await?;
    link.finish(op).await?;
    // Only now may the old one go.
    if delete_old_now || old_holds == 0 {
        if let Some(warning) = link.delete_old(&stored, &old_id).await {
            warnings.push(warning);
        }
    } else {
        warnings.push(format!(
            "the previous {} {old_id} stays alive at Qlik while {old_holds} lease(s) hold it",
            L::NOUN
        ));
    }
    Ok(Rotated {
        new,
        stored,
        old_id,
        warnings,
    })
}
