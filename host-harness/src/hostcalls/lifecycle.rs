//! Logging, the clock, ticks, the status of the last call, the effective context and `proxy_done`:
//! the hostcalls about the VM and its contexts rather than a stream's data.

use super::{enter, ok, text, HostResult};
use crate::abi::{LogLevel, Status};
use crate::memory::{copy_out, guest_mut, slice, write_u32, write_u64, Ctx};
use crate::observe::Hostcall;

pub(super) fn proxy_log(mut caller: Ctx<'_>, level: i32, ptr: i32, size: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxyLog);
    let Some(level) = LogLevel::from_code(level as u32) else {
        return ok(Status::BadArgument);
    };
    let Some((memory, state)) = guest_mut(&mut caller) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let Some(message) = slice(memory, ptr, size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    state.log(level, text(message));
    ok(Status::Ok)
}

pub(super) fn proxy_get_log_level(mut caller: Ctx<'_>, ptr: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetLogLevel);
    let level = caller.data().settings.log_level as u32;
    if !write_u32(&mut caller, ptr, level) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

pub(super) fn proxy_get_current_time(mut caller: Ctx<'_>, ptr: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetCurrentTimeNanoseconds);
    let now = caller.data().now_ns;
    if !write_u64(&mut caller, ptr, now) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

pub(super) fn proxy_set_tick_period(mut caller: Ctx<'_>, period_ms: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxySetTickPeriodMilliseconds);
    let state = caller.data_mut();
    let now = state.now_ns;
    let root = state.settings_root_context();
    let period = u64::from(period_ms as u32);
    let root = state.roots.entry(root).or_default();
    root.tick_period_ms = period;
    root.next_tick_ns = (period > 0).then(|| now + period * 1_000_000);
    ok(Status::Ok)
}

pub(super) fn proxy_get_status(
    mut caller: Ctx<'_>,
    code_ptr: i32,
    ptr_ptr: i32,
    size_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetStatus);
    let (code, message) = caller.data().status.clone();
    if !write_u32(&mut caller, code_ptr, code) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(copy_out(
        &mut caller,
        message.as_bytes(),
        ptr_ptr,
        size_ptr,
    )?)
}

pub(super) fn proxy_set_effective_context(mut c: Ctx<'_>, id: i32) -> HostResult {
    enter(&mut c, Hostcall::ProxySetEffectiveContext);
    let state = c.data_mut();
    if !state.context_exists(id as u32) {
        return ok(Status::BadArgument);
    }
    state.effective_context = Some(id as u32);
    ok(Status::Ok)
}

pub(super) fn proxy_done(mut c: Ctx<'_>) -> HostResult {
    enter(&mut c, Hostcall::ProxyDone);
    let state = c.data_mut();
    let id = state.context();
    match state.pending_done.iter().position(|&pending| pending == id) {
        Some(index) => {
            state.pending_done.remove(index);
            state.done_called.push(id);
            ok(Status::Ok)
        }
        None => ok(Status::NotFound),
    }
}
