//! `proxy_call_foreign_function`: the test's registered functions and Envoy's built-in
//! `declare_property`.

use super::{enter, ok, text, HostResult};
use crate::abi::Status;
use crate::memory::{allocate, read, write_u32, Ctx};
use crate::observe::Hostcall;

pub(super) fn proxy_call_foreign_function(
    mut caller: Ctx<'_>,
    name_ptr: i32,
    name_size: i32,
    args_ptr: i32,
    args_size: i32,
    results_ptr: i32,
    results_size_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyCallForeignFunction);
    let (Some(name), Some(arguments)) = (
        read(&caller, name_ptr, name_size),
        read(&caller, args_ptr, args_size),
    ) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let name = text(&name);
    let registered = caller.data().settings.foreign_functions.get(&name).cloned();
    let outcome = match registered {
        Some(function) => function(&arguments),
        // Envoy's own: a test-registered function of the same name takes its place.
        None if name == crate::declared::DECLARE_PROPERTY => {
            let state = caller.data_mut();
            let root = state.context();
            match state.roots.get_mut(&root) {
                Some(root) => crate::declared::declare(&mut root.declared, &arguments),
                // Envoy looks declarations up on the root context: a stream cannot declare.
                None => Err(Status::BadArgument),
            }
        }
        None => return ok(Status::NotFound),
    };
    let (status, result) = match outcome {
        Ok(result) => (Status::Ok, result),
        Err(status) => (status, Vec::new()),
    };
    let mut address = 0;
    if results_ptr != 0 && !result.is_empty() {
        match allocate(&mut caller, &result)? {
            Some(pointer) => address = pointer,
            None => return ok(Status::InvalidMemoryAccess),
        }
    }
    if results_ptr != 0 && !write_u32(&mut caller, results_ptr, address) {
        return ok(Status::InvalidMemoryAccess);
    }
    if results_size_ptr != 0 && !write_u32(&mut caller, results_size_ptr, result.len() as u32) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(status)
}
