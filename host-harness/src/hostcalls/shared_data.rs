//! Shared data (key-value with compare-and-swap) and shared queues, scoped by VM id as Envoy
//! scopes them.

use super::{enter, ok, text, HostResult};
use crate::abi::Status;
use crate::memory::{copy_out, read, write_u32, Ctx};
use crate::observe::Hostcall;
use crate::state::{HostState, SharedQueue};

pub(super) fn proxy_get_shared_data(
    mut caller: Ctx<'_>,
    key_ptr: i32,
    key_size: i32,
    ptr_ptr: i32,
    size_ptr: i32,
    cas_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetSharedData);
    let Some(key) = read(&caller, key_ptr, key_size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let Some((value, cas)) = caller.data().settings.shared_data.get(&key) else {
        return ok(Status::NotFound);
    };
    let status = copy_out(&mut caller, &value, ptr_ptr, size_ptr)?;
    if status != Status::Ok {
        return ok(status);
    }
    if !write_u32(&mut caller, cas_ptr, cas) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

pub(super) fn proxy_set_shared_data(
    mut caller: Ctx<'_>,
    key_ptr: i32,
    key_size: i32,
    value_ptr: i32,
    value_size: i32,
    cas: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxySetSharedData);
    let (Some(key), Some(value)) = (
        read(&caller, key_ptr, key_size),
        read(&caller, value_ptr, value_size),
    ) else {
        return ok(Status::InvalidMemoryAccess);
    };
    ok(caller
        .data()
        .settings
        .shared_data
        .set(&key, &value, cas as u32))
}

pub(super) fn proxy_register_shared_queue(
    mut caller: Ctx<'_>,
    name_ptr: i32,
    name_size: i32,
    token_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyRegisterSharedQueue);
    let Some(name) = read(&caller, name_ptr, name_size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let state = caller.data_mut();
    let name = text(&name);
    let vm_id = state.settings.vm_id.clone();
    let root = state.settings_root_context();
    let vm = state.vm_index;
    // cpp-host's registerQueue: one token per (vm_id, name); registering again moves the
    // queue's `proxy_on_queue_ready` to the registering VM and keeps its items.
    let token = match state
        .queues
        .iter()
        .position(|queue| queue.vm_id == vm_id && queue.name == name)
    {
        Some(index) => {
            if let Some(queue) = state.queues.get_mut(index) {
                queue.vm = vm;
                queue.root_context = root;
            }
            index + 1
        }
        None => {
            state.queues.push(SharedQueue {
                vm_id,
                name,
                vm,
                root_context: root,
                items: Default::default(),
            });
            state.queues.len()
        }
    };
    if !write_u32(&mut caller, token_ptr, token as u32) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

pub(super) fn proxy_resolve_shared_queue(
    mut caller: Ctx<'_>,
    vm_id_ptr: i32,
    vm_id_size: i32,
    name_ptr: i32,
    name_size: i32,
    token_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyResolveSharedQueue);
    let (Some(vm_id), Some(name)) = (
        read(&caller, vm_id_ptr, vm_id_size),
        read(&caller, name_ptr, name_size),
    ) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let (vm_id, name) = (text(&vm_id), text(&name));
    let Some(index) = caller
        .data()
        .queues
        .iter()
        .position(|queue| queue.vm_id == vm_id && queue.name == name)
    else {
        return ok(Status::NotFound);
    };
    if !write_u32(&mut caller, token_ptr, index as u32 + 1) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

pub(super) fn proxy_dequeue_shared_queue(
    mut caller: Ctx<'_>,
    token: i32,
    ptr_ptr: i32,
    size_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyDequeueSharedQueue);
    let index = (token as u32 as usize).wrapping_sub(1);
    let Some(queue) = caller.data_mut().queues.get_mut(index) else {
        return ok(Status::NotFound);
    };
    let Some(item) = queue.items.pop_front() else {
        return ok(Status::Empty);
    };
    ok(copy_out(&mut caller, &item, ptr_ptr, size_ptr)?)
}

pub(super) fn proxy_enqueue_shared_queue(
    mut caller: Ctx<'_>,
    token: i32,
    ptr: i32,
    size: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyEnqueueSharedQueue);
    let Some(data) = read(&caller, ptr, size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    ok(caller.data_mut().enqueue(token as u32, data))
}

impl HostState {
    pub(crate) fn enqueue(&mut self, token: u32, data: Vec<u8>) -> Status {
        let index = (token as usize).wrapping_sub(1);
        let Some(queue) = self.queues.get_mut(index) else {
            return Status::NotFound;
        };
        queue.items.push_back(data);
        let ready = (queue.vm, queue.root_context, token);
        self.ready_queues.push_back(ready);
        Status::Ok
    }
}
