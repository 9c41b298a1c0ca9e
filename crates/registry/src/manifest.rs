//! A plugin version's manifest: what an upload declares (name, version, hooks, limits, configuration,
//! failure policy), and the checks that refuse a bad one with a message naming the field.

use std::collections::BTreeMap;

use plugwatch_runtime::Limits;
use plugwatch_store::{FailurePolicy, NewVersion, SecretValue, Subscription};

use crate::{RegistryError, Result};

/// What an upload declares. The HTTP layer fills it from the request; defaults are already applied.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub hooks: Vec<Subscription>,
    pub limits: Limits,
    pub config: BTreeMap<String, String>,
    /// Like `config`, but never returned by the API, and encrypted at rest.
    pub secrets: BTreeMap<String, SecretValue>,
    pub failure_policy: FailurePolicy,
    /// Refuse the component unless its sha256 is this.
    pub sha256: Option<String>,
}

const MAX_NAME: usize = 64;
const MAX_HOOK: usize = 128;
const MAX_DESCRIPTION: usize = 2000;
const MAX_CONFIG_KEY: usize = 128;
const MAX_CONFIG_VALUE: usize = 64 << 10;
const MAX_HOOKS: usize = 64;
const MAX_CONFIG_ENTRIES: usize = 256;

/// Plugin names: 1–64 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn validate_plugin_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "`name` must be 1-{MAX_NAME} characters of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit (got {name:?})"
        )))
    }
}

/// Hook names: 1–128 of `a-z 0-9 . _ : -`, starting with a letter or digit (`order.created`).
pub fn validate_hook_name(hook: &str) -> Result<()> {
    let ok = !hook.is_empty()
        && hook.len() <= MAX_HOOK
        && hook.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && hook.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidHook(format!(
            "hook names must be 1-{MAX_HOOK} characters of a-z, 0-9, `.`, `_`, `:`, `-` (got {hook:?})"
        )))
    }
}

fn invalid(message: String) -> RegistryError {
    RegistryError::InvalidManifest(message)
}

impl Manifest {
    /// Checks every field and returns the version to store (its hash and size are filled in later).
    pub fn validate(&self, max_memory_bytes: u64) -> Result<NewVersion> {
        validate_plugin_name(&self.name)?;
        semver::Version::parse(&self.version)
            .map_err(|e| invalid(format!("`version` must be a semantic version such as 1.2.0 ({e})")))?;
        if self.description.as_ref().is_some_and(|d| d.len() > MAX_DESCRIPTION) {
            return Err(invalid(format!("`description` is longer than {MAX_DESCRIPTION} bytes")));
        }
        if self.hooks.len() > MAX_HOOKS {
            return Err(invalid(format!("at most {MAX_HOOKS} hooks per plugin")));
        }
        let mut seen = std::collections::HashSet::new();
        for sub in &self.hooks {
            validate_hook_name(&sub.hook)?;
            if !seen.insert(&sub.hook) {
                return Err(invalid(format!("hook `{}` is listed twice", sub.hook)));
            }
        }
        if self.config.len() + self.secrets.len() > MAX_CONFIG_ENTRIES {
            return Err(invalid(format!("at most {MAX_CONFIG_ENTRIES} config and secret entries")));
        }
        let config = self.config.iter().map(|(k, v)| ("config", k, v.as_str()));
        let secrets = self.secrets.iter().map(|(k, v)| ("secrets", k, v.expose()));
        for (field, key, value) in config.chain(secrets) {
            if key.is_empty() || key.len() > MAX_CONFIG_KEY {
                return Err(invalid(format!("`{field}` keys must be 1-{MAX_CONFIG_KEY} bytes")));
            }
            if value.len() > MAX_CONFIG_VALUE {
                return Err(invalid(format!("`{field}.{key}` is longer than {MAX_CONFIG_VALUE} bytes")));
            }
        }
        if let Some(key) = self.config.keys().find(|k| self.secrets.contains_key(*k)) {
            return Err(invalid(format!("`{key}` is both in `config` and in `secrets`")));
        }
        if let Some(sha) = &self.sha256
            && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(invalid("`sha256` must be 64 hexadecimal digits".into()));
        }
        self.limits.validate(max_memory_bytes).map_err(|e| invalid(format!("limits: {e}")))?;
        Ok(NewVersion {
            plugin: self.name.clone(),
            version: self.version.clone(),
            sha256: String::new(),
            size: 0,
            description: self.description.clone(),
            failure_policy: self.failure_policy,
            limits: self.limits.clone(),
            hooks: self.hooks.clone(),
            config: self.config.clone(),
            secrets: self.secrets.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            name: "promo-discount".into(),
            version: "1.0.0".into(),
            hooks: vec![Subscription { hook: "order.pricing".into(), priority: 10 }],
            ..Manifest::default()
        }
    }

    fn error(m: Manifest) -> String {
        m.validate(1 << 30).unwrap_err().to_string()
    }

    #[test]
    fn a_good_manifest_passes() {
        assert_eq!(manifest().validate(1 << 30).unwrap().plugin, "promo-discount");
    }

    #[test]
    fn each_bad_field_is_named() {
        assert!(error(Manifest { name: "Promo Discount".into(), ..manifest() }).contains("`name`"));
        assert!(error(Manifest { name: String::new(), ..manifest() }).contains("`name`"));
        assert!(error(Manifest { version: "one".into(), ..manifest() }).contains("`version`"));
        let twice =
            vec![Subscription { hook: "a".into(), priority: 1 }, Subscription { hook: "a".into(), priority: 2 }];
        assert!(error(Manifest { hooks: twice, ..manifest() }).contains("listed twice"));
        let bad_hook = vec![Subscription { hook: "Order Created".into(), priority: 1 }];
        assert!(error(Manifest { hooks: bad_hook, ..manifest() }).contains("hook names"));
        let both = Manifest {
            config: [("key".into(), "a".into())].into(),
            secrets: [("key".into(), "b".into())].into(),
            ..manifest()
        };
        assert!(error(both).contains("both in `config` and in `secrets`"));
        let limits = Limits { max_concurrency: 0, ..Limits::default() };
        assert!(error(Manifest { limits, ..manifest() }).contains("max_concurrency"));
        assert!(error(Manifest { sha256: Some("abc".into()), ..manifest() }).contains("`sha256`"));
    }
}
