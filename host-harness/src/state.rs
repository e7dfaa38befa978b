//! The host's per-plugin state inside the wasmtime `Store`: contexts and their streams, logs,
//! metrics, shared data and queues, dispatched http calls, the test's clock, hostcall counts.
//! Nothing here is global: every `Plugin` owns one.

use crate::abi::{LogLevel, MapType, MetricType};
use crate::connection::Connection;
use crate::exchange::{DispatchedHttpCall, HttpCallResponse, LocalResponse, Route};
use crate::grpc::DispatchedGrpcCall;
use crate::headers::HeaderMap;
use crate::metadata::Metadata;
use crate::observe::{Hostcall, HostcallCounts, LogRecord, Metric};
use crate::settings::PluginSettings;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use wasmtime::{Memory, TypedFunc};

/// The id of the plugin's root context (cpp-host numbers the VM context 0, the root 1).
pub(crate) const ROOT_CONTEXT_ID: u32 = 1;

/// A map keyed by the ids the host hands out itself (context and metric ids): SipHash's defence
/// against chosen keys buys nothing there and costs more than the lookup, several per hostcall.
pub(crate) type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a u32 id, folded so that both the low bits (the bucket) and the high
/// bits (the tag) vary between ids.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u32(u32::from(byte) ^ (self.0 as u32).rotate_left(8));
        }
    }

    fn write_u32(&mut self, id: u32) {
        let product = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = product ^ (product >> 32);
    }
}

pub(crate) struct HostState {
    pub settings: Arc<PluginSettings>,
    pub plugin_configuration: Vec<u8>,
    pub memory: Option<Memory>,
    // Shared so that a hostcall can call it without cloning its signature.
    pub allocator: Option<Arc<TypedFunc<i32, i32>>>,
    pub now_ns: u64,
    pub rng: u64,
    pub logs: Vec<LogRecord>,
    pub panic_message: Option<String>,
    pub metrics: MetricStore,
    /// Which of the plugin's VMs this is (0: the main thread's, `i`: worker `i - 1`'s).
    pub vm_index: usize,
    pub queues: Vec<SharedQueue>,
    /// Queues with new items: the registrant's VM, its root context and the queue token.
    pub ready_queues: VecDeque<(usize, u32, u32)>,
    pub http_calls: BTreeMap<u32, DispatchedHttpCall>,
    pub next_http_token: u32,
    pub http_call_response: Option<HttpCallResponse>,
    pub grpc_calls: BTreeMap<u32, DispatchedGrpcCall>,
    pub next_grpc_token: u32,
    /// The message `proxy_on_grpc_receive` is delivering (`GrpcReceiveBuffer`).
    pub grpc_message: Option<Vec<u8>>,
    /// The metadata `proxy_on_grpc_receive_*_metadata` is delivering.
    pub grpc_metadata: Option<HeaderMap>,
    pub status: (u32, String),
    pub current_context: u32,
    pub effective_context: Option<u32>,
    pub configuring: bool,
    pub call_data: Vec<u8>,
    pub roots: IdMap<RootContext>,
    pub streams: IdMap<StreamState>,
    pub pending_done: Vec<u32>,
    pub done_called: Vec<u32>,
}

#[derive(Default)]
pub(crate) struct RootContext {
    pub tick_period_ms: u64,
    pub next_tick_ns: Option<u64>,
    /// Properties declared with the `declare_property` foreign function, by name.
    pub declared: BTreeMap<String, crate::declared::DeclaredProperty>,
}

pub(crate) struct SharedQueue {
    pub vm_id: String,
    pub name: String,
    /// The VM that registered the queue last: `proxy_on_queue_ready` goes to it.
    pub vm: usize,
    pub root_context: u32,
    pub items: VecDeque<Vec<u8>>,
}

/// Which of the stream's maps and buffers Envoy currently hands to the filter: a map is only
/// reachable while its callback runs or while the stream is stopped in it.
#[derive(Default, Clone, Copy)]
pub(crate) struct Live {
    pub request_headers: bool,
    pub request_body: bool,
    pub request_trailers: bool,
    pub response_headers: bool,
    pub response_body: bool,
    pub response_trailers: bool,
}

pub(crate) struct StreamState {
    pub connection: Connection,
    pub source_address: SocketAddr,
    pub route: Route,
    pub dynamic_metadata: Metadata,
    pub start_ns: u64,
    pub protocol: &'static str,
    pub request_headers: HeaderMap,
    pub request_body: Vec<u8>,
    pub request_trailers: Option<HeaderMap>,
    pub request_body_bytes: u64,
    pub response_headers: Option<HeaderMap>,
    pub response_body: Vec<u8>,
    pub response_trailers: Option<HeaderMap>,
    pub live: Live,
    pub end_of_stream: bool,
    pub access_log_phase: bool,
    pub local_response: Option<LocalResponse>,
    pub continue_request: bool,
    pub continue_response: bool,
    pub closed: bool,
    pub filter_state: BTreeMap<String, Vec<u8>>,
    pub response_code: Option<u32>,
    pub response_code_details: Option<Cow<'static, str>>,
    pub hostcalls: HostcallCounts,
}

