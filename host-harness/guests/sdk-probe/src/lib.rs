//! A small filter in the Rust SDK's usual style, unrelated to certgate: it tags requests,
//! guards a path behind an http call, counts hits in shared data, ticks, and panics on demand
//! so the harness's trap reporting can be checked.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot { ticks: None }) });
}}

struct ProbeRoot {
    ticks: Option<u32>,
}

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, _: usize) -> bool {
        self.ticks = proxy_wasm::hostcalls::define_metric(MetricType::Counter, "probe_ticks").ok();
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match config.as_slice() {
            b"panic" => panic!("configured to panic"),
            b"reject" => {
                proxy_wasm::hostcalls::log(LogLevel::Error, "rejecting configuration").ok();
                false
            }
            _ => {
                self.set_tick_period(Duration::from_secs(1));
                true
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(ticks) = self.ticks {
            proxy_wasm::hostcalls::increment_metric(ticks, 1).ok();
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ProbeStream))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ProbeStream;

impl Context for ProbeStream {
    fn on_http_call_response(&mut self, _: u32, _: usize, _: usize, _: usize) {
        let status = self.get_http_call_response_header(":status");
        if status.as_deref() == Some("200") {
            self.set_http_request_header("x-auth", Some("granted"));
            self.resume_http_request();
        } else {
            self.send_http_response(401, vec![("x-auth", "denied")], Some(b"no"));
        }
    }
}

impl HttpContext for ProbeStream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        match path.as_str() {
            "/panic" => panic!("boom at {path}"),
            "/guarded" => {
                let headers = vec![
                    (":method", "GET"),
                    (":path", "/check"),
                    (":authority", "auth"),
                ];
                match self.dispatch_http_call("auth", headers, None, vec![], Duration::from_secs(1))
                {
                    Ok(_) => Action::Pause,
                    Err(_) => {
                        self.send_http_response(500, vec![], Some(b"dispatch failed"));
                        Action::Pause
                    }
                }
            }
            "/shared" => {
                let (value, cas) = self.get_shared_data("hits");
                let hits = value
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .and_then(|text| text.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                self.set_shared_data("hits", Some(hits.to_string().as_bytes()), cas)
                    .ok();
                self.set_http_request_header("x-hits", Some(&hits.to_string()));
                Action::Continue
            }
            _ => {
                self.add_http_request_header("x-sdk", "rust");
                if let Some(uri) = self.get_property(vec!["connection", "uri_san_peer_certificate"])
                {
                    self.add_http_request_header("x-peer-uri", &String::from_utf8_lossy(&uri));
                }
                self.set_property(vec!["sdk_seen"], Some(b"yes"));
                println!("stdout from the guest");
                eprintln!("stderr from the guest");
                Action::Continue
            }
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("x-sdk-response", Some("seen"));
        Action::Continue
    }
}
