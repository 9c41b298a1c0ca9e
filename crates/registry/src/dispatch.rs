//! Firing a hook: every enabled plugin subscribed to it runs, in priority order, either as a **filter**
//! chain (each plugin's output is the next one's input; the last output is the result) or as **actions**
//! (all run on the same input, concurrently; their results are collected). A failing plugin follows its
//! failure policy: `fail_open` is skipped, `fail_closed` stops a chain with an error naming it.

use std::time::Duration;

use plugwatch_runtime::Outcome;
use plugwatch_store::FailurePolicy;

use crate::{Registry, RegistryError, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HookMode {
    #[default]
    Filter,
    Actions,
}

impl HookMode {
    pub fn as_str(self) -> &'static str {
        match self {
            HookMode::Filter => "filter",
            HookMode::Actions => "actions",
        }
    }
}

/// One plugin's part in a hook.
#[derive(Clone, Debug)]
pub struct HookRun {
    pub plugin: String,
    pub version: String,
    pub outcome: Outcome,
    pub trap_kind: Option<String>,
    pub detail: Option<String>,
    pub wall: Duration,
    /// It failed under `fail_open` and was skipped.
    pub skipped: bool,
    /// Its output (for actions; in a filter chain the output flows on instead).
    pub output: Option<Vec<u8>>,
}

/// What firing a hook produced.
#[derive(Clone, Debug)]
pub struct HookOutcome {
    pub hook: String,
    pub mode: HookMode,
    /// For a filter chain: the final payload (the input itself when nothing ran). `None` when stopped.
    pub output: Option<Vec<u8>>,
    pub runs: Vec<HookRun>,
    /// The `fail_closed` plugin that failed, stopping a chain (or failing an action set).
    pub failed: Option<String>,
    /// That failure was an overload (`rejected`): the caller may retry later.
    pub overloaded: bool,
}

impl Registry {
    /// Runs every enabled plugin subscribed to `hook` and records each invocation.
    pub async fn dispatch(&self, hook: &str, input: Vec<u8>, mode: HookMode) -> Result<HookOutcome> {
        if self.is_draining() {
            return Err(RegistryError::Draining);
        }
        crate::validate_hook_name(hook)?;
        let subscribers = self.subscribers(hook);
        // Skipping a subscriber that is still loading would run the chain without it (a `fail_closed`
        // check silently missing): the hook waits for all of them.
        if let Some((_, entry)) = subscribers
            .iter()
            .find(|(_, e)| e.active.as_ref().is_some_and(|a| matches!(a.loaded, crate::Loaded::Loading)))
        {
            return Err(RegistryError::Loading(entry.record.name.clone()));
        }
        let mut result = HookOutcome {
            hook: hook.to_owned(),
            mode,
            output: None,
            runs: Vec::new(),
            failed: None,
            overloaded: false,
        };
        match mode {
            HookMode::Filter => {
                let mut payload = input;
                for (_, entry) in &subscribers {
                    let (Some(active), policy) = (&entry.active, crate::failure_policy(entry)) else { continue };
                    let Some(record) = active.invoke(hook, &payload).await else { continue };
                    let mut run = hook_run(entry, &active.version.version, &record);
                    match record.output {
                        Some(output) => payload = output,
                        None if policy == FailurePolicy::FailOpen => run.skipped = true,
                        None => {
                            result.failed = Some(entry.record.name.clone());
                            result.overloaded = record.outcome == Outcome::Rejected;
                            result.runs.push(run);
                            return Ok(result);
                        }
                    }
                    result.runs.push(run);
                }
                result.output = Some(payload);
            }
            HookMode::Actions => {
                let runs = subscribers.iter().filter_map(|(_, entry)| {
                    let active = entry.active.as_ref()?;
                    let input = &input;
                    Some(async move {
                        let record = active.invoke(hook, input).await?;
                        Some((entry, hook_run(entry, &active.version.version, &record), record.output))
                    })
                });
                for (entry, mut run, output) in futures::future::join_all(runs).await.into_iter().flatten() {
                    if run.outcome.is_ok() {
                        run.output = output;
                    } else if crate::failure_policy(entry) == FailurePolicy::FailOpen {
                        run.skipped = true;
                    } else if result.failed.is_none() {
                        result.failed = Some(entry.record.name.clone());
                        result.overloaded = run.outcome == Outcome::Rejected;
                    }
                    result.runs.push(run);
                }
            }
        }
        Ok(result)
    }
}

fn hook_run(entry: &crate::Entry, version: &str, record: &plugwatch_runtime::Invocation) -> HookRun {
    HookRun {
        plugin: entry.record.name.clone(),
        version: version.to_owned(),
        outcome: record.outcome,
        trap_kind: record.trap_kind.clone(),
        detail: record.detail.clone(),
        wall: record.wall,
        skipped: false,
        output: None,
    }
}
