//! Routes and module configuration (DESIGN §3.5): the module-registration
//! model of the config services this replaces, without one.
//!
//! A member declares what it serves with three tags: `module` (its name),
//! `version` and `endpoints` (comma-separated addresses or URLs). Every
//! member sees the live members' tags through gossip, so [`Cluster::routes`]
//! is a local read and [`Cluster::require_module`] calls its handler as soon
//! as the membership changes what a module is served at.
//!
//! A module's configuration is a key of the replicated KV store
//! ([`config_key`]), versioned by the store's revision. A write goes through
//! the validator given to [`Builder::config_validator`] on the member that
//! writes it, so a config every member would reject never reaches the log;
//! members whose `module` tag names the module receive each new version
//! with [`Cluster::on_module_config`], one delivery at a time, each bounded
//! by [`Builder::config_delivery_timeout`]. Configuration values are never
//! logged (they often hold secrets): logs name the module, the version and
//! the size only.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use quorate_core::{MemberId, MemberInfo};

use crate::cluster::{Cluster, Error};

/// The tag naming the module a member serves.
pub const MODULE_TAG: &str = "module";
/// The tag with the version of the module a member runs.
pub const VERSION_TAG: &str = "version";
/// The tag with a member's endpoints for its module, comma-separated.
pub const ENDPOINTS_TAG: &str = "endpoints";
/// The KV prefix of module configurations.
pub const CONFIG_PREFIX: &str = "quorate/config/";

/// The KV key holding `module`'s configuration.
pub fn config_key(module: &str) -> String {
    format!("{CONFIG_PREFIX}{module}")
}

/// Checks a module configuration before it is written: `Err(reason)`
/// refuses it (see [`Builder::config_validator`](crate::Builder::config_validator)).
pub type ConfigValidator = Arc<dyn Fn(&str, &[u8]) -> Result<(), String> + Send + Sync>;

/// One live member serving a module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The module.
    pub module: String,
    /// The version it runs (empty if it did not say).
    pub version: String,
    /// The member's name.
    pub member: String,
    /// The member's id.
    pub id: MemberId,
    /// Its endpoints for the module.
    pub endpoints: Vec<String>,
}

/// The routes the live members among `members` declare, by module then
/// member name.
pub fn routes_of<'a>(members: impl IntoIterator<Item = &'a MemberInfo>) -> Vec<Route> {
    let mut routes: Vec<Route> = members
        .into_iter()
        .filter(|member| member.state.is_live() && !member.leaving)
        .filter_map(|member| {
            let module = member.tags.get(MODULE_TAG)?.to_owned();
            let endpoints = member
                .tags
                .get(ENDPOINTS_TAG)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|endpoint| !endpoint.is_empty())
                .map(str::to_owned)
                .collect();
            Some(Route {
                module,
                version: member.tags.get(VERSION_TAG).unwrap_or_default().to_owned(),
                member: member.name.to_string(),
                id: member.id,
                endpoints,
            })
        })
        .collect();
    routes.sort_by(|a, b| (&a.module, &a.member, a.id).cmp(&(&b.module, &b.member, b.id)));
    routes
}

/// A module's configuration as delivered.
#[derive(Clone, PartialEq, Eq)]
pub struct ModuleConfig {
    /// The module.
    pub module: String,
    /// The configuration's version: the KV revision that wrote it.
    pub version: u64,
    /// The configuration; `None` once deleted.
    pub value: Option<Vec<u8>>,
}

/// Never shows the value: configurations hold secrets.
impl core::fmt::Debug for ModuleConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ModuleConfig")
            .field("module", &self.module)
            .field("version", &self.version)
            .field("bytes", &self.value.as_ref().map(Vec::len))
            .finish()
    }
}

impl Cluster {
    /// The live members serving modules, from their `module`, `version` and
    /// `endpoints` tags (a local read of the gossiped table).
    pub fn routes(&self) -> Vec<Route> {
        routes_of(&self.live_members())
    }

