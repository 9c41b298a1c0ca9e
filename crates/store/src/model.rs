//! The domain types the store reads and writes for plugins and their versions.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use plugwatch_model::Limits;

use crate::secrets::SecretValue;

/// What a failing plugin does to a hook chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Skip the plugin: the payload passes on unchanged.
    #[default]
    FailOpen,
    /// Stop the chain with an error naming the plugin.
    FailClosed,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailOpen => "fail_open",
            FailurePolicy::FailClosed => "fail_closed",
        }
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FailurePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail_open" => Ok(FailurePolicy::FailOpen),
            "fail_closed" => Ok(FailurePolicy::FailClosed),
            other => Err(format!("unknown failure policy `{other}` (expected `fail_open` or `fail_closed`)")),
        }
    }
}

/// A plugin's subscription to a hook. Lower priorities run first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub hook: String,
    pub priority: i32,
}

/// A version about to be stored.
#[derive(Clone, Debug)]
pub struct NewVersion {
    pub plugin: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub description: Option<String>,
    pub failure_policy: FailurePolicy,
    pub limits: Limits,
    pub hooks: Vec<Subscription>,
    pub config: BTreeMap<String, String>,
    /// Values the plugin reads like config but the API never returns; sealed before they are stored.
    pub secrets: BTreeMap<String, SecretValue>,
}

/// A stored version.
#[derive(Clone, Debug)]
pub struct VersionRecord {
    pub plugin: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub description: Option<String>,
    pub failure_policy: FailurePolicy,
    pub limits: Limits,
    pub hooks: Vec<Subscription>,
    pub config: BTreeMap<String, String>,
    /// Opened on read; never returned by the API.
    pub secrets: BTreeMap<String, SecretValue>,
    pub created_at: i64,
}

/// A stored plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginRecord {
    pub name: String,
    pub enabled: bool,
    pub active_version: Option<String>,
    pub previous_version: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What storing a version did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// A new version; `activated` when it became the plugin's active version (its first).
    Created { activated: bool },
    /// The same name, version and component were already stored.
    AlreadyPresent,
}
