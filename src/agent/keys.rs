//! The agent's side of OpenID signing keys: which configurations the running config
//! names (the fetcher is told), what was kept from an earlier run (handed to the loop
//! at once, so a gateway that starts offline still validates tokens), and each fetch:
//! a good key set is kept in the backup store and handed to the loop; a failed one is
//! logged and the last good one stays.
//! Must not touch: the network (the fetcher thread fetches), the loop's state.

use std::sync::Arc;

use super::openid::{Ask, Fetched};
use super::store::StoredKeys;
use super::{unix_now_s, Coordinator, Update};
use crate::policy::keyring::KeySet;

/// The signing keys the backup store kept for the OpenID configurations `rt` names, for
/// the loop to start with (so a gateway that starts offline validates tokens at once).
pub fn saved_key_sets(
    syncer: &mut dyn super::Syncer,
    rt: &crate::config::Runtime,
) -> Vec<(String, Arc<KeySet>)> {
    let urls = rt.references.openid_urls();
    match syncer.store() {
        Some(store) => kept(store, &urls),
        None => Vec::new(),
    }
}

/// The key sets the store kept for `urls`.
fn kept(store: &super::store::Store, urls: &[String]) -> Vec<(String, Arc<KeySet>)> {
    if urls.is_empty() {
        return Vec::new();
    }
    match store.key_sets(urls) {
        Ok(kept) => kept
            .into_iter()
            .filter_map(|k| {
                let set = key_set(k.issuer, &k.jwks, k.fetched_at)?;
                log::info!("signing keys of {} restored from the backup store", k.url);
                Some((k.url, set))
            })
            .collect(),
        Err(e) => {
            log::warn!("cannot read kept signing keys: {e}");
            Vec::new()
        }
    }
}

/// A key set from a JWKS document (`None`: it has no usable key).
fn key_set(issuer: Option<String>, jwks: &str, fetched_at: u64) -> Option<Arc<KeySet>> {
    let keys = crate::policy::jwt::parse_published_jwks(jwks).ok()?;
    Some(Arc::new(KeySet {
        issuer,
        keys,
        fetched_at,
    }))
}

impl Coordinator {
    /// The running config's OpenID configurations: new ones are fetched, and those the
    /// store kept go to the loop now.
    pub(super) fn want_keys(&mut self, updates: &mut Vec<Update>) {
        // the config the gateway started with had its kept keys restored before the
        // loop started (`saved_key_sets`); later ones get theirs here
        let started = std::mem::replace(&mut self.keys_started, true);
        let urls = self.running.references.openid_urls();
        if urls == self.openid_urls {
            return;
        }
        let fresh: Vec<String> = urls
            .iter()
            .filter(|u| started && !self.openid_urls.contains(u))
            .cloned()
            .collect();
        self.openid_urls = urls.clone();
        if let Some(f) = &self.openid {
            f.ask(Ask::Want(urls));
        }
        if let Some(store) = self.syncer.store() {
            for (url, set) in kept(store, &fresh) {
                updates.push(Update::Keys(url, set));
            }
        }
    }

    /// A fetch came back.
    pub(super) fn keys_fetched(&mut self, fetched: Fetched, updates: &mut Vec<Update>) {
        let Fetched { url, result } = fetched;
        let doc = match result {
            Ok(doc) => doc,
            Err(e) => {
                log::warn!("cannot fetch the signing keys of {url}: {e}; the last good ones stay");
                return;
            }
        };
        let now = unix_now_s();
        let Some(set) = key_set(doc.issuer.clone(), &doc.jwks, now) else {
            log::warn!("the signing keys of {url} have no usable key; the last good ones stay");
            return;
        };
        log::info!("signing keys of {url} fetched ({} keys)", set.keys.len());
        if let Some(store) = self.syncer.store() {
            let kept = StoredKeys {
                url: url.clone(),
                issuer: doc.issuer,
                jwks: doc.jwks,
                fetched_at: now,
            };
            if let Err(e) = store.save_key_set(&kept) {
                log::warn!("signing keys of {url} not kept in the backup store: {e}");
            }
        }
        updates.push(Update::Keys(url, set));
    }

    /// The loop asks for a configuration again.
    pub(super) fn refresh_keys(&mut self, url: String) {
        if let Some(f) = &self.openid {
            f.ask(Ask::Refresh(url));
        }
    }
}
