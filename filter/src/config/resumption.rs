//! `session_resumption`: what a certificate Envoy reports not validated on a resumed session gets,
//! read and compiled.

use super::json::Json;
use super::read::*;
use crate::identity::resumption::{Resumption, ResumptionMode, MAX_VALIDITY_SECS};

pub(super) struct RawResumption {
    pub(super) mode: ResumptionMode,
    pub(super) validity_secs: u32,
}

impl Default for RawResumption {
    fn default() -> Self {
        let defaults = Resumption::default();
        RawResumption {
            mode: defaults.mode,
            validity_secs: defaults.validity_secs,
        }
    }
}

impl RawResumption {
    pub(super) fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        let fields = Fields::read(value, path, &["mode", "validity_secs"], problems)?;
        let defaults = RawResumption::default();
        Some(RawResumption {
            mode: fields
                .get("mode", problems, keyword(ResumptionMode::NAMES))
                .unwrap_or(defaults.mode),
            validity_secs: fields
                .get("validity_secs", problems, integer(U32))
                .unwrap_or(defaults.validity_secs),
        })
    }

    pub(super) fn compile(self, problems: &mut Problems<'_>) -> Resumption {
        if self.validity_secs == 0 {
            problems.add(
                "session_resumption.validity_secs",
                "is 0: to refuse every resumed session, set session_resumption.mode to \"refuse\"",
            );
        } else if self.validity_secs > MAX_VALIDITY_SECS {
            problems.add(
                "session_resumption.validity_secs",
                format!(
                    "{} is longer than any session Envoy resumes ({MAX_VALIDITY_SECS} seconds, 7 days)",
                    self.validity_secs
                ),
            );
        }
        Resumption {
            mode: self.mode,
            validity_secs: self.validity_secs,
        }
    }
}
