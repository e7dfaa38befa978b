//! Metrics: define, increment, record, read, with Envoy's id scheme and its rules per type.

use super::{enter, ok, text, HostResult};
use crate::abi::{MetricType, Status};
use crate::memory::{read, write_u32, write_u64, Ctx};
use crate::observe::Hostcall;
use crate::state::MetricStore;

pub(super) fn proxy_define_metric(
    mut caller: Ctx<'_>,
    kind: i32,
    name_ptr: i32,
    name_size: i32,
    id_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyDefineMetric);
    let Some(kind) = MetricType::from_code(kind as u32) else {
        return ok(Status::BadArgument);
    };
    let Some(name) = read(&caller, name_ptr, name_size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let id = caller.data_mut().metrics.define(kind, &text(&name));
    if !write_u32(&mut caller, id_ptr, id) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

pub(super) fn proxy_increment_metric(mut caller: Ctx<'_>, id: i32, offset: i64) -> HostResult {
    enter(&mut caller, Hostcall::ProxyIncrementMetric);
    let id = id as u32;
    let kind = MetricStore::kind_of(id);
    let Some(metric) = caller.data_mut().metrics.get_mut(id) else {
        return ok(match kind {
            Some(MetricType::Counter | MetricType::Gauge) => Status::NotFound,
            _ => Status::BadArgument,
        });
    };
    match kind {
        // Counters only go up: Envoy rejects a zero or negative delta.
        Some(MetricType::Counter) if offset <= 0 => ok(Status::BadArgument),
        Some(MetricType::Counter | MetricType::Gauge) => {
            metric.value = metric.value.wrapping_add(offset);
            ok(Status::Ok)
        }
        _ => ok(Status::BadArgument),
    }
}

pub(super) fn proxy_record_metric(mut caller: Ctx<'_>, id: i32, value: i64) -> HostResult {
    enter(&mut caller, Hostcall::ProxyRecordMetric);
    let id = id as u32;
    let kind = MetricStore::kind_of(id);
    let Some(metric) = caller.data_mut().metrics.get_mut(id) else {
        return ok(Status::NotFound);
    };
    match kind {
        // Envoy's recordMetric adds to a counter and sets a gauge.
        Some(MetricType::Counter) => metric.value = metric.value.wrapping_add(value),
        Some(MetricType::Gauge) => metric.value = value,
        _ => metric.samples.push(value as u64),
    }
    ok(Status::Ok)
}

pub(super) fn proxy_get_metric(mut caller: Ctx<'_>, id: i32, value_ptr: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetMetric);
    let id = id as u32;
    let kind = MetricStore::kind_of(id);
    if !matches!(kind, Some(MetricType::Counter | MetricType::Gauge)) {
        return ok(Status::BadArgument);
    }
    let Some(value) = caller.data_mut().metrics.get_mut(id).map(|m| m.value) else {
        return ok(Status::NotFound);
    };
    if !write_u64(&mut caller, value_ptr, value as u64) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}
