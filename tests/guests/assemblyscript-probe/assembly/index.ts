// A small AssemblyScript filter on @solo-io/proxy-runtime, written to exercise an SDK other than
// Rust's through the harness and through Envoy with the same requests:
// - `GET /local` gets a local reply (418, a header, a body) without reaching the upstream;
// - a request with `x-call` dispatches an HTTP call to the cluster `as_backend` and continues with
//   the call's status copied into `x-call-status`, or answers 503 when the call brings no status;
// - every other request goes upstream with `x-as-probe` set to the plugin configuration,
//   `x-replace-me` replaced and `x-remove-me` removed, and the names of the request headers the
//   filter saw, in order, in `x-seen-names`;
// - every response gets `x-as-probe-response: <status the filter saw>`;
// - `/trap` traps (`unreachable`) in the request-headers callback, failing the VM;
// - a request to `/buffer` has its whole body buffered before it goes upstream;
// - the root context logs `as_probe: configured` each time a VM is configured;
// - at the end of every request (`onLog`) it logs the `server` response header the log phase
//   reads: `as_probe: log phase sees server <value>`.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
  send_local_response, GrpcStatusValues, HeaderPair, Headers, continue_request,
  LogLevelValues, log, FilterDataStatusValues,
} from "@solo-io/proxy-runtime";

class ProbeRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new Probe(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    const accepted = super.onConfigure(configuration_size);
    log(LogLevelValues.info, "as_probe: configured");
    return accepted;
  }
}

function header(name: string, value: string): HeaderPair {
  return new HeaderPair(String.UTF8.encode(name), String.UTF8.encode(value));
}

function callAnswered(origin: Context, headers: u32, body_size: usize, trailers: u32): void {
  const status = stream_context.headers.http_callback.get(":status");
  if (status == "") {
    log(LogLevelValues.warn, "as_probe: the call brought no status");
    const reply: Headers = [];
    send_local_response(503, "as_probe_call_failed", String.UTF8.encode("call failed\n"), reply,
      GrpcStatusValues.Unavailable);
    return;
  }
  stream_context.headers.request.add("x-call-status", status);
  continue_request();
}

class Probe extends Context {
  buffering: bool = false;

  constructor(context_id: u32, root_context: ProbeRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const request = stream_context.headers.request;
    if (request.get(":path") == "/trap") {
      unreachable();
    }
    this.buffering = request.get(":path") == "/buffer";
    if (request.get(":path") == "/local") {
      const reply: Headers = [header("x-as-probe", "local")];
      send_local_response(418, "as_probe_local", String.UTF8.encode("short and stout\n"), reply,
        GrpcStatusValues.Unknown);
      return FilterHeadersStatusValues.StopIteration;
    }
    if (request.get("x-call") != "") {
      const call: Headers = [
        header(":method", "GET"),
        header(":path", "/check"),
        header(":authority", "as-backend"),
      ];
      const noTrailers: Headers = [];
      this.root_context.httpCall("as_backend", call, new ArrayBuffer(0), noTrailers, 1000, this,
        callAnswered);
      return FilterHeadersStatusValues.StopIteration;
    }
    const names: string[] = [];
    const seen = request.get_headers();
    for (let i = 0; i < seen.length; i++) {
      names.push(String.UTF8.decode(seen[i].key));
    }
    request.add("x-seen-names", names.join(","));
    request.add("x-as-probe", this.root_context.getConfiguration());
    if (request.get("x-replace-me") != "") {
      request.replace("x-replace-me", "replaced");
    }
    request.remove("x-remove-me");
    return FilterHeadersStatusValues.Continue;
  }

  onRequestBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (this.buffering && !end_of_stream) {
      return FilterDataStatusValues.StopIterationAndBuffer;
    }
    return FilterDataStatusValues.Continue;
  }

  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const response = stream_context.headers.response;
    response.add("x-as-probe-response", response.get(":status"));
    return FilterHeadersStatusValues.Continue;
  }

  onLog(): void {
    const server = stream_context.headers.response.get("server");
    log(LogLevelValues.info, "as_probe: log phase sees server " + server);
  }
}

registerRootContext((context_id: u32) => { return new ProbeRoot(context_id); }, "as_probe");
