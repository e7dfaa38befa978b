//! The host glue: the proxy-wasm root context (configuration, the tick) and the HTTP context, each
//! handing its work to the core ([`crate::request::Worker`]), and the hostcalls behind the core's
//! [`Host`] and [`MetricSink`] seams.

mod host;

use crate::policy::Policy;
use crate::record::metrics::MetricSink;
use crate::record::series::MetricKind;
use crate::request::{AccessLine, Response, Worker};
use crate::rewrite::HeaderEdit;
use crate::session::Host;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(CertgateRoot::default()) });
}}

#[derive(Default)]
struct CertgateRoot {
    policy: Option<Rc<Policy>>,
    /// Shared by every HTTP context of this plugin instance.
    worker: Rc<RefCell<Worker>>,
}

impl Context for CertgateRoot {
    fn on_done(&mut self) -> bool {
        // The VM is going away: what was counted since the last tick is handed over now.
        self.worker.borrow_mut().flush_metrics(&mut HostMetrics);
        true
    }
}

impl RootContext for CertgateRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        // Debug logs cost a hostcall each: emit them only when the host would print them.
        if let Ok(level) = proxy_wasm::hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        let Some(policy) =
            self.worker
                .borrow_mut()
                .configure(&HostCalls, &mut HostMetrics, configuration)
        else {
            return false;
        };
        self.set_tick_period(Duration::from_millis(u64::from(
            policy.telemetry.metrics_flush_ms,
        )));
        self.policy = Some(Rc::new(policy));
        true
    }

    fn on_tick(&mut self) {
        self.worker.borrow_mut().tick(&HostCalls, &mut HostMetrics);
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(CertgateHttp {
            policy: self.policy.clone(),
            worker: Rc::clone(&self.worker),
            access_record: None,
        }))
    }
}

struct CertgateHttp {
    /// `None` only if the host creates streams for a plugin whose configuration it refused.
    policy: Option<Rc<Policy>>,
    worker: Rc<RefCell<Worker>>,
    /// The access record, logged at `on_log` (when the request is over).
    access_record: Option<AccessLine>,
}

impl Context for CertgateHttp {}

impl HttpContext for CertgateHttp {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let outcome = self
            .worker
            .borrow_mut()
            .on_request_headers(&HostCalls, self.policy.as_ref());
        self.access_record = outcome.access_record;
        match outcome.response {
            Response::Forward => Action::Continue,
            Response::Reply(reply) => {
                host::send_local_response(
                    reply.status,
                    &reply.headers,
                    reply.body.as_bytes(),
                    reply.grpc_status,
                );
                Action::Pause
            }
        }
    }

    fn on_log(&mut self) {
        if let Some(record) = self.access_record.take() {
            record.log();
        }
    }
}

/// The metric hostcalls.
struct HostMetrics;

impl MetricSink for HostMetrics {
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        host::define_metric(kind, name)
    }

    fn increment(&mut self, id: u32, delta: u64) -> bool {
        host::update_metric(id, MetricKind::Counter, delta)
    }

    fn record(&mut self, id: u32, value: u64) -> bool {
        host::update_metric(id, MetricKind::Histogram, value)
    }
}

/// The hostcalls the core asks for.
struct HostCalls;

impl Host for HostCalls {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        host::property(path)
    }

    fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        host::shared_data(key)
    }

    fn set_shared_data(&self, key: &str, value: &[u8]) -> bool {
        host::set_shared_data(key, value)
    }

    fn now(&self) -> Option<i64> {
        let seconds = proxy_wasm::hostcalls::get_current_time()
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some(i64::try_from(seconds).unwrap_or(i64::MAX))
    }

    fn request_headers(&self) -> Vec<u8> {
        host::request_header_pairs()
    }

    fn set_request_headers(&self, encoded: &[u8]) -> bool {
        host::set_request_header_pairs(encoded)
    }

    fn edit_request_header(&self, edit: HeaderEdit<'_>) -> bool {
        host::edit_request_header(edit)
    }

    fn set_filter_state(&self, name: &str, value: &[u8]) -> bool {
        host::set_filter_state(name, value)
    }

    fn call_foreign_function(&self, name: &str, arguments: &[u8]) -> bool {
        host::call_foreign_function(name, arguments)
    }
}
