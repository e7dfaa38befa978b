//! Compiled guest modules: one wasmtime `Engine` per process, and each module compiled once
//! (keyed by its bytes' hash), so hundreds of tests pay for compilation once.

use crate::error::HarnessError;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::{Config, Engine, Module, ProfilingStrategy};

/// A compiled proxy-wasm module, cheap to clone and share between threads. Each
/// [`Plugin`](crate::Plugin) instantiates it into its own store.
#[derive(Clone)]
pub struct GuestModule {
    pub(crate) module: Module,
    pub(crate) name: Arc<str>,
}

impl std::fmt::Debug for GuestModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestModule")
            .field("name", &self.name)
            .finish()
    }
}

/// How often the engine's epoch advances: the granularity of guest call timeouts.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Set (to anything but `0` or empty) in the environment, the engine writes `/tmp/perf-<pid>.map`
/// naming each compiled guest function, so `perf record` / `perf report` show the guest's own
/// functions (from its name section) instead of anonymous addresses.
pub const PERF_MAP_ENV: &str = "HOST_HARNESS_PERF_MAP";

/// The profiler the engine is built with: a perf map when `setting` (the value of
/// [`PERF_MAP_ENV`]) asks for one.
fn profiling_strategy(setting: Option<&std::ffi::OsStr>) -> ProfilingStrategy {
    match setting {
        Some(value) if !value.is_empty() && value != "0" => ProfilingStrategy::PerfMap,
        _ => ProfilingStrategy::None,
    }
}

/// The process-wide engine. Compiled code is immutable, so sharing it keeps tests independent.
/// A ticker thread advances its epoch so that a guest stuck in a loop is interrupted after the
/// plugin's call timeout instead of hanging the test.
pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        config.epoch_interruption(true);
        config.profiler(profiling_strategy(
            std::env::var_os(PERF_MAP_ENV).as_deref(),
        ));
        let engine = Engine::new(&config).unwrap_or_else(|_| Engine::default());
        let ticking = engine.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            ticking.increment_epoch();
        });
        engine
    })
}

fn cache() -> &'static Mutex<HashMap<u64, Module>> {
    static CACHE: OnceLock<Mutex<HashMap<u64, Module>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

impl GuestModule {
    /// Loads a `.wasm` (or `.wat`) file, compiling it only the first time its bytes are seen in
    /// this process.
    pub fn load(path: impl AsRef<Path>) -> Result<GuestModule, HarnessError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|error| HarnessError::Read {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
        GuestModule::from_bytes(path.display().to_string(), &bytes)
    }

    /// Compiles a module from WebAssembly text (for hand-written test guests).
    pub fn from_wat(name: impl Into<String>, wat: &str) -> Result<GuestModule, HarnessError> {
        GuestModule::from_bytes(name, wat.as_bytes())
    }

    /// Compiles binary wasm or WAT bytes, reusing an earlier compilation of the same bytes.
    pub fn from_bytes(name: impl Into<String>, bytes: &[u8]) -> Result<GuestModule, HarnessError> {
        let name: Arc<str> = name.into().into();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut hasher);
        let key = hasher.finish();
        if let Some(module) = cache().lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(GuestModule { module, name });
        }
        // Compiling outside the lock lets different modules compile in parallel; two threads
        // compiling the same bytes at once merely do the work twice.
        let module = Module::new(engine(), bytes).map_err(|error| HarnessError::Compile {
            module: name.to_string(),
            reason: format!("{error:#}"),
        })?;
        if let Ok(mut cache) = cache().lock() {
            cache.insert(key, module.clone());
        }
        Ok(GuestModule { module, name })
    }

    /// The name the module was loaded under (its path, for files).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The module's imports as `module::name`, e.g. `env::proxy_log`.
    pub fn imports(&self) -> Vec<String> {
        self.module
            .imports()
            .map(|import| format!("{}::{}", import.module(), import.name()))
            .collect()
    }

    /// The module's export names.
    pub fn exports(&self) -> Vec<String> {
        self.module
            .exports()
            .map(|export| export.name().to_string())
            .collect()
    }
}