    /// Calls `handler` with the live members serving `module` now, and again
    /// whenever that set or their endpoints change (including to none), in
    /// the order the changes happened. Runs until the member stops.
    pub fn require_module(&self, module: impl Into<String>, mut handler: impl FnMut(Vec<Route>) + Send + 'static) {
        let module = module.into();
        let mut published = self.handle().snapshot;
        tokio::spawn(async move {
            let mut last: Option<Vec<Route>> = None;
            loop {
                let routes: Vec<Route> = {
                    let snapshot = published.borrow_and_update();
                    routes_of(&snapshot.members).into_iter().filter(|route| route.module == module).collect()
                };
                if last.as_ref() != Some(&routes) {
                    tracing::debug!(%module, members = routes.len(), "routes changed");
                    handler(routes.clone());
                    last = Some(routes);
                }
                if published.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Writes `module`'s configuration, once the validator accepts it;
    /// returns its version. [`Error::InvalidConfig`] if refused: nothing
    /// is written.
    pub async fn set_module_config(&self, module: &str, value: impl Into<Vec<u8>>) -> Result<u64, Error> {
        let value = value.into();
        if let Some(validator) = self.config_validator()
            && let Err(reason) = validator(module, &value)
        {
            tracing::warn!(%module, bytes = value.len(), %reason, "module configuration refused");
            return Err(Error::InvalidConfig { module: module.to_owned(), reason });
        }
        let version = self.kv().put(config_key(module), value.clone()).await?;
        tracing::info!(%module, version, bytes = value.len(), "module configuration written");
        Ok(version)
    }

    /// `module`'s current configuration (a linearizable read), if any.
    pub async fn module_config(&self, module: &str) -> Result<Option<ModuleConfig>, Error> {
        let entry = self.kv().get(config_key(module)).await?;
        Ok(entry.map(|entry| ModuleConfig {
            module: module.to_owned(),
            version: entry.modified,
            value: Some(entry.value),
        }))
    }

    /// Delivers the configuration of the module this member serves (its
    /// `module` tag) to `handler`: the current one, then each new version,
    /// in order, one at a time. A delivery that fails or outlasts the
    /// delivery timeout is logged and tried again (with the newest version
    /// then) after the timeout. Nothing is delivered without a `module` tag.
    pub fn on_module_config<F, Fut>(&self, mut handler: F)
    where
        F: FnMut(ModuleConfig) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        let Some(module) = self.tags().get(MODULE_TAG).map(str::to_owned) else {
            tracing::warn!("on_module_config: this member has no module tag; nothing will be delivered");
            return;
        };
        let (kv, timeout) = (self.kv(), self.config_delivery_timeout());
        tokio::spawn(async move {
            let key = config_key(&module);
            let mut delivered = 0;
            loop {
                // The newest version, then its changes; a compacted watch
                // (many writes since) starts over from the newest.
                let current = match kv.get(key.clone()).await {
                    Ok(entry) => entry,
                    Err(Error::Stopped) => return,
                    Err(error) => {
                        tracing::debug!(%module, %error, "module configuration read failed; retrying");
                        tokio::time::sleep(timeout).await;
                        continue;
                    }
                };
                if let Some(entry) = current
                    && entry.modified > delivered
                {
                    let config =
                        ModuleConfig { module: module.clone(), version: entry.modified, value: Some(entry.value) };
                    if !deliver(&mut handler, config, timeout).await {
                        tokio::time::sleep(timeout).await;
                        continue;
                    }
                    delivered = entry.modified;
                }
                let mut watch = kv.watch(key.clone(), delivered);
                loop {
                    match watch.next().await {
                        Some(Ok(change)) if change.key == key => {
                            let config =
                                ModuleConfig { module: module.clone(), version: change.revision, value: change.value };
                            if !deliver(&mut handler, config, timeout).await {
                                tokio::time::sleep(timeout).await;
                                break;
                            }
                            delivered = change.revision;
                        }
                        // Another module's key under this one's name as a prefix.
                        Some(Ok(_)) => {}
                        Some(Err(Error::Stopped)) | None => return,
                        Some(Err(_)) => break,
                    }
                }
            }
        });
    }
}

/// One delivery, bounded by `timeout`; whether it succeeded.
async fn deliver<F, Fut>(handler: &mut F, config: ModuleConfig, timeout: Duration) -> bool
where
    F: FnMut(ModuleConfig) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let (module, version) = (config.module.clone(), config.version);
    match tokio::time::timeout(timeout, handler(config)).await {
        Ok(Ok(())) => {
            tracing::info!(%module, version, "module configuration delivered");
            true
        }
        Ok(Err(reason)) => {
            tracing::warn!(%module, version, %reason, "module configuration refused by its handler");
            false
        }
        Err(_) => {
            tracing::warn!(%module, version, ?timeout, "module configuration delivery timed out");
            false
        }
    }
}
