//! App Mesh resources as the importer understands them, whatever form they were written in (AWS
//! CLI input, `describe-*` output, CloudFormation, Kubernetes CRDs): only what certgate's outputs
//! carry, with where each came from so the report can name it.

/// Where a resource or setting was written: `FILE:LINE` and its field path.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
    pub path: String,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    VirtualNode,
    VirtualGateway,
    GatewayRoute,
    VirtualService,
    VirtualRouter,
    /// A virtual router's route.
    Route,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::VirtualNode => "VirtualNode",
            Kind::VirtualGateway => "VirtualGateway",
            Kind::GatewayRoute => "GatewayRoute",
            Kind::VirtualService => "VirtualService",
            Kind::VirtualRouter => "VirtualRouter",
            Kind::Route => "Route",
        }
    }

    /// The field that names a resource of this kind (any case: CLI input, describe output and
    /// CloudFormation spell it differently).
    pub fn name_key(self) -> &'static str {
        match self {
            Kind::VirtualNode => "virtualNodeName",
            Kind::VirtualGateway => "virtualGatewayName",
            Kind::GatewayRoute => "gatewayRouteName",
            Kind::VirtualService => "virtualServiceName",
            Kind::VirtualRouter => "virtualRouterName",
            Kind::Route => "routeName",
        }
    }

    /// The kind a resource of this kind belongs to (gateway routes to a gateway, routes to a
    /// router).
    pub fn parent(self) -> Option<Kind> {
        match self {
            Kind::GatewayRoute => Some(Kind::VirtualGateway),
            Kind::Route => Some(Kind::VirtualRouter),
            _ => None,
        }
    }

    /// Whether the importer writes outputs for this kind (the others name backends).
    pub fn has_outputs(self) -> bool {
        matches!(self, Kind::VirtualNode | Kind::VirtualGateway)
    }
}

/// A setting of the input and what the importer made of it, for the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub origin: Origin,
    pub kind: NoteKind,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// Carried over: the text says what it became.
    Became,
    /// The operator must act (an ACM certificate, an SDS socket, Cloud Map, an intrinsic).
    NeedsOperator,
    /// Read but not carried over: the text says why.
    NotImported,
}

/// One listener of a virtual node or gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    pub origin: Origin,
    pub port: Option<u16>,
    /// `http`, `http2`, `grpc`, `tcp`.
    pub protocol: String,
    pub tls: Option<ListenerTls>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    Strict,
    Permissive,
    Disabled,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListenerTls {
    pub mode: TlsMode,
    pub certificate: Option<Certificate>,
    pub trust: Option<Trust>,
    /// `validation.subjectAlternativeNames.match.exact`.
    pub sans: Vec<String>,
}

/// Where Envoy's own certificate (or a client certificate) comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Certificate {
    File { chain: String, key: String },
    Sds { secret: String },
    Acm { arn: String },
}

/// The CA bundle a peer's certificate must chain to.
#[derive(Clone, Debug, PartialEq)]
pub enum Trust {
    File { chain: String },
    Sds { secret: String },
    Acm { authority_arns: Vec<String> },
}

/// `clientPolicy.tls`: TLS to a backend.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientTls {
    pub enforce: bool,
    pub ports: Vec<u16>,
    pub certificate: Option<Certificate>,
    pub trust: Option<Trust>,
    pub sans: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub origin: Origin,
    /// The virtual service name (or the Kubernetes `virtualServiceRef` name).
    pub service: String,
    pub tls: Option<ClientTls>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VirtualNode {
    pub listeners: Vec<Listener>,
    pub backends: Vec<Backend>,
    pub backend_defaults: Option<ClientTls>,
    /// `serviceDiscovery.dns.hostname`: where the node's clients found it.
    pub dns_hostname: Option<String>,
}

/// Who answers for a virtual service.
#[derive(Clone, Debug, PartialEq)]
pub enum Provider {
    Node(String),
    Router(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct VirtualService {
    /// Kubernetes `awsName`: the service's DNS name when it differs from the resource's name.
    pub aws_name: Option<String>,
    pub provider: Option<Provider>,
}

/// A virtual node a route sends a share of the requests to.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightedTarget {
    pub node: String,
    pub weight: u32,
    /// The node listener's port, when the node has several.
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VirtualRouter {
    /// The routes written inside the router (Kubernetes); others are `Route` resources.
    pub routes: Vec<Vec<WeightedTarget>>,
}

/// A virtual router's route: only its targets matter to the importer.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterRoute {
    pub router: Option<String>,
    pub targets: Vec<WeightedTarget>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VirtualGateway {
    pub listeners: Vec<Listener>,
    pub backend_defaults: Option<ClientTls>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(String),
    Range { start: i64, end: i64 },
    Present,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HeaderMatch {
    pub name: String,
    pub invert: bool,
    pub matcher: StringMatch,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteMatch {
    pub prefix: Option<String>,
    pub path_exact: Option<String>,
    pub path_regex: Option<String>,
    pub hostname_exact: Option<String>,
    pub hostname_suffix: Option<String>,
    pub method: Option<String>,
    pub headers: Vec<HeaderMatch>,
    /// (name, exact value or `None` for "present").
    pub query: Vec<(String, Option<String>)>,
    pub port: Option<u16>,
    /// gRPC routes: the service name (`/<service>/` prefix).
    pub grpc_service: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GatewayRoute {
    pub gateway: Option<String>,
    /// `httpRoute`, `http2Route` or `grpcRoute`.
    pub protocol: String,
    pub priority: Option<u32>,
    pub matcher: RouteMatch,
    pub service: String,
    pub target_port: Option<u16>,
    /// `rewrite.hostname.defaultTargetHostname` is not DISABLED.
    pub rewrite_host: bool,
    /// The prefix the matched prefix becomes (`/` by default); `None` keeps the path.
    pub prefix_rewrite: Option<String>,
    /// `rewrite.path.exact`.
    pub path_rewrite: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    VirtualNode(VirtualNode),
    VirtualGateway(VirtualGateway),
    GatewayRoute(GatewayRoute),
    VirtualService(VirtualService),
    VirtualRouter(VirtualRouter),
    Route(RouterRoute),
}

/// One resource read from the inputs, with what the reader noted about its settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub name: String,
    pub origin: Origin,
    /// `CLI input`, `describe output`, `CloudFormation`, `Kubernetes`.
    pub form: &'static str,
    pub spec: Spec,
}

impl Resource {
    pub fn kind(&self) -> Kind {
        match self.spec {
            Spec::VirtualNode(_) => Kind::VirtualNode,
            Spec::VirtualGateway(_) => Kind::VirtualGateway,
            Spec::GatewayRoute(_) => Kind::GatewayRoute,
            Spec::VirtualService(_) => Kind::VirtualService,
            Spec::VirtualRouter(_) => Kind::VirtualRouter,
            Spec::Route(_) => Kind::Route,
        }
    }
}
