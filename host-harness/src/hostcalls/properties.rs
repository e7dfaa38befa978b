//! `proxy_get_property` / `proxy_set_property`: the guest's side of the attribute tree that
//! [`crate::properties`] resolves.

use super::{enter, ok, HostResult};
use crate::abi::Status;
use crate::memory::{copy_out, guest, guest_mut, slice, Ctx};
use crate::observe::Hostcall;
use crate::properties;

pub(super) fn proxy_get_property(
    mut caller: Ctx<'_>,
    path_ptr: i32,
    path_size: i32,
    ptr_ptr: i32,
    size_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetProperty);
    let Some((memory, state)) = guest(&caller) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let Some(path) = slice(memory, path_ptr, path_size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    match properties::get_property(state, path) {
        Ok(value) => ok(copy_out(&mut caller, &value, ptr_ptr, size_ptr)?),
        Err(status) => ok(status),
    }
}

pub(super) fn proxy_set_property(
    mut caller: Ctx<'_>,
    path_ptr: i32,
    path_size: i32,
    value_ptr: i32,
    value_size: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxySetProperty);
    let Some((memory, state)) = guest_mut(&mut caller) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let (Some(path), Some(value)) = (
        slice(memory, path_ptr, path_size),
        slice(memory, value_ptr, value_size),
    ) else {
        return ok(Status::InvalidMemoryAccess);
    };
    ok(properties::set_property(state, path, value))
}