impl StreamState {
    pub fn new(
        connection: Connection,
        source_address: SocketAddr,
        route: Route,
        start_ns: u64,
        request_headers: HeaderMap,
    ) -> StreamState {
        StreamState {
            connection,
            source_address,
            route,
            dynamic_metadata: Metadata::default(),
            start_ns,
            protocol: "HTTP/1.1",
            request_headers,
            request_body: Vec::new(),
            request_trailers: None,
            request_body_bytes: 0,
            response_headers: None,
            response_body: Vec::new(),
            response_trailers: None,
            live: Live::default(),
            end_of_stream: false,
            access_log_phase: false,
            local_response: None,
            continue_request: false,
            continue_response: false,
            closed: false,
            filter_state: BTreeMap::new(),
            response_code: None,
            response_code_details: None,
            hostcalls: HostcallCounts::default(),
        }
    }

    /// The map Envoy's `getMap` returns (mutable access), creating trailers the way
    /// `addDecodedTrailers` does when asked during the last body callback.
    pub fn writable_map(&mut self, map: MapType) -> Option<&mut HeaderMap> {
        match map {
            MapType::RequestHeaders if self.live.request_headers => Some(&mut self.request_headers),
            MapType::RequestTrailers => {
                if !self.live.request_trailers && self.live.request_body && self.end_of_stream {
                    self.live.request_trailers = true;
                    self.request_trailers.get_or_insert_with(HeaderMap::new);
                }
                if self.live.request_trailers {
                    self.request_trailers.as_mut()
                } else {
                    None
                }
            }
            MapType::ResponseHeaders if self.live.response_headers => {
                self.response_headers.as_mut()
            }
            MapType::ResponseTrailers => {
                if !self.live.response_trailers && self.live.response_body && self.end_of_stream {
                    self.live.response_trailers = true;
                    self.response_trailers.get_or_insert_with(HeaderMap::new);
                }
                if self.live.response_trailers {
                    self.response_trailers.as_mut()
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// The map Envoy's `getConstMap` returns (read access), including the access-log phase.
    pub fn readable_map(&self, map: MapType) -> Option<&HeaderMap> {
        if self.access_log_phase {
            return match map {
                MapType::RequestHeaders => Some(&self.request_headers),
                MapType::ResponseHeaders => self.response_headers.as_ref(),
                MapType::ResponseTrailers => self.response_trailers.as_ref(),
                _ => None,
            };
        }
        match map {
            MapType::RequestHeaders if self.live.request_headers => Some(&self.request_headers),
            MapType::RequestTrailers if self.live.request_trailers => {
                self.request_trailers.as_ref()
            }
            MapType::ResponseHeaders if self.live.response_headers => {
                self.response_headers.as_ref()
            }
            MapType::ResponseTrailers if self.live.response_trailers => {
                self.response_trailers.as_ref()
            }
            _ => None,
        }
    }
}

/// Metrics as Envoy's Wasm extension keeps them: ids carry the type in their low two bits and
/// step by 4; defining a name twice yields a new id for the same stat.
#[derive(Default)]
pub(crate) struct MetricStore {
    pub ids: IdMap<usize>,
    pub metrics: Vec<Metric>,
    pub by_name: HashMap<(String, MetricType), usize>,
    pub next_id: [u32; 3],
}

impl MetricStore {
    pub fn define(&mut self, kind: MetricType, name: &str) -> u32 {
        let index = match self.by_name.get(&(name.to_string(), kind)) {
            Some(&index) => index,
            None => {
                self.metrics.push(Metric {
                    name: name.to_string(),
                    kind,
                    value: 0,
                    samples: Vec::new(),
                });
                self.by_name
                    .insert((name.to_string(), kind), self.metrics.len() - 1);
                self.metrics.len() - 1
            }
        };
        let slot = kind as usize;
        let id = self.next_id[slot] * 4 + kind as u32;
        self.next_id[slot] += 1;
        self.ids.insert(id, index);
        id
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Metric> {
        let index = *self.ids.get(&id)?;
        self.metrics.get_mut(index)
    }

    /// The type an id claims through its low bits (what Envoy dispatches on).
    pub fn kind_of(id: u32) -> Option<MetricType> {
        MetricType::from_code(id & 3)
    }
}

impl HostState {
    pub fn new(settings: Arc<PluginSettings>) -> HostState {
        HostState {
            plugin_configuration: settings.configuration.clone(),
            now_ns: settings.start_time_ns,
            rng: settings.seed | 1,
            settings,
            memory: None,
            allocator: None,
            logs: Vec::new(),
            panic_message: None,
            metrics: MetricStore::default(),
            vm_index: 0,
            queues: Vec::new(),
            ready_queues: VecDeque::new(),
            http_calls: BTreeMap::new(),
            next_http_token: 1,
            http_call_response: None,
            grpc_calls: BTreeMap::new(),
            next_grpc_token: 1,
            grpc_message: None,
            grpc_metadata: None,
            status: (0, String::new()),
            current_context: 0,
            effective_context: None,
            configuring: false,
            call_data: Vec::new(),
            roots: IdMap::default(),
            streams: IdMap::default(),
            pending_done: Vec::new(),
            done_called: Vec::new(),
        }
    }

    /// Moves what outlives one VM from `self` to the VM that runs next, `next`: the clock, the
    /// deterministic generator, metrics (Envoy's stats), logs, the shared queues and the http
    /// call token counter (tokens stay unique across the plugin's VMs).
    pub fn hand_over(&mut self, next: &mut HostState) {
        next.now_ns = self.now_ns;
        next.rng = self.rng;
        next.next_http_token = self.next_http_token;
        next.next_grpc_token = self.next_grpc_token;
        next.metrics = std::mem::take(&mut self.metrics);
        next.logs = std::mem::take(&mut self.logs);
        next.queues = std::mem::take(&mut self.queues);
        next.ready_queues = std::mem::take(&mut self.ready_queues);
    }

    /// The context hostcalls act on: the one `proxy_set_effective_context` chose, else the one
    /// the host called into.
    pub fn context(&self) -> u32 {
        self.effective_context.unwrap_or(self.current_context)
    }

    pub fn stream(&self) -> Option<&StreamState> {
        self.streams.get(&self.context())
    }

    pub fn stream_mut(&mut self) -> Option<&mut StreamState> {
        let id = self.context();
        self.streams.get_mut(&id)
    }

    /// The root context hostcalls from any context of this plugin belong to.
    pub(crate) fn settings_root_context(&self) -> u32 {
        ROOT_CONTEXT_ID
    }

    pub fn context_exists(&self, id: u32) -> bool {
        self.roots.contains_key(&id) || self.streams.contains_key(&id)
    }

    /// Counts a hostcall for the stream it acts on, so calls a stream's code makes from the root
    /// context's callbacks (after `proxy_set_effective_context`) count for that stream. Only
    /// streams report counts: calls from root contexts are not kept.
    pub fn count_hostcall(&mut self, hostcall: Hostcall) {
        if let Some(stream) = self.stream_mut() {
            stream.hostcalls.count(hostcall);
        }
    }

    pub fn log(&mut self, level: LogLevel, message: String) {
        if level == LogLevel::Critical {
            self.panic_message = Some(message.clone());
        }
        self.logs.push(LogRecord {
            level,
            message,
            context_id: self.context(),
        });
    }

    /// xorshift64*: deterministic per plugin seed, so runs are reproducible.
    pub fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A UUID v4 from the deterministic generator, as Envoy's x-request-id.
    pub fn new_request_id(&mut self) -> String {
        let high = self.next_random();
        let low = self.next_random();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&high.to_be_bytes());
        bytes[8..].copy_from_slice(&low.to_be_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let mut id = String::with_capacity(36);
        for (index, group) in [
            &bytes[..4],
            &bytes[4..6],
            &bytes[6..8],
            &bytes[8..10],
            &bytes[10..],
        ]
        .into_iter()
        .enumerate()
        {
            if index > 0 {
                id.push('-');
            }
            crate::tls::push_hex(&mut id, group);
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_deterministic_uuid_v4s() {
        let settings = || Arc::new(PluginSettings::new("ids"));
        let (mut first, mut second) = (HostState::new(settings()), HostState::new(settings()));
        let id = first.new_request_id();
        assert_eq!(id, second.new_request_id(), "same seed, same id");
        assert_ne!(id, first.new_request_id());
        let dashes: Vec<usize> = id.match_indices('-').map(|(at, _)| at).collect();
        assert_eq!((id.len(), dashes), (36, vec![8, 13, 18, 23]));
        assert_eq!(&id[14..15], "4", "version 4: {id}");
        assert!("89ab".contains(&id[19..20]), "RFC 4122 variant: {id}");
        assert!(id
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }
}
