//! The WASI preview1 calls cpp-host offers a proxy-wasm guest, with cpp-host's answers:
//! stdout/stderr become logs (INFO/ERROR), no files, no arguments, the test's clock, and
//! deterministic randomness. `proc_exit` traps with the exit code.

use crate::abi::LogLevel;
use crate::memory::{read, utf8_lossy, write, write_u32, write_u64, Ctx};
use crate::observe::Hostcall;
use crate::state::HostState;
use wasmtime::Linker;

const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const ENOSYS: i32 = 52;
const ENOTSUP: i32 = 58;
const ENOTCAPABLE: i32 = 76;

fn enter(caller: &mut Ctx<'_>, hostcall: Hostcall) {
    caller.data_mut().count_hostcall(hostcall);
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    // cpp-host serves both the current and the pre-snapshot module name.
    for module in ["wasi_snapshot_preview1", "wasi_unstable"] {
        linker.func_wrap(module, Hostcall::FdWrite.name(), fd_write)?;
        linker.func_wrap(
            module,
            Hostcall::FdRead.name(),
            |mut c: Ctx<'_>, _: i32, _: i32, _: i32, _: i32| {
                enter(&mut c, Hostcall::FdRead);
                Ok(ENOSYS)
            },
        )?;
        linker.func_wrap(
            module,
            Hostcall::FdSeek.name(),
            |mut c: Ctx<'_>, _: i32, _: i64, _: i32, _: i32| {
                enter(&mut c, Hostcall::FdSeek);
                Ok(SUCCESS)
            },
        )?;
        linker.func_wrap(
            module,
            Hostcall::FdClose.name(),
            |mut c: Ctx<'_>, _: i32| {
                enter(&mut c, Hostcall::FdClose);
                Ok(SUCCESS)
            },
        )?;
        linker.func_wrap(module, Hostcall::FdFdstatGet.name(), fd_fdstat_get)?;
        linker.func_wrap(
            module,
            Hostcall::FdPrestatGet.name(),
            |mut c: Ctx<'_>, _: i32, _: i32| {
                enter(&mut c, Hostcall::FdPrestatGet);
                Ok(EBADF)
            },
        )?;
        linker.func_wrap(
            module,
            Hostcall::FdPrestatDirName.name(),
            |mut c: Ctx<'_>, _: i32, _: i32, _: i32| {
                enter(&mut c, Hostcall::FdPrestatDirName);
                Ok(ENOSYS)
            },
        )?;
        linker.func_wrap(
            module,
            Hostcall::PathOpen.name(),
            |mut c: Ctx<'_>,
             _: i32,
             _: i32,
             _: i32,
             _: i32,
             _: i32,
             _: i64,
             _: i64,
             _: i32,
             _: i32| {
                enter(&mut c, Hostcall::PathOpen);
                Ok(ENOTCAPABLE)
            },
        )?;
        linker.func_wrap(module, Hostcall::EnvironGet.name(), environ_get)?;
        linker.func_wrap(module, Hostcall::EnvironSizesGet.name(), environ_sizes_get)?;
        linker.func_wrap(
            module,
            Hostcall::ArgsGet.name(),
            |mut c: Ctx<'_>, _: i32, _: i32| {
                enter(&mut c, Hostcall::ArgsGet);
                Ok(SUCCESS)
            },
        )?;
        linker.func_wrap(
            module,
            Hostcall::ArgsSizesGet.name(),
            |mut c: Ctx<'_>, count: i32, size: i32| {
                enter(&mut c, Hostcall::ArgsSizesGet);
                if !write_u32(&mut c, count, 0) || !write_u32(&mut c, size, 0) {
                    return Ok(EFAULT);
                }
                Ok(SUCCESS)
            },
        )?;
        linker.func_wrap(module, Hostcall::ClockTimeGet.name(), clock_time_get)?;
        linker.func_wrap(module, Hostcall::RandomGet.name(), random_get)?;
        linker.func_wrap(
            module,
            Hostcall::ProcExit.name(),
            |mut c: Ctx<'_>, code: i32| -> wasmtime::Result<()> {
                enter(&mut c, Hostcall::ProcExit);
                Err(wasmtime::Error::msg(format!(
                    "guest called proc_exit({code})"
                )))
            },
        )?;
    }
    Ok(())
}

