//! `telemetry`: the access record, its filter state, expiry warnings and the metrics flush period,
//! read and compiled.

use super::json::Json;
use super::read::*;
use crate::record::access::{RecordFields, RecordLevel};
use crate::record::Telemetry;

pub(super) struct RawTelemetry {
    pub(super) expiry_warning_days: u32,
    pub(super) metrics_flush_ms: u32,
    pub(super) access_record: RecordLevel,
    pub(super) filter_state: RecordFields,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        RawTelemetry {
            expiry_warning_days: Telemetry::default().expiry_warning_days,
            metrics_flush_ms: Telemetry::DEFAULT_METRICS_FLUSH_MS,
            access_record: RecordLevel::default(),
            filter_state: Telemetry::default().filter_state,
        }
    }
}

impl RawTelemetry {
    pub(super) fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        const KEYS: &[&str] = &[
            "expiry_warning_days",
            "metrics_flush_ms",
            "access_record",
            "filter_state",
        ];
        let fields = Fields::read(value, path, KEYS, problems)?;
        let defaults = RawTelemetry::default();
        Some(RawTelemetry {
            expiry_warning_days: fields
                .get("expiry_warning_days", problems, integer(U32))
                .unwrap_or(defaults.expiry_warning_days),
            metrics_flush_ms: fields
                .get("metrics_flush_ms", problems, integer(U32))
                .unwrap_or(defaults.metrics_flush_ms),
            access_record: fields
                .get("access_record", problems, keyword(RecordLevel::NAMES))
                .unwrap_or(defaults.access_record),
            filter_state: fields
                .get("filter_state", problems, record_fields)
                .unwrap_or(defaults.filter_state),
        })
    }
}

/// `true` (every field), `false` (none) or a list of the access record's field names.
pub(super) fn record_fields(
    value: &Json,
    path: &str,
    problems: &mut Problems<'_>,
) -> Option<RecordFields> {
    match value {
        Json::Bool(true) => Some(RecordFields::ALL),
        Json::Bool(false) => Some(RecordFields::NONE),
        Json::Array(_) => {
            let names = list(string)(value, path, problems)?;
            match RecordFields::named(names.iter().map(String::as_str)) {
                Ok(fields) => Some(fields),
                Err(unknown) => {
                    let index = names.iter().position(|name| name == unknown).unwrap_or(0);
                    problems.add(
                        format!("{path}[{index}]"),
                        format!(
                            "unknown field `{unknown}`, expected {}",
                            alternatives(RecordFields::NAMES.into_iter())
                        ),
                    );
                    None
                }
            }
        }
        _ => invalid_type(
            value,
            path,
            "a boolean or a list of record fields",
            problems,
        ),
    }
}

impl RawTelemetry {
    pub(super) fn compile(self, problems: &mut Problems<'_>) -> Telemetry {
        if self.expiry_warning_days > 3650 {
            problems.add(
                "telemetry.expiry_warning_days",
                format!("{} is more than ten years", self.expiry_warning_days),
            );
        }
        let flush = Telemetry::METRICS_FLUSH_MS;
        if !flush.contains(&self.metrics_flush_ms) {
            problems.add(
                "telemetry.metrics_flush_ms",
                format!(
                    "{} is outside {}..={} milliseconds",
                    self.metrics_flush_ms,
                    flush.start(),
                    flush.end()
                ),
            );
        }
        Telemetry {
            expiry_warning_days: self.expiry_warning_days,
            metrics_flush_ms: self.metrics_flush_ms,
            access_record: self.access_record,
            filter_state: self.filter_state,
        }
    }
}
