//! Where a backend's requests go. App Mesh found a virtual service's endpoints through the mesh:
//! the service names a virtual node, or a virtual router whose routes name virtual nodes by
//! weight, and each node is reached at its DNS service discovery name on its listener's port. When
//! those resources are among the inputs, the backend's cluster gets those endpoints and weights;
//! when they are not, the importer dials the virtual service's own name and says so.

use super::model::*;

/// One endpoint of a backend: a virtual node's DNS name and listener port, with its route weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub weight: u32,
}

/// A virtual service resolved through the inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub endpoints: Vec<Endpoint>,
    /// The service's DNS name when the resource's name is not it (Kubernetes `awsName`).
    pub dns_name: Option<String>,
    /// How it was resolved, for the report: `virtual router `r` -> red (weight 1) at ...`.
    pub via: String,
}

/// Why a virtual service among the inputs could not be resolved, for the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Unresolved(pub String);

/// Every resource of the inputs, to look virtual services, routers and nodes up by name.
pub struct Mesh<'a> {
    resources: &'a [Resource],
}

impl<'a> Mesh<'a> {
    pub fn new(resources: &'a [Resource]) -> Self {
        Mesh { resources }
    }

    /// The endpoints of the virtual service `service` (its name, or its Kubernetes `awsName`):
    /// `Ok(None)` when it is not among the inputs.
    pub fn resolve(&self, service: &str) -> Result<Option<Resolved>, Unresolved> {
        let Some((name, virtual_service)) = self.resources.iter().find_map(|r| match &r.spec {
            Spec::VirtualService(vs)
                if r.name == service || vs.aws_name.as_deref() == Some(service) =>
            {
                Some((r.name.as_str(), vs))
            }
            _ => None,
        }) else {
            return Ok(None);
        };
        let dns_name = virtual_service
            .aws_name
            .clone()
            .filter(|aws_name| aws_name != service);
        let (targets, provider) = match &virtual_service.provider {
            None => {
                return Err(Unresolved(format!(
                    "virtual service `{name}` has no provider"
                )))
            }
            Some(Provider::Node(node)) => (
                vec![WeightedTarget {
                    node: node.clone(),
                    weight: 1,
                    port: None,
                }],
                format!("virtual node `{node}`"),
            ),
            Some(Provider::Router(router)) => (
                self.router_targets(router)?,
                format!("virtual router `{router}`"),
            ),
        };
        let mut endpoints = Vec::new();
        let mut described = Vec::new();
        for target in targets.iter().filter(|target| target.weight > 0) {
            let endpoint = self.endpoint(target)?;
            described.push(format!(
                "`{}` (weight {}) at {}:{}",
                target.node, endpoint.weight, endpoint.host, endpoint.port
            ));
            endpoints.push(endpoint);
        }
        if endpoints.is_empty() {
            return Err(Unresolved(format!(
                "{provider} sends no request anywhere (every weight is 0)"
            )));
        }
        Ok(Some(Resolved {
            endpoints,
            dns_name,
            via: format!(
                "virtual service `{name}` -> {provider} -> {}",
                described.join(", ")
            ),
        }))
    }

    /// The targets of every route of `router`, written inside it or as `Route` resources, the
    /// weights of a node named by several routes added up.
    fn router_targets(&self, router: &str) -> Result<Vec<WeightedTarget>, Unresolved> {
        let Some(inline) = self.resources.iter().find_map(|r| match &r.spec {
            Spec::VirtualRouter(vr) if r.name == router => Some(&vr.routes),
            _ => None,
        }) else {
            return Err(Unresolved(format!(
                "virtual router `{router}` is not among the inputs"
            )));
        };
        let routes = inline
            .iter()
            .chain(self.resources.iter().filter_map(|r| match &r.spec {
                Spec::Route(route) if route.router.as_deref() == Some(router) => {
                    Some(&route.targets)
                }
                _ => None,
            }));
        let mut merged: Vec<WeightedTarget> = Vec::new();
        for target in routes.flatten() {
            match merged
                .iter_mut()
                .find(|known| known.node == target.node && known.port == target.port)
            {
                Some(known) => known.weight += target.weight,
                None => merged.push(target.clone()),
            }
        }
        if merged.is_empty() {
            return Err(Unresolved(format!(
                "virtual router `{router}` has no route with a target among the inputs"
            )));
        }
        Ok(merged)
    }

