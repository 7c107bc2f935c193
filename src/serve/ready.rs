//! Readiness: `/v1/models` answers, lists the profile's model with the expected
//! `max_model_len`, and the smoke completion contains what the profile expects.

use std::time::{Duration, Instant};

use serde_json::json;

use super::http::{self, HttpError};
use super::state::ReadyRecord;
use super::supervisor::Liveness;
use super::{Profile, Smoke};

/// How often a starting server is asked again.
const POLL: Duration = Duration::from_millis(250);
/// The longest a single `/v1/models` request may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time the smoke completion gets, even when the deadline is close.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a profile's server must answer.
#[derive(Debug, Clone)]
pub struct Expect {
    pub base_url: String,
    pub model_id: String,
    pub max_model_len: u64,
    pub smoke: Smoke,
    /// Sent as a bearer token when the profile passes `--api-key`.
    pub api_key: Option<String>,
}

impl Expect {
    /// What the profile's server must answer.
    pub fn of(profile: &Profile) -> Expect {
        let api_key = super::flag_value(&profile.flags, "--api-key").or_else(|| {
            profile
                .env
                .iter()
                .find(|(k, _)| k == "VLLM_API_KEY")
                .map(|(_, v)| v.clone())
        });
        Expect {
            base_url: profile.base_url(),
            model_id: profile.model_id.clone(),
            max_model_len: u64::from(profile.max_model_len),
            smoke: profile.smoke.clone(),
            api_key,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url.trim_end_matches('/'))
    }
}

/// Why a server is not ready.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error("the server died while starting: {reason}")]
    Died { reason: String },
    #[error("the server was still starting when the deadline ({}s) passed; last: {last}", waited.as_secs())]
    TimedOut { waited: Duration, last: String },
    #[error("{url} does not list the model {expected:?} (it lists {listed:?})")]
    WrongModel {
        url: String,
        expected: String,
        listed: Vec<String>,
    },
    #[error("{url} reports max_model_len {} for {model}; the profile expects {expected}",
        got.map_or("nothing".to_owned(), |g| g.to_string()))]
    WrongLen {
        url: String,
        model: String,
        got: Option<u64>,
        expected: u64,
    },
    #[error("{url} answered 200 with something other than a model list: {snippet}")]
    NotAModelList { url: String, snippet: String },
    #[error("the smoke completion failed: {detail}")]
    Smoke { detail: String },
    #[error(
        "{url} answered, but {} listens there too, not the server just started: its answers \
         cannot be told from the server's",
        crate::serve::supervisor::describe_listeners(pids)
    )]
    Foreign { url: String, pids: Vec<u32> },
}

/// One look at `/v1/models`.
#[derive(Debug)]
pub enum Probe {
    /// Nothing listens yet.
    NotListening(String),
    /// It listens but is not serving yet (503 while the model loads, a timeout).
    Starting(String),
    /// It serves, but not what the profile expects.
    Wrong(ReadyError),
    /// It serves the model with the expected `max_model_len`.
    Serving { max_model_len: u64 },
}

/// Asks `/v1/models` once.
pub fn probe(expect: &Expect, timeout: Duration) -> Probe {
    let url = expect.url("/v1/models");
    let auth = expect.api_key.as_deref();
    let resp = match http::get(&url, timeout, auth) {
        Ok(r) => r,
        Err(e @ HttpError::Connect { .. }) => return Probe::NotListening(e.to_string()),
        Err(e) => return Probe::Starting(e.to_string()),
    };
    if resp.status != 200 {
        return Probe::Starting(format!(
            "{url} answered {}: {}",
            resp.status,
            resp.snippet()
        ));
    }
    let Some(list) = resp.json().and_then(|v| v["data"].as_array().cloned()) else {
        return Probe::Wrong(ReadyError::NotAModelList {
            url,
            snippet: resp.snippet(),
        });
    };
    let Some(model) = list
        .iter()
        .find(|m| m["id"].as_str() == Some(&expect.model_id))
    else {
        return Probe::Wrong(ReadyError::WrongModel {
            url,
            expected: expect.model_id.clone(),
            listed: list
                .iter()
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect(),
        });
    };
    let got = model["max_model_len"].as_u64();
    if got != Some(expect.max_model_len) {
        return Probe::Wrong(ReadyError::WrongLen {
            url,
            model: expect.model_id.clone(),
            got,
            expected: expect.max_model_len,
        });
    }
    Probe::Serving {
        max_model_len: expect.max_model_len,
    }
}

/// Runs the smoke completion; returns its text.
pub fn smoke(expect: &Expect, timeout: Duration) -> Result<String, ReadyError> {
    let url = expect.url("/v1/completions");
    let body = json!({
        "model": expect.model_id,
        "prompt": expect.smoke.prompt,
        "max_tokens": expect.smoke.max_tokens,
        "temperature": 0,
    });
    let resp = http::post_json(&url, &body, timeout, expect.api_key.as_deref()).map_err(|e| {
        ReadyError::Smoke {
            detail: e.to_string(),
        }
    })?;
    if resp.status != 200 {
        return Err(ReadyError::Smoke {
            detail: format!("{url} answered {}: {}", resp.status, resp.snippet()),
        });
    }
    let text = resp
        .json()
        .and_then(|v| v["choices"][0]["text"].as_str().map(str::to_owned))
        .ok_or_else(|| ReadyError::Smoke {
            detail: format!("{url} answered without choices[0].text: {}", resp.snippet()),
        })?;
    if !text.contains(&expect.smoke.expect) {
        return Err(ReadyError::Smoke {
            detail: format!(
                "{:?} answered {text:?}, which does not contain {:?}",
                expect.smoke.prompt, expect.smoke.expect
            ),
        });
    }
    Ok(text)
}

/// Waits until the server is ready or `within` has passed, asking `alive` between tries so a
/// server that died is reported at once rather than at the deadline.
pub fn wait_ready(
    expect: &Expect,
    within: Duration,
    alive: &mut dyn FnMut() -> Liveness,
) -> Result<ReadyRecord, ReadyError> {
    let started = Instant::now();
    let deadline = started + within;
    let mut last = "nothing asked yet".to_owned();
    let max_model_len = loop {
        if let Liveness::Dead(reason) = alive() {
            return Err(ReadyError::Died { reason });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadyError::TimedOut {
                waited: within,
                last,
            });
        }
        match probe(expect, left.min(PROBE_TIMEOUT)) {
            Probe::Serving { max_model_len } => break max_model_len,
            Probe::Wrong(e) => return Err(e),
            Probe::NotListening(m) | Probe::Starting(m) => last = m,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(left.min(POLL));
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let smoke_text = smoke(expect, left.max(SMOKE_TIMEOUT))?;
    Ok(ReadyRecord {
        model_id: expect.model_id.clone(),
        max_model_len,
        smoke_text,
    })
}