fn fd_write(
    mut caller: Ctx<'_>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    written_ptr: i32,
) -> wasmtime::Result<i32> {
    enter(&mut caller, Hostcall::FdWrite);
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return Ok(EBADF),
    };
    let mut message = Vec::new();
    for index in 0..iovs_len.max(0) {
        let Some(iovec) = read(&caller, iovs.wrapping_add(index * 8), 8) else {
            return Ok(EFAULT);
        };
        let buf = i32::from_le_bytes([iovec[0], iovec[1], iovec[2], iovec[3]]);
        let len = i32::from_le_bytes([iovec[4], iovec[5], iovec[6], iovec[7]]);
        if len != 0 {
            let Some(bytes) = read(&caller, buf, len) else {
                return Ok(EFAULT);
            };
            message.extend_from_slice(&bytes);
        }
    }
    let written = message.len();
    if message.last() == Some(&b'\n') {
        message.pop();
    }
    if written > 0 {
        caller
            .data_mut()
            .log(level, utf8_lossy(&message).into_owned());
    }
    if !write_u32(&mut caller, written_ptr, written as u32) {
        return Ok(EFAULT);
    }
    Ok(SUCCESS)
}

fn fd_fdstat_get(mut caller: Ctx<'_>, fd: i32, stat_ptr: i32) -> wasmtime::Result<i32> {
    enter(&mut caller, Hostcall::FdFdstatGet);
    if fd != 1 && fd != 2 {
        return Ok(EBADF);
    }
    // A character device with only the FD_WRITE right (64), as cpp-host describes stdout.
    let mut stat = [0u8; 24];
    stat[8] = 64;
    if !write(&mut caller, stat_ptr, &stat) {
        return Ok(EFAULT);
    }
    Ok(SUCCESS)
}

fn environment(state: &HostState) -> Vec<Vec<u8>> {
    state
        .settings
        .environment
        .iter()
        .map(|(key, value)| format!("{key}={value}\0").into_bytes())
        .collect()
}

fn environ_get(mut caller: Ctx<'_>, array_ptr: i32, buf_ptr: i32) -> wasmtime::Result<i32> {
    enter(&mut caller, Hostcall::EnvironGet);
    let mut slot = array_ptr;
    let mut at = buf_ptr;
    for entry in environment(caller.data()) {
        if !write_u32(&mut caller, slot, at as u32) || !write(&mut caller, at, &entry) {
            return Ok(EFAULT);
        }
        slot = slot.wrapping_add(4);
        at = at.wrapping_add(entry.len() as i32);
    }
    Ok(SUCCESS)
}

fn environ_sizes_get(mut caller: Ctx<'_>, count_ptr: i32, size_ptr: i32) -> wasmtime::Result<i32> {
    enter(&mut caller, Hostcall::EnvironSizesGet);
    let entries = environment(caller.data());
    let size: usize = entries.iter().map(Vec::len).sum();
    if !write_u32(&mut caller, count_ptr, entries.len() as u32)
        || !write_u32(&mut caller, size_ptr, size as u32)
    {
        return Ok(EFAULT);
    }
    Ok(SUCCESS)
}

fn clock_time_get(
    mut caller: Ctx<'_>,
    clock: i32,
    _precision: i64,
    time_ptr: i32,
) -> wasmtime::Result<i32> {
    enter(&mut caller, Hostcall::ClockTimeGet);
    // Realtime and monotonic both read the test's clock, so time moves only when the test says.
    if clock != 0 && clock != 1 {
        return Ok(ENOTSUP);
    }
    let now = caller.data().now_ns;
    if !write_u64(&mut caller, time_ptr, now) {
        return Ok(EFAULT);
    }
    Ok(SUCCESS)
}

fn random_get(mut caller: Ctx<'_>, buf_ptr: i32, len: i32) -> wasmtime::Result<i32> {
    enter(&mut caller, Hostcall::RandomGet);
    let mut bytes = Vec::with_capacity(len.max(0) as usize);
    while bytes.len() < len.max(0) as usize {
        bytes.extend_from_slice(&caller.data_mut().next_random().to_le_bytes());
    }
    bytes.truncate(len.max(0) as usize);
    if !write(&mut caller, buf_ptr, &bytes) {
        return Ok(EFAULT);
    }
    Ok(SUCCESS)
}