    /// Where a target node is reached: its DNS name, on the target's port or its listener's.
    fn endpoint(&self, target: &WeightedTarget) -> Result<Endpoint, Unresolved> {
        let node_name = &target.node;
        let Some(node) = self.resources.iter().find_map(|r| match &r.spec {
            Spec::VirtualNode(node) if r.name == *node_name => Some(node),
            _ => None,
        }) else {
            return Err(Unresolved(format!(
                "virtual node `{node_name}` is not among the inputs"
            )));
        };
        let Some(host) = node.dns_hostname.clone() else {
            return Err(Unresolved(format!(
                "virtual node `{node_name}` has no DNS service discovery (Cloud Map, or none)"
            )));
        };
        let Some(port) = target
            .port
            .or_else(|| node.listeners.first().and_then(|listener| listener.port))
        else {
            return Err(Unresolved(format!(
                "virtual node `{node_name}` has no listener port"
            )));
        };
        Ok(Endpoint {
            host,
            port,
            weight: target.weight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(name: &str, spec: Spec) -> Resource {
        Resource {
            name: name.into(),
            origin: Origin {
                file: "mesh.yaml".into(),
                line: 1,
                path: String::new(),
            },
            form: "Kubernetes",
            spec,
        }
    }

    fn node(name: &str, host: Option<&str>, port: u16) -> Resource {
        resource(
            name,
            Spec::VirtualNode(VirtualNode {
                listeners: vec![Listener {
                    origin: Origin {
                        file: String::new(),
                        line: 0,
                        path: String::new(),
                    },
                    port: Some(port),
                    protocol: "http".into(),
                    tls: None,
                }],
                backends: Vec::new(),
                backend_defaults: None,
                dns_hostname: host.map(str::to_string),
            }),
        )
    }

    fn service(name: &str, aws_name: Option<&str>, provider: Provider) -> Resource {
        resource(
            name,
            Spec::VirtualService(VirtualService {
                aws_name: aws_name.map(str::to_string),
                provider: Some(provider),
            }),
        )
    }

    fn target(node: &str, weight: u32) -> WeightedTarget {
        WeightedTarget {
            node: node.into(),
            weight,
            port: None,
        }
    }

    #[test]
    fn a_router_splits_by_weight_across_its_routes_and_a_node_provides_itself() {
        let inputs = [
            node("red", Some("red.color.svc.cluster.local"), 8080),
            node("blue", Some("blue.color.svc.cluster.local"), 9090),
            service(
                "color",
                Some("color.color.svc.cluster.local"),
                Provider::Router("color-router".into()),
            ),
            resource(
                "color-router",
                Spec::VirtualRouter(VirtualRouter {
                    routes: vec![vec![target("red", 3), target("blue", 1)]],
                }),
            ),
            resource(
                "more-red",
                Spec::Route(RouterRoute {
                    router: Some("color-router".into()),
                    targets: vec![target("red", 2), target("blue", 0)],
                }),
            ),
            service("red.local", None, Provider::Node("red".into())),
        ];
        let mesh = Mesh::new(&inputs);
        let color = mesh.resolve("color").unwrap().unwrap();
        assert_eq!(
            color.endpoints,
            [
                Endpoint {
                    host: "red.color.svc.cluster.local".into(),
                    port: 8080,
                    weight: 5
                },
                Endpoint {
                    host: "blue.color.svc.cluster.local".into(),
                    port: 9090,
                    weight: 1
                }
            ]
        );
        assert_eq!(
            color.dns_name.as_deref(),
            Some("color.color.svc.cluster.local")
        );
        // The awsName finds it too.
        assert_eq!(
            mesh.resolve("color.color.svc.cluster.local")
                .unwrap()
                .unwrap()
                .endpoints,
            color.endpoints
        );
        let red = mesh.resolve("red.local").unwrap().unwrap();
        assert_eq!(red.endpoints[0].port, 8080);
        assert_eq!(mesh.resolve("elsewhere.local"), Ok(None));
    }

    #[test]
    fn what_the_inputs_lack_is_named() {
        let table: [(Vec<Resource>, &str); 3] = [
            (
                vec![service("s", None, Provider::Router("r".into()))],
                "virtual router `r` is not among the inputs",
            ),
            (
                vec![service("s", None, Provider::Node("n".into()))],
                "virtual node `n` is not among the inputs",
            ),
            (
                vec![
                    service("s", None, Provider::Node("n".into())),
                    node("n", None, 80),
                ],
                "virtual node `n` has no DNS service discovery",
            ),
        ];
        for (inputs, expected) in table {
            let Err(Unresolved(why)) = Mesh::new(&inputs).resolve("s") else {
                panic!("{expected}: resolved");
            };
            assert!(why.starts_with(expected), "{why:?}");
        }
    }
}
