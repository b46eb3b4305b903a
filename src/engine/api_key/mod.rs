//! Floor 3: the Qlik API key as a credential kind on the chain: its `config` record (the
//! tenant, the stored key, its policy), minting with the stored key ([`mint`]), rotation
//! ([`rotation`]), the key limit ([`slots`]), deletion at Qlik's pace ([`deleter`]), the
//! tenant's clock for key leases ([`tenant_clock`]) and reconciliation with Qlik ([`tidy`]).

pub mod config;
pub mod deleter;
pub mod mint;
pub mod rotation;
pub mod slots;
pub mod tenant_clock;
pub mod tidy;
