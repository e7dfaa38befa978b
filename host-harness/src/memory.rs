//! Moving bytes across the guest boundary: bounds-checked reads and writes of linear memory,
//! and copies into memory the guest allocates (`malloc` or `proxy_on_memory_allocate`).

use crate::abi::Status;
use crate::state::HostState;
use std::borrow::Cow;
use wasmtime::Caller;

pub(crate) type Ctx<'a> = Caller<'a, HostState>;

/// Copies `len` bytes at `ptr` out of guest memory; `None` when out of bounds.
pub(crate) fn read(caller: &Ctx<'_>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let (memory, _) = guest(caller)?;
    slice(memory, ptr, len).map(<[u8]>::to_vec)
}

/// `len` bytes at `ptr` of `memory`, in place; `None` when out of bounds.
pub(crate) fn slice(memory: &[u8], ptr: i32, len: i32) -> Option<&[u8]> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize)?;
    memory.get(start..end)
}

/// The guest's memory beside the host state, so that a hostcall reads its arguments in place
/// instead of copying them out; `None` before the guest's memory is known.
pub(crate) fn guest<'a>(caller: &'a Ctx<'_>) -> Option<(&'a [u8], &'a HostState)> {
    let memory = caller.data().memory?;
    Some((memory.data(caller), caller.data()))
}

/// [`guest`] with the state writable.
pub(crate) fn guest_mut<'a>(caller: &'a mut Ctx<'_>) -> Option<(&'a [u8], &'a mut HostState)> {
    let memory = caller.data().memory?;
    let (memory, state) = memory.data_and_store_mut(caller);
    Some((memory, state))
}

/// Guest bytes as text, as `String::from_utf8_lossy` reads them, but borrowed through the faster
/// UTF-8 check when they are valid (the usual case: header names, property paths, log lines).
pub(crate) fn utf8_lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Writes bytes at `ptr`; `false` when out of bounds.
pub(crate) fn write(caller: &mut Ctx<'_>, ptr: i32, bytes: &[u8]) -> bool {
    let Some(memory) = caller.data().memory else {
        return false;
    };
    let start = ptr as u32 as usize;
    let Some(end) = start.checked_add(bytes.len()) else {
        return false;
    };
    match memory.data_mut(caller).get_mut(start..end) {
        Some(target) => {
            target.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

pub(crate) fn write_u32(caller: &mut Ctx<'_>, ptr: i32, value: u32) -> bool {
    write(caller, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut Ctx<'_>, ptr: i32, value: u64) -> bool {
    write(caller, ptr, &value.to_le_bytes())
}

/// Allocates `bytes.len()` in the guest and copies `bytes` there; returns the guest pointer,
/// `Ok(None)` when the guest has no allocator or returned null.
pub(crate) fn allocate(caller: &mut Ctx<'_>, bytes: &[u8]) -> wasmtime::Result<Option<u32>> {
    let Some(allocator) = caller.data().allocator.clone() else {
        return Ok(None);
    };
    let pointer = allocator.call(&mut *caller, bytes.len() as i32)? as u32;
    if pointer == 0 || !write(caller, pointer as i32, bytes) {
        return Ok(None);
    }
    Ok(Some(pointer))
}

/// cpp-host's `copyToPointerSize`: an empty value is returned as pointer 0, size 0 (the Rust
/// SDK reads that as `None`); anything else is copied into guest-allocated memory.
pub(crate) fn copy_out(
    caller: &mut Ctx<'_>,
    bytes: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
) -> wasmtime::Result<Status> {
    let mut pointer = 0;
    if !bytes.is_empty() {
        match allocate(caller, bytes)? {
            Some(allocated) => pointer = allocated,
            None => return Ok(Status::InvalidMemoryAccess),
        }
    }
    if !write_u32(caller, ptr_ptr, pointer) || !write_u32(caller, size_ptr, bytes.len() as u32) {
        return Ok(Status::InvalidMemoryAccess);
    }
    Ok(Status::Ok)
}
