//! Reading App Mesh resources in every form operators keep them: AWS CLI input JSON (with the name
//! in the document, or only `spec` and the name from the file name), `aws appmesh describe-*`
//! output, CloudFormation templates (`AWS::AppMesh::*`, PascalCase, JSON or YAML) and Kubernetes
//! manifests (`appmesh.k8s.aws/v1beta2`, several documents per file).
//!
//! Field names are compared without case: the four forms spell the same field `certificateArn`,
//! `CertificateArn` and `certificateARN`. A value of the wrong type is an error naming the file,
//! the line and the field path. A field the importer does not carry over becomes a note for the
//! report, never silence; a CloudFormation intrinsic it cannot resolve becomes a placeholder the
//! report names.

use super::model::*;
use super::tree::{self, Node, Value};
use std::fmt;
use std::path::Path;

/// An input the importer cannot read: `FILE:LINE: PATH: message`.
#[derive(Debug, PartialEq)]
pub struct ReadError {
    pub file: String,
    pub line: usize,
    pub path: String,
    pub message: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ReadError {}

type Result<T> = std::result::Result<T, ReadError>;

/// What one file held: its App Mesh resources, and notes about what it held besides.
#[derive(Debug, Default)]
pub struct FileContents {
    pub resources: Vec<Resource>,
    pub notes: Vec<Note>,
}

/// Reads every App Mesh resource of `text`, the contents of the file `path`.
pub fn read_file(path: &Path, text: &str) -> Result<FileContents> {
    let file = path.display().to_string();
    let json = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    let documents = tree::parse(text, json).map_err(|error| ReadError {
        file: file.clone(),
        line: error.line,
        path: String::new(),
        message: format!(
            "not {}: {}",
            if json { "JSON" } else { "YAML" },
            error.message
        ),
    })?;
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut contents = FileContents::default();
    for (index, document) in documents.iter().enumerate() {
        let root = if documents.len() > 1 {
            format!("(document {})", index + 1)
        } else {
            String::new()
        };
        let mut reader = Reader {
            file: file.clone(),
            notes: Vec::new(),
            template_names: Vec::new(),
        };
        reader.document(document, &root, &stem, &mut contents)?;
        contents.notes.extend(reader.notes);
    }
    Ok(contents)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A CloudFormation intrinsic function written on `node` (`!Ref X`, `{"Fn::GetAtt": [...]}`), as text.
fn intrinsic(node: &Node) -> Option<String> {
    if let Some(tag) = &node.tag {
        let argument = match &node.value {
            Value::Scalar { text, .. } => text.clone(),
            Value::Seq(items) => items
                .iter()
                .filter_map(Node::scalar)
                .collect::<Vec<_>>()
                .join(", "),
            _ => "...".into(),
        };
        return Some(format!("{tag} {argument}"));
    }
    match node.entries() {
        Some([(key, value)]) if key == "Ref" || key.starts_with("Fn::") => {
            let argument = match &value.value {
                Value::Scalar { text, .. } => text.clone(),
                Value::Seq(items) => items
                    .iter()
                    .filter_map(Node::scalar)
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => "...".into(),
            };
            Some(format!("{key}: {argument}"))
        }
        _ => None,
    }
}

/// The placeholder written where an unresolved intrinsic was: recognisable, and refused by
/// everything that would use it (no such file, a name no certificate carries).
fn placeholder(intrinsic: &str) -> String {
    let slug: String = intrinsic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    format!("unresolved-{slug}.invalid")
}

struct Reader {
    file: String,
    notes: Vec<Note>,
    /// A CloudFormation template's own App Mesh names, (logical ID, name field, name), so that
    /// `!GetAtt Gateway.VirtualGatewayName` resolves.
    template_names: Vec<(String, String, String)>,
}

impl Reader {
    fn origin(&self, node: &Node, path: &str) -> Origin {
        Origin {
            file: self.file.clone(),
            line: node.line,
            path: path.to_string(),
        }
    }

    fn error(&self, node: &Node, path: &str, message: impl Into<String>) -> ReadError {
        ReadError {
            file: self.file.clone(),
            line: node.line,
            path: path.to_string(),
            message: message.into(),
        }
    }

    fn note(&mut self, node: &Node, path: &str, kind: NoteKind, text: impl Into<String>) {
        let origin = self.origin(node, path);
        self.notes.push(Note {
            origin,
            kind,
            text: text.into(),
        });
    }

    /// Checks `node` is a mapping; notes every key it has that is not in `known` (keys compared
    /// without case), with the reason from `skipped` when the importer knows the field.
    fn fields(
        &mut self,
        node: &Node,
        path: &str,
        known: &[&str],
        skipped: &[(&str, &str)],
    ) -> Result<()> {
        let Some(entries) = node.entries() else {
            return Err(self.error(
                node,
                path,
                format!("expected a mapping, found {}", node.describe()),
            ));
        };
        for (key, value) in entries {
            if known.iter().any(|name| name.eq_ignore_ascii_case(key)) {
                continue;
            }
            let reason = skipped
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(key))
                .map_or("a field the importer does not know", |(_, reason)| reason);
            self.note(
                value,
                &join(path, key),
                NoteKind::NotImported,
                reason.to_string(),
            );
        }
        Ok(())
    }

    /// The child `key` of a mapping and its path.
    fn child<'n>(&self, node: &'n Node, path: &str, key: &str) -> Option<(String, &'n Node)> {
        node.get(key)
            .filter(|(_, value)| value.value != Value::Null)
            .map(|(name, value)| (join(path, name), value))
    }

    /// The name a reference to another resource gives: `name_key` (`virtualServiceName`, a
    /// CloudFormation `!GetAtt` of the same template), a Kubernetes `<prefix>Ref` (the resource's
    /// `metadata.name`) or the last segment of `<prefix>ARN`.
    fn reference(
        &mut self,
        node: &Node,
        path: &str,
        name_key: &str,
        prefix: &str,
    ) -> Result<String> {
        if let Some((name_path, value)) = self.child(node, path, name_key) {
            return self.name_reference(value, &name_path);
        }
        if let Some((ref_path, reference)) = self.child(node, path, &format!("{prefix}Ref")) {
            self.fields(reference, &ref_path, &["name", "namespace"], &[])?;
            return self.req_string(reference, &ref_path, "name");
        }
        if let Some(arn) = self.opt_string(node, path, &format!("{prefix}ARN"))? {
            let name = arn.rsplit('/').next().unwrap_or(&arn).to_string();
            self.note(node, path, NoteKind::Became, format!("ARN {arn}: `{name}`"));
            return Ok(name);
        }
        Err(self.error(node, &join(path, name_key), "required field is missing"))
    }

    /// [`Self::child`] that must be there: its absence is an error naming its path.
    fn required_child<'n>(
        &self,
        node: &'n Node,
        path: &str,
        key: &str,
    ) -> Result<(String, &'n Node)> {
        self.child(node, path, key)
            .ok_or_else(|| self.error(node, &join(path, key), "required field is missing"))
    }

    /// A string; an intrinsic becomes its placeholder and a note.
    fn string(&mut self, node: &Node, path: &str) -> Result<String> {
        if let Some(function) = intrinsic(node) {
            let value = placeholder(&function);
            self.note(
                node,
                path,
                NoteKind::NeedsOperator,
                format!(
                    "CloudFormation intrinsic `{function}` cannot be resolved from the template \
                     alone: written as `{value}`; replace it with the value the stack resolves"
                ),
            );
            return Ok(value);
        }
        match &node.value {
            Value::Scalar { text, .. } => Ok(text.clone()),
            _ => Err(self.error(
                node,
                path,
                format!("expected a string, found {}", node.describe()),
            )),
        }
    }

    fn opt_string(&mut self, node: &Node, path: &str, key: &str) -> Result<Option<String>> {
        match self.child(node, path, key) {
            Some((path, value)) => self.string(value, &path).map(Some),
            None => Ok(None),
        }
    }

    fn req_string(&mut self, node: &Node, path: &str, key: &str) -> Result<String> {
        match self.child(node, path, key) {
            Some((path, value)) => self.string(value, &path),
            None => Err(self.error(node, &join(path, key), "required field is missing")),
        }
    }

    fn integer(&self, node: &Node, path: &str) -> Result<i64> {
        match &node.value {
            Value::Scalar { text, .. } if node.tag.is_none() => text.parse::<i64>().map_err(|_| {
                self.error(node, path, format!("expected an integer, found {text:?}"))
            }),
            _ if intrinsic(node).is_some() => Err(self.error(
                node,
                path,
                format!(
                    "CloudFormation intrinsic `{}` where a number is needed: the importer cannot \
                     resolve it; write the number",
                    intrinsic(node).unwrap_or_default()
                ),
            )),
            _ => Err(self.error(
                node,
                path,
                format!("expected an integer, found {}", node.describe()),
            )),
        }
    }

    fn port(&self, node: &Node, path: &str) -> Result<u16> {
        let value = self.integer(node, path)?;
        u16::try_from(value)
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| self.error(node, path, format!("{value} is not a port (1 to 65535)")))
    }

    fn opt_port(&self, node: &Node, path: &str, key: &str) -> Result<Option<u16>> {
        match self.child(node, path, key) {
            Some((path, value)) => self.port(value, &path).map(Some),
            None => Ok(None),
        }
    }

    fn opt_bool(&self, node: &Node, path: &str, key: &str) -> Result<Option<bool>> {
        let Some((path, value)) = self.child(node, path, key) else {
            return Ok(None);
        };
        match &value.value {
            Value::Scalar { text, plain: true } if text.eq_ignore_ascii_case("true") => {
                Ok(Some(true))
            }
            Value::Scalar { text, plain: true } if text.eq_ignore_ascii_case("false") => {
                Ok(Some(false))
            }
            _ => Err(self.error(
                value,
                &path,
                format!("expected true or false, found {}", value.describe()),
            )),
        }
    }

    /// The items of a list (a missing field is an empty list).
    fn list<'n>(&self, node: &'n Node, path: &str, key: &str) -> Result<Vec<(String, &'n Node)>> {
        let Some((path, value)) = self.child(node, path, key) else {
            return Ok(Vec::new());
        };
        match &value.value {
            Value::Seq(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(index, item)| (format!("{path}[{index}]"), item))
                .collect()),
            _ => Err(self.error(
                value,
                &path,
                format!("expected a list, found {}", value.describe()),
            )),
        }
    }

    fn strings(&mut self, node: &Node, path: &str, key: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (path, item) in self.list(node, path, key)? {
            out.push(self.string(item, &path)?);
        }
        Ok(out)
    }

    // ---- documents ----

    fn document(
        &mut self,
        document: &Node,
        root: &str,
        stem: &str,
        contents: &mut FileContents,
    ) -> Result<()> {
        if document.value == Value::Null {
            return Ok(());
        }
        if document.entries().is_none() {
            return Err(self.error(
                document,
                root,
                format!(
                    "expected a mapping (an App Mesh resource), found {}",
                    document.describe()
                ),
            ));
        }
        if document.get("Resources").is_some() || document.get("AWSTemplateFormatVersion").is_some()
        {
            return self.cloudformation(document, root, contents);
        }
        if document.get("apiVersion").is_some() && document.get("kind").is_some() {
            return self.kubernetes(document, root, contents);
        }
        for (key, kind) in DESCRIBE_KEYS {
            if let Some((path, inner)) = self.child(document, root, key) {
                if inner.get("spec").is_some() {
                    match kind {
                        Some(kind) => {
                            let resource =
                                self.api_resource(inner, &path, kind, None, "describe output")?;
                            contents.resources.push(resource);
                        }
                        None => self.note(inner, &path, NoteKind::NotImported, MESH_REASON),
                    }
                    return Ok(());
                }
            }
        }
        if document.get("spec").is_some() {
            let kind = self.cli_kind(document, stem);
            match kind {
                Some(kind) => {
                    let resource =
                        self.api_resource(document, root, kind, Some(stem), "CLI input")?;
                    contents.resources.push(resource);
                }
                None => self.note(document, root, NoteKind::NotImported, MESH_REASON),
            }
            return Ok(());
        }
        Err(self.error(
            document,
            root,
            "not an App Mesh resource: expected a CloudFormation template (`Resources`), a \
             Kubernetes manifest (`apiVersion`, `kind`), `aws appmesh describe-*` output \
             (`virtualNode`, `virtualGateway`, `gatewayRoute`) or AWS CLI input (`spec`)",
        ))
    }

    /// The kind of an AWS CLI input document: from its name fields, else from the spec's shape.
    fn cli_kind(&mut self, document: &Node, stem: &str) -> Option<Kind> {
        if document.get("gatewayRouteName").is_some() {
            return Some(Kind::GatewayRoute);
        }
        if document.get("virtualNodeName").is_some() {
            return Some(Kind::VirtualNode);
        }
        if document.get("virtualGatewayName").is_some() {
            return Some(Kind::VirtualGateway);
        }
        if document.get("routeName").is_some() {
            return Some(Kind::Route);
        }
        if document.get("virtualRouterName").is_some() {
            return Some(Kind::VirtualRouter);
        }
        if document.get("virtualServiceName").is_some() {
            return Some(Kind::VirtualService);
        }
        let spec = document.get("spec").map(|(_, spec)| spec)?;
        let guess = if ["httpRoute", "http2Route", "grpcRoute"]
            .iter()
            .any(|key| spec.get(key).is_some())
        {
            Kind::GatewayRoute
        } else if spec.get("serviceDiscovery").is_some() || spec.get("backends").is_some() {
            Kind::VirtualNode
        } else if ["gateway", "gw"]
            .iter()
            .any(|word| stem.to_ascii_lowercase().contains(word))
        {
            Kind::VirtualGateway
        } else {
            Kind::VirtualNode
        };
        self.note(
            document,
            "spec",
            NoteKind::Became,
            format!(
                "no name field: read as the {} `{stem}` (the file's name) from the spec's shape",
                guess.label()
            ),
        );
        Some(guess)
    }

    /// A resource in the API's own shape (CLI input, describe output): names beside `spec`.
    fn api_resource(
        &mut self,
        node: &Node,
        path: &str,
        kind: Kind,
        fallback_name: Option<&str>,
        form: &'static str,
    ) -> Result<Resource> {
        let name_key = kind.name_key();
        let name = match (self.opt_string(node, path, name_key)?, fallback_name) {
            (Some(name), _) => name,
            (None, Some(stem)) => stem.to_string(),
            (None, None) => {
                return Err(self.error(node, &join(path, name_key), "required field is missing"))
            }
        };
        let parent = match kind.parent() {
            Some(parent) => self.opt_string(node, path, parent.name_key())?,
            None => None,
        };
        if let Some(mesh) = self.opt_string(node, path, "meshName")? {
            self.note(
                node,
                &join(path, "meshName"),
                NoteKind::Became,
                format!("mesh `{mesh}`: certgate has no mesh; each output is one standalone Envoy"),
            );
        }
        for key in ["metadata", "status", "meshOwner", "tags", "clientToken"] {
            if let Some((path, value)) = self.child(node, path, key) {
                self.note(
                    value,
                    &path,
                    NoteKind::NotImported,
                    "App Mesh bookkeeping (ARN, versions, status, tags): nothing for Envoy",
                );
            }
        }
        let Some((spec_path, spec)) = self.child(node, path, "spec") else {
            return Err(self.error(node, &join(path, "spec"), "required field is missing"));
        };
        let spec = self.spec(spec, &spec_path, kind, parent)?;
        Ok(Resource {
            name,
            origin: self.origin(node, path),
            form,
            spec,
        })
    }

    fn cloudformation(
        &mut self,
        document: &Node,
        root: &str,
        contents: &mut FileContents,
    ) -> Result<()> {
        let (resources_path, resources) = self.required_child(document, root, "Resources")?;
        let Some(entries) = resources.entries() else {
            return Err(self.error(
                resources,
                &resources_path,
                format!("expected a mapping, found {}", resources.describe()),
            ));
        };
        for (logical, resource) in entries {
            for key in [
                "VirtualGatewayName",
                "VirtualNodeName",
                "VirtualRouterName",
                "VirtualServiceName",
            ] {
                if let Some((_, properties)) = resource.get("Properties") {
                    if let Some((_, value)) = properties.get(key) {
                        if let Some(text) = value.scalar().filter(|_| value.tag.is_none()) {
                            self.template_names.push((
                                logical.clone(),
                                key.to_string(),
                                text.to_string(),
                            ));
                        }
                    }
                }
            }
        }
        for (logical, resource) in entries {
            let path = join(&resources_path, logical);
            let resource_type = self.req_string(resource, &path, "Type")?;
            let kind = match resource_type.as_str() {
                "AWS::AppMesh::VirtualNode" => Kind::VirtualNode,
                "AWS::AppMesh::VirtualGateway" => Kind::VirtualGateway,
                "AWS::AppMesh::GatewayRoute" => Kind::GatewayRoute,
                "AWS::AppMesh::VirtualService" => Kind::VirtualService,
                "AWS::AppMesh::VirtualRouter" => Kind::VirtualRouter,
                "AWS::AppMesh::Route" => Kind::Route,
                other if other.starts_with("AWS::AppMesh::") => {
                    self.note(
                        resource,
                        &path,
                        NoteKind::NotImported,
                        format!("{other}: {MESH_REASON}"),
                    );
                    continue;
                }
                other => {
                    self.note(
                        resource,
                        &path,
                        NoteKind::NotImported,
                        format!("{other} is not an App Mesh resource"),
                    );
                    continue;
                }
            };
            let Some((properties_path, properties)) = self.child(resource, &path, "Properties")
            else {
                return Err(self.error(
                    resource,
                    &join(&path, "Properties"),
                    "required field is missing",
                ));
            };
            let name_key = kind.name_key();
            let name = match self.child(properties, &properties_path, name_key) {
                Some((_, value)) if intrinsic(value).is_none() => {
                    self.string(value, &join(&properties_path, name_key))?
                }
                Some((name_path, value)) => {
                    let function = intrinsic(value).unwrap_or_default();
                    self.note(
                        value,
                        &name_path,
                        NoteKind::NeedsOperator,
                        format!("CloudFormation intrinsic `{function}` names the resource: the outputs are named after its logical ID `{logical}`"),
                    );
                    logical.clone()
                }
                None => {
                    self.note(
                        properties,
                        &join(&properties_path, name_key),
                        NoteKind::Became,
                        format!("no name: CloudFormation generates one; the outputs are named after the logical ID `{logical}`"),
                    );
                    logical.clone()
                }
            };
            let parent = match kind
                .parent()
                .and_then(|parent| self.child(properties, &properties_path, parent.name_key()))
            {
                Some((parent_path, value)) => Some(self.name_reference(value, &parent_path)?),
                None => None,
            };
            if let Some((mesh_path, value)) = self.child(properties, &properties_path, "MeshName") {
                let mesh = self.string(value, &mesh_path)?;
                self.note(
                    value,
                    &mesh_path,
                    NoteKind::Became,
                    format!(
                        "mesh `{mesh}`: certgate has no mesh; each output is one standalone Envoy"
                    ),
                );
            }
            for key in ["MeshOwner", "Tags"] {
                if let Some((key_path, value)) = self.child(properties, &properties_path, key) {
                    self.note(
                        value,
                        &key_path,
                        NoteKind::NotImported,
                        "App Mesh bookkeeping: nothing for Envoy",
                    );
                }
            }
            let (spec_path, spec) = self.required_child(properties, &properties_path, "Spec")?;
            let spec = self.spec(spec, &spec_path, kind, parent)?;
            contents.resources.push(Resource {
                name,
                origin: self.origin(resource, &path),
                form: "CloudFormation",
                spec,
            });
        }
        Ok(())
    }

    /// A reference to another resource by name (`VirtualGatewayName`, `VirtualNodeName`, ...): a
    /// name, or `!GetAtt R.VirtualGatewayName` of a resource of the same template.
    fn name_reference(&mut self, node: &Node, path: &str) -> Result<String> {
        let get_att = match (&node.tag, &node.value) {
            (Some(tag), Value::Scalar { text, .. }) if tag == "!GetAtt" => Some(text.clone()),
            (None, Value::Map(entries)) if entries.len() == 1 && entries[0].0 == "Fn::GetAtt" => {
                match &entries[0].1.value {
                    Value::Seq(items) => Some(
                        items
                            .iter()
                            .filter_map(Node::scalar)
                            .collect::<Vec<_>>()
                            .join("."),
                    ),
                    Value::Scalar { text, .. } => Some(text.clone()),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(target) = get_att {
            if let Some((logical, attribute)) = target.split_once('.') {
                let found = self
                    .template_names
                    .iter()
                    .find(|(l, key, _)| l == logical && key == attribute)
                    .map(|(_, _, name)| name.clone());
                if let Some(name) = found {
                    self.note(
                        node,
                        path,
                        NoteKind::Became,
                        format!("`GetAtt {target}` resolved to the template's `{name}`"),
                    );
                    return Ok(name);
                }
            }
        }
        self.string(node, path)
    }

    fn kubernetes(
        &mut self,
        document: &Node,
        root: &str,
        contents: &mut FileContents,
    ) -> Result<()> {
        let api_version = self.req_string(document, root, "apiVersion")?;
        let kind_name = self.req_string(document, root, "kind")?;
        let metadata_name = match self.child(document, root, "metadata") {
            Some((path, metadata)) => self.opt_string(metadata, &path, "name")?,
            None => None,
        };
        let label = format!(
            "{api_version} {kind_name} {}",
            metadata_name.as_deref().unwrap_or("(unnamed)")
        );
        if !api_version.starts_with("appmesh.k8s.aws/") {
            self.note(
                document,
                root,
                NoteKind::NotImported,
                format!("{label}: not an App Mesh resource"),
            );
            return Ok(());
        }
        if api_version != "appmesh.k8s.aws/v1beta2" {
            return Err(self.error(
                document,
                &join(root, "apiVersion"),
                format!("{api_version} is not supported: the importer reads appmesh.k8s.aws/v1beta2 (convert older manifests with the App Mesh controller's upgrade steps)"),
            ));
        }
        let kind = match kind_name.as_str() {
            "VirtualNode" => Kind::VirtualNode,
            "VirtualGateway" => Kind::VirtualGateway,
            "GatewayRoute" => Kind::GatewayRoute,
            "VirtualService" => Kind::VirtualService,
            "VirtualRouter" => Kind::VirtualRouter,
            "Mesh" | "BackendGroup" => {
                self.note(document, root, NoteKind::NotImported, format!("{label}: {MESH_REASON}"));
                return Ok(());
            }
            other => {
                return Err(self.error(
                    document,
                    &join(root, "kind"),
                    format!("unknown App Mesh kind {other:?}: expected VirtualNode, VirtualGateway, GatewayRoute, VirtualService, VirtualRouter, Mesh or BackendGroup"),
                ))
            }
        };
        let Some(name) = metadata_name else {
            return Err(self.error(
                document,
                &join(root, "metadata.name"),
                "required field is missing",
            ));
        };
        let Some((spec_path, spec)) = self.child(document, root, "spec") else {
            return Err(self.error(document, &join(root, "spec"), "required field is missing"));
        };
        let gateway = if kind == Kind::GatewayRoute {
            match self.child(spec, &spec_path, "virtualGatewayRef") {
                Some((path, reference)) => self.opt_string(reference, &path, "name")?,
                None => None,
            }
        } else {
            None
        };
        let spec_value = self.spec(spec, &spec_path, kind, gateway)?;
        contents.resources.push(Resource {
            name,
            origin: self.origin(document, root),
            form: "Kubernetes",
            spec: spec_value,
        });
        Ok(())
    }

    // ---- specs ----

    /// The spec of a `kind` resource; `parent` names the gateway of a gateway route or the router
    /// of a route.
    fn spec(
        &mut self,
        spec: &Node,
        path: &str,
        kind: Kind,
        parent: Option<String>,
    ) -> Result<Spec> {
        match kind {
            Kind::VirtualNode => self.virtual_node(spec, path).map(Spec::VirtualNode),
            Kind::VirtualGateway => self.virtual_gateway(spec, path).map(Spec::VirtualGateway),
            Kind::GatewayRoute => self
                .gateway_route(spec, path, parent)
                .map(Spec::GatewayRoute),
            Kind::VirtualService => self.virtual_service(spec, path).map(Spec::VirtualService),
            Kind::VirtualRouter => self.virtual_router(spec, path).map(Spec::VirtualRouter),
            Kind::Route => {
                self.fields(spec, path, &ROUTE_FIELDS, KUBERNETES_BOOKKEEPING)?;
                Ok(Spec::Route(RouterRoute {
                    router: parent,
                    targets: self.route_targets(spec, path)?,
                }))
            }
        }
    }

    fn virtual_service(&mut self, spec: &Node, path: &str) -> Result<VirtualService> {
        self.fields(
            spec,
            path,
            &["provider", "awsName"],
            &[("meshRef", "Kubernetes: the mesh; certgate has none")],
        )?;
        let aws_name = self.opt_string(spec, path, "awsName")?;
        let provider = match self.child(spec, path, "provider") {
            Some((provider_path, provider)) => {
                self.fields(
                    provider,
                    &provider_path,
                    &["virtualNode", "virtualRouter"],
                    &[],
                )?;
                if let Some((node_path, node)) = self.child(provider, &provider_path, "virtualNode")
                {
                    self.fields(
                        node,
                        &node_path,
                        &["virtualNodeName", "virtualNodeRef", "virtualNodeARN"],
                        &[],
                    )?;
                    let name =
                        self.reference(node, &node_path, "virtualNodeName", "virtualNode")?;
                    Some(Provider::Node(name))
                } else if let Some((router_path, router)) =
                    self.child(provider, &provider_path, "virtualRouter")
                {
                    self.fields(
                        router,
                        &router_path,
                        &["virtualRouterName", "virtualRouterRef", "virtualRouterARN"],
                        &[],
                    )?;
                    let name =
                        self.reference(router, &router_path, "virtualRouterName", "virtualRouter")?;
                    Some(Provider::Router(name))
                } else {
                    return Err(self.error(
                        provider,
                        &provider_path,
                        "expected one of virtualNode, virtualRouter",
                    ));
                }
            }
            None => None,
        };
        Ok(VirtualService { aws_name, provider })
    }

    fn virtual_router(&mut self, spec: &Node, path: &str) -> Result<VirtualRouter> {
        let mut skipped = vec![("listeners", "the router's port, on which clients addressed the service: the importer dials each target node's own listener port")];
        skipped.extend_from_slice(KUBERNETES_BOOKKEEPING);
        self.fields(spec, path, &["routes"], &skipped)?;
        let mut routes = Vec::new();
        for (route_path, route) in self.list(spec, path, "routes")? {
            let mut known = vec!["name"];
            known.extend_from_slice(&ROUTE_FIELDS);
            self.fields(route, &route_path, &known, &[])?;
            routes.push(self.route_targets(route, &route_path)?);
        }
        Ok(VirtualRouter { routes })
    }

    /// The weighted targets of a router's route (`httpRoute`, `http2Route`, `grpcRoute` or
    /// `tcpRoute`); its match, retries and timeouts are noted, not imported.
    fn route_targets(&mut self, route: &Node, path: &str) -> Result<Vec<WeightedTarget>> {
        let mut targets = Vec::new();
        for protocol in ["httpRoute", "http2Route", "grpcRoute", "tcpRoute"] {
            let Some((protocol_path, body)) = self.child(route, path, protocol) else {
                continue;
            };
            self.fields(body, &protocol_path, &["action"], &[
                ("match", "a router route's match: the importer sends every request for the virtual service to the targets of all its routes, by weight"),
                ("retryPolicy", "retries are not imported: Envoy's defaults apply"),
                ("timeout", "timeouts are not imported: Envoy's defaults apply"),
            ])?;
            let (action_path, action) = self.required_child(body, &protocol_path, "action")?;
            self.fields(action, &action_path, &["weightedTargets"], &[])?;
            for (target_path, target) in self.list(action, &action_path, "weightedTargets")? {
                self.fields(
                    target,
                    &target_path,
                    &[
                        "virtualNode",
                        "virtualNodeRef",
                        "virtualNodeARN",
                        "weight",
                        "port",
                    ],
                    &[],
                )?;
                let node = self.reference(target, &target_path, "virtualNode", "virtualNode")?;
                let (weight_path, weight_node) =
                    self.required_child(target, &target_path, "weight")?;
                let weight = self.integer(weight_node, &weight_path)?;
                let weight = u32::try_from(weight)
                    .ok()
                    .filter(|w| *w <= 100)
                    .ok_or_else(|| {
                        self.error(
                            weight_node,
                            &weight_path,
                            format!("{weight} is not a weight (0 to 100)"),
                        )
                    })?;
                targets.push(WeightedTarget {
                    node,
                    weight,
                    port: self.opt_port(target, &target_path, "port")?,
                });
            }
        }
        Ok(targets)
    }

    fn virtual_node(&mut self, spec: &Node, path: &str) -> Result<VirtualNode> {
        self.fields(
            spec,
            path,
            &["listeners", "backends", "backendDefaults", "serviceDiscovery", "logging"],
            &[
                ("awsName", "Kubernetes: the App Mesh name of this node; the outputs are named after metadata.name"),
                ("podSelector", "Kubernetes: which pods ran this node's sidecar; run the rendered Envoy beside the same pods"),
                ("meshRef", "Kubernetes: the mesh; certgate has none"),
            ],
        )?;
        let listeners = self.listeners(spec, path)?;
        let backend_defaults = self.backend_defaults(spec, path)?;
        let mut backends = Vec::new();
        for (item_path, item) in self.list(spec, path, "backends")? {
            self.fields(item, &item_path, &["virtualService"], &[])?;
            let (vs_path, service) = self.required_child(item, &item_path, "virtualService")?;
            self.fields(
                service,
                &vs_path,
                &[
                    "virtualServiceName",
                    "virtualServiceRef",
                    "virtualServiceARN",
                    "clientPolicy",
                ],
                &[],
            )?;
            let name = self.reference(service, &vs_path, "virtualServiceName", "virtualService")?;
            let tls = match self.child(service, &vs_path, "clientPolicy") {
                Some((policy_path, policy)) => self.client_policy(policy, &policy_path)?,
                None => None,
            };
            backends.push(Backend {
                origin: self.origin(item, &item_path),
                service: name,
                tls,
            });
        }
        let dns_hostname = match self.child(spec, path, "serviceDiscovery") {
            Some((discovery_path, discovery)) => {
                self.service_discovery(discovery, &discovery_path)?
            }
            None => None,
        };
        self.logging(spec, path)?;
        Ok(VirtualNode {
            listeners,
            backends,
            backend_defaults,
            dns_hostname,
        })
    }

    fn virtual_gateway(&mut self, spec: &Node, path: &str) -> Result<VirtualGateway> {
        self.fields(
            spec,
            path,
            &["listeners", "backendDefaults", "logging"],
            &[
                ("awsName", "Kubernetes: the App Mesh name of this gateway; the outputs are named after metadata.name"),
                ("podSelector", "Kubernetes: which pods ran this gateway; run the rendered Envoy in the same pods"),
                ("namespaceSelector", "Kubernetes: which namespaces' gateway routes attach; the imported routes are the GatewayRoutes given on the command line"),
                ("gatewayRouteSelector", "Kubernetes: which gateway routes attach; the imported routes are the GatewayRoutes given on the command line"),
                ("meshRef", "Kubernetes: the mesh; certgate has none"),
            ],
        )?;
        let listeners = self.listeners(spec, path)?;
        let backend_defaults = self.backend_defaults(spec, path)?;
        self.logging(spec, path)?;
        Ok(VirtualGateway {
            listeners,
            backend_defaults,
        })
    }

    fn logging(&mut self, spec: &Node, path: &str) -> Result<()> {
        if let Some((logging_path, logging)) = self.child(spec, path, "logging") {
            let target = logging
                .get("accessLog")
                .and_then(|(_, log)| log.get("file"))
                .and_then(|(_, file)| file.get("path"))
                .and_then(|(_, path)| path.scalar())
                .unwrap_or("-")
                .to_string();
            self.note(
                logging,
                &logging_path,
                NoteKind::Became,
                format!("access log `{target}` (App Mesh's format) -> certgate's JSON access log at ${{ACCESS_LOG}}, with certgate's decision, reason and identity per request"),
            );
        }
        Ok(())
    }

    /// Notes how clients found the node; its DNS name, when it has one.
    fn service_discovery(&mut self, discovery: &Node, path: &str) -> Result<Option<String>> {
        self.fields(discovery, path, &["awsCloudMap", "dns"], &[])?;
        if let Some((cm_path, cloud_map)) = self.child(discovery, path, "awsCloudMap") {
            let namespace = self.req_string(cloud_map, &cm_path, "namespaceName")?;
            let service = self.req_string(cloud_map, &cm_path, "serviceName")?;
            self.note(cloud_map, &cm_path, NoteKind::NeedsOperator, format!(
                "Cloud Map service `{service}` in namespace `{namespace}`: how clients found this node. Clients of the new Envoy must reach it at its own address and ${{LISTENER_PORT}}: keep the Cloud Map registration (ECS service registry) pointing at the task, or use the namespace's DNS name `{service}.{namespace}`"));
        }
        if let Some((dns_path, dns)) = self.child(discovery, path, "dns") {
            let hostname = self.req_string(dns, &dns_path, "hostname")?;
            self.note(dns, &dns_path, NoteKind::Became, format!(
                "DNS name `{hostname}`: how clients found this node; nothing changes on the Envoy side, clients keep dialling `{hostname}` (point it at the new Envoy's ${{LISTENER_PORT}})"));
            return Ok(Some(hostname));
        }
        Ok(None)
    }

    fn listeners(&mut self, spec: &Node, path: &str) -> Result<Vec<Listener>> {
        let mut listeners = Vec::new();
        for (item_path, item) in self.list(spec, path, "listeners")? {
            self.fields(
                item,
                &item_path,
                &["portMapping", "tls"],
                &[
                    ("healthCheck", "Envoy's health checks of the app are not imported: configure them in the cluster if you relied on them"),
                    ("timeout", "per-request timeouts are not imported: Envoy's defaults apply (15 s route timeout)"),
                    ("connectionPool", "connection limits are not imported: Envoy's defaults apply"),
                    ("outlierDetection", "outlier detection is not imported"),
                ],
            )?;
            let (pm_path, mapping) = self.required_child(item, &item_path, "portMapping")?;
            let port = self.opt_port(mapping, &pm_path, "port")?;
            let protocol = self
                .opt_string(mapping, &pm_path, "protocol")?
                .unwrap_or_else(|| "http".into())
                .to_ascii_lowercase();
            if !["http", "http2", "grpc", "tcp"].contains(&protocol.as_str()) {
                let node = mapping.get("protocol").map_or(mapping, |(_, node)| node);
                return Err(self.error(
                    node,
                    &join(&pm_path, "protocol"),
                    format!("{protocol:?} is not http, http2, grpc or tcp"),
                ));
            }
            let tls = match self.child(item, &item_path, "tls") {
                Some((tls_path, tls)) => Some(self.listener_tls(tls, &tls_path)?),
                None => None,
            };
            listeners.push(Listener {
                origin: self.origin(item, &item_path),
                port,
                protocol,
                tls,
            });
        }
        Ok(listeners)
    }

    fn listener_tls(&mut self, tls: &Node, path: &str) -> Result<ListenerTls> {
        self.fields(tls, path, &["mode", "certificate", "validation"], &[])?;
        let mode_text = self.req_string(tls, path, "mode")?;
        let mode = match mode_text.to_ascii_uppercase().as_str() {
            "STRICT" => TlsMode::Strict,
            "PERMISSIVE" => TlsMode::Permissive,
            "DISABLED" => TlsMode::Disabled,
            _ => {
                let node = tls.get("mode").map_or(tls, |(_, node)| node);
                return Err(self.error(
                    node,
                    &join(path, "mode"),
                    format!("{mode_text:?} is not STRICT, PERMISSIVE or DISABLED"),
                ));
            }
        };
        let certificate = match self.child(tls, path, "certificate") {
            Some((cert_path, cert)) => Some(self.certificate(cert, &cert_path, true)?),
            None => None,
        };
        let (trust, sans) = match self.child(tls, path, "validation") {
            Some((validation_path, validation)) => {
                self.validation(validation, &validation_path, false)?
            }
            None => (None, Vec::new()),
        };
        if mode != TlsMode::Disabled && certificate.is_none() {
            return Err(self.error(
                tls,
                &join(path, "certificate"),
                "required field is missing: a TLS listener needs a certificate",
            ));
        }
        Ok(ListenerTls {
            mode,
            certificate,
            trust,
            sans,
        })
    }

    fn certificate(&mut self, cert: &Node, path: &str, acm_allowed: bool) -> Result<Certificate> {
        let known: &[&str] = if acm_allowed {
            &["acm", "file", "sds"]
        } else {
            &["file", "sds"]
        };
        self.fields(cert, path, known, &[])?;
        if let Some((file_path, file)) = self.child(cert, path, "file") {
            self.fields(file, &file_path, &["certificateChain", "privateKey"], &[])?;
            let chain = self.req_string(file, &file_path, "certificateChain")?;
            let key = self.req_string(file, &file_path, "privateKey")?;
            return Ok(Certificate::File { chain, key });
        }
        if let Some((sds_path, sds)) = self.child(cert, path, "sds") {
            self.fields(sds, &sds_path, &["secretName"], &[])?;
            let secret = self.req_string(sds, &sds_path, "secretName")?;
            return Ok(Certificate::Sds { secret });
        }
        if acm_allowed {
            if let Some((acm_path, acm)) = self.child(cert, path, "acm") {
                self.fields(acm, &acm_path, &["certificateArn"], &[])?;
                let arn = self.req_string(acm, &acm_path, "certificateArn")?;
                return Ok(Certificate::Acm { arn });
            }
        }
        Err(self.error(cert, path, format!("expected one of {}", known.join(", "))))
    }

    /// `validation`: the trust and the exact SAN list.
    fn validation(
        &mut self,
        validation: &Node,
        path: &str,
        acm_allowed: bool,
    ) -> Result<(Option<Trust>, Vec<String>)> {
        self.fields(validation, path, &["trust", "subjectAlternativeNames"], &[])?;
        let trust = match self.child(validation, path, "trust") {
            Some((trust_path, trust)) => {
                let known: &[&str] = if acm_allowed {
                    &["acm", "file", "sds"]
                } else {
                    &["file", "sds"]
                };
                self.fields(trust, &trust_path, known, &[])?;
                if let Some((file_path, file)) = self.child(trust, &trust_path, "file") {
                    self.fields(file, &file_path, &["certificateChain"], &[])?;
                    Some(Trust::File {
                        chain: self.req_string(file, &file_path, "certificateChain")?,
                    })
                } else if let Some((sds_path, sds)) = self.child(trust, &trust_path, "sds") {
                    self.fields(sds, &sds_path, &["secretName"], &[])?;
                    Some(Trust::Sds {
                        secret: self.req_string(sds, &sds_path, "secretName")?,
                    })
                } else if let (true, Some((acm_path, acm))) =
                    (acm_allowed, self.child(trust, &trust_path, "acm"))
                {
                    self.fields(acm, &acm_path, &["certificateAuthorityArns"], &[])?;
                    Some(Trust::Acm {
                        authority_arns: self.strings(acm, &acm_path, "certificateAuthorityArns")?,
                    })
                } else {
                    return Err(self.error(
                        trust,
                        &trust_path,
                        format!("expected one of {}", known.join(", ")),
                    ));
                }
            }
            None => {
                return Err(self.error(
                    validation,
                    &join(path, "trust"),
                    "required field is missing",
                ))
            }
        };
        let mut sans = Vec::new();
        if let Some((sans_path, names)) = self.child(validation, path, "subjectAlternativeNames") {
            self.fields(names, &sans_path, &["match"], &[])?;
            if let Some((match_path, matcher)) = self.child(names, &sans_path, "match") {
                self.fields(matcher, &match_path, &["exact"], &[])?;
                sans = self.strings(matcher, &match_path, "exact")?;
            }
        }
        Ok((trust, sans))
    }

    /// The client TLS of a node's or gateway's `backendDefaults`, if it has one.
    fn backend_defaults(&mut self, spec: &Node, path: &str) -> Result<Option<ClientTls>> {
        let Some((path, defaults)) = self.child(spec, path, "backendDefaults") else {
            return Ok(None);
        };
        self.fields(defaults, &path, &["clientPolicy"], &[])?;
        match self.child(defaults, &path, "clientPolicy") {
            Some((policy_path, policy)) => self.client_policy(policy, &policy_path),
            None => Ok(None),
        }
    }

    fn client_policy(&mut self, policy: &Node, path: &str) -> Result<Option<ClientTls>> {
        self.fields(policy, path, &["tls"], &[])?;
        let Some((tls_path, tls)) = self.child(policy, path, "tls") else {
            return Ok(None);
        };
        self.fields(
            tls,
            &tls_path,
            &["enforce", "ports", "certificate", "validation"],
            &[],
        )?;
        let enforce = self.opt_bool(tls, &tls_path, "enforce")?.unwrap_or(true);
        let mut ports = Vec::new();
        for (port_path, port) in self.list(tls, &tls_path, "ports")? {
            ports.push(self.port(port, &port_path)?);
        }
        let certificate = match self.child(tls, &tls_path, "certificate") {
            Some((cert_path, cert)) => Some(self.certificate(cert, &cert_path, false)?),
            None => None,
        };
        let (trust, sans) = match self.child(tls, &tls_path, "validation") {
            Some((validation_path, validation)) => {
                self.validation(validation, &validation_path, true)?
            }
            None => {
                return Err(self.error(
                    tls,
                    &join(&tls_path, "validation"),
                    "required field is missing",
                ))
            }
        };
        Ok(Some(ClientTls {
            enforce,
            ports,
            certificate,
            trust,
            sans,
        }))
    }

    fn gateway_route(
        &mut self,
        spec: &Node,
        path: &str,
        gateway: Option<String>,
    ) -> Result<GatewayRoute> {
        self.fields(
            spec,
            path,
            &["httpRoute", "http2Route", "grpcRoute", "priority", "virtualGatewayRef"],
            &[
                ("awsName", "Kubernetes: the App Mesh name of this route; the Envoy route is named after metadata.name"),
                ("meshRef", "Kubernetes: the mesh; certgate has none"),
            ],
        )?;
        let priority = match self.child(spec, path, "priority") {
            Some((priority_path, value)) => {
                let priority = self.integer(value, &priority_path)?;
                Some(
                    u32::try_from(priority)
                        .ok()
                        .filter(|p| *p <= 1000)
                        .ok_or_else(|| {
                            self.error(
                                value,
                                &priority_path,
                                format!("{priority} is not a priority (0 to 1000)"),
                            )
                        })?,
                )
            }
            None => None,
        };
        let routes: Vec<(String, String, &Node)> = ["httpRoute", "http2Route", "grpcRoute"]
            .iter()
            .filter_map(|key| {
                self.child(spec, path, key)
                    .map(|(route_path, route)| (key.to_string(), route_path, route))
            })
            .collect();
        let (protocol, route_path, route) = match routes.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(self.error(
                    spec,
                    path,
                    "expected one of httpRoute, http2Route, grpcRoute",
                ))
            }
            _ => {
                return Err(self.error(
                    spec,
                    path,
                    "more than one of httpRoute, http2Route, grpcRoute",
                ))
            }
        };
        self.fields(route, &route_path, &["match", "action"], &[])?;
        let (match_path, matcher) = self.required_child(route, &route_path, "match")?;
        let matcher = if protocol == "grpcRoute" {
            self.grpc_match(matcher, &match_path)?
        } else {
            self.http_match(matcher, &match_path)?
        };
        let (action_path, action) = self.required_child(route, &route_path, "action")?;
        self.fields(action, &action_path, &["target", "rewrite"], &[])?;
        let (target_path, target) = self.required_child(action, &action_path, "target")?;
        self.fields(target, &target_path, &["virtualService", "port"], &[])?;
        let target_port = self.opt_port(target, &target_path, "port")?;
        let (vs_path, service) = self.required_child(target, &target_path, "virtualService")?;
        self.fields(
            service,
            &vs_path,
            &[
                "virtualServiceName",
                "virtualServiceRef",
                "virtualServiceARN",
            ],
            &[],
        )?;
        let service_name =
            self.reference(service, &vs_path, "virtualServiceName", "virtualService")?;
        let mut rewrite_host = true;
        let mut prefix_rewrite = matcher.prefix.as_ref().map(|_| "/".to_string());
        let mut path_rewrite = None;
        if let Some((rewrite_path, rewrite)) = self.child(action, &action_path, "rewrite") {
            self.fields(rewrite, &rewrite_path, &["hostname", "prefix", "path"], &[])?;
            if let Some((host_path, host)) = self.child(rewrite, &rewrite_path, "hostname") {
                self.fields(host, &host_path, &["defaultTargetHostname"], &[])?;
                if let Some(value) = self.opt_string(host, &host_path, "defaultTargetHostname")? {
                    rewrite_host = !value.eq_ignore_ascii_case("DISABLED");
                }
            }
            if let Some((prefix_path, prefix)) = self.child(rewrite, &rewrite_path, "prefix") {
                self.fields(prefix, &prefix_path, &["defaultPrefix", "value"], &[])?;
                if let Some(value) = self.opt_string(prefix, &prefix_path, "value")? {
                    prefix_rewrite = Some(value);
                } else if let Some(default) =
                    self.opt_string(prefix, &prefix_path, "defaultPrefix")?
                {
                    if default.eq_ignore_ascii_case("DISABLED") {
                        prefix_rewrite = None;
                    }
                }
            }
            if let Some((exact_path, exact)) = self.child(rewrite, &rewrite_path, "path") {
                self.fields(exact, &exact_path, &["exact"], &[])?;
                path_rewrite = self.opt_string(exact, &exact_path, "exact")?;
            }
        }
        if matcher.prefix.is_none() {
            prefix_rewrite = None;
        }
        Ok(GatewayRoute {
            gateway,
            protocol,
            priority,
            matcher,
            service: service_name,
            target_port,
            rewrite_host,
            prefix_rewrite,
            path_rewrite,
        })
    }

    fn http_match(&mut self, matcher: &Node, path: &str) -> Result<RouteMatch> {
        self.fields(
            matcher,
            path,
            &[
                "prefix",
                "path",
                "hostname",
                "method",
                "headers",
                "queryParameters",
                "port",
            ],
            &[],
        )?;
        let mut out = RouteMatch {
            prefix: self.opt_string(matcher, path, "prefix")?,
            method: self.opt_string(matcher, path, "method")?,
            port: self.opt_port(matcher, path, "port")?,
            ..RouteMatch::default()
        };
        if let Some((path_path, path_match)) = self.child(matcher, path, "path") {
            self.fields(path_match, &path_path, &["exact", "regex"], &[])?;
            out.path_exact = self.opt_string(path_match, &path_path, "exact")?;
            out.path_regex = self.opt_string(path_match, &path_path, "regex")?;
        }
        self.hostname(matcher, path, &mut out)?;
        out.headers = self.headers(matcher, path, "headers")?;
        for (query_path, query) in self.list(matcher, path, "queryParameters")? {
            self.fields(query, &query_path, &["name", "match"], &[])?;
            let name = self.req_string(query, &query_path, "name")?;
            let exact = match self.child(query, &query_path, "match") {
                Some((qm_path, qm)) => {
                    self.fields(qm, &qm_path, &["exact"], &[])?;
                    self.opt_string(qm, &qm_path, "exact")?
                }
                None => None,
            };
            out.query.push((name, exact));
        }
        if let Some(prefix) = &out.prefix {
            if !prefix.starts_with('/') {
                let node = matcher.get("prefix").map_or(matcher, |(_, node)| node);
                return Err(self.error(
                    node,
                    &join(path, "prefix"),
                    format!("{prefix:?} does not start with '/'"),
                ));
            }
        }
        Ok(out)
    }

    fn grpc_match(&mut self, matcher: &Node, path: &str) -> Result<RouteMatch> {
        self.fields(
            matcher,
            path,
            &["serviceName", "hostname", "metadata", "port"],
            &[],
        )?;
        let mut out = RouteMatch {
            grpc_service: self.opt_string(matcher, path, "serviceName")?,
            port: self.opt_port(matcher, path, "port")?,
            ..RouteMatch::default()
        };
        self.hostname(matcher, path, &mut out)?;
        out.headers = self.headers(matcher, path, "metadata")?;
        Ok(out)
    }

    fn hostname(&mut self, matcher: &Node, path: &str, out: &mut RouteMatch) -> Result<()> {
        if let Some((host_path, host)) = self.child(matcher, path, "hostname") {
            self.fields(host, &host_path, &["exact", "suffix"], &[])?;
            out.hostname_exact = self.opt_string(host, &host_path, "exact")?;
            out.hostname_suffix = self.opt_string(host, &host_path, "suffix")?;
        }
        Ok(())
    }

    fn headers(&mut self, matcher: &Node, path: &str, key: &str) -> Result<Vec<HeaderMatch>> {
        let mut headers = Vec::new();
        for (header_path, header) in self.list(matcher, path, key)? {
            self.fields(header, &header_path, &["name", "invert", "match"], &[])?;
            let name = self.req_string(header, &header_path, "name")?;
            let invert = self
                .opt_bool(header, &header_path, "invert")?
                .unwrap_or(false);
            let matcher = match self.child(header, &header_path, "match") {
                None => StringMatch::Present,
                Some((hm_path, hm)) => {
                    self.fields(
                        hm,
                        &hm_path,
                        &["exact", "prefix", "suffix", "regex", "range"],
                        &[],
                    )?;
                    if let Some(v) = self.opt_string(hm, &hm_path, "exact")? {
                        StringMatch::Exact(v)
                    } else if let Some(v) = self.opt_string(hm, &hm_path, "prefix")? {
                        StringMatch::Prefix(v)
                    } else if let Some(v) = self.opt_string(hm, &hm_path, "suffix")? {
                        StringMatch::Suffix(v)
                    } else if let Some(v) = self.opt_string(hm, &hm_path, "regex")? {
                        StringMatch::Regex(v)
                    } else if let Some((range_path, range)) = self.child(hm, &hm_path, "range") {
                        self.fields(range, &range_path, &["start", "end"], &[])?;
                        let start = match self.child(range, &range_path, "start") {
                            Some((p, v)) => self.integer(v, &p)?,
                            None => {
                                return Err(self.error(
                                    range,
                                    &join(&range_path, "start"),
                                    "required field is missing",
                                ))
                            }
                        };
                        let end = match self.child(range, &range_path, "end") {
                            Some((p, v)) => self.integer(v, &p)?,
                            None => {
                                return Err(self.error(
                                    range,
                                    &join(&range_path, "end"),
                                    "required field is missing",
                                ))
                            }
                        };
                        StringMatch::Range { start, end }
                    } else {
                        return Err(self.error(
                            hm,
                            &hm_path,
                            "expected one of exact, prefix, suffix, regex, range",
                        ));
                    }
                }
            };
            headers.push(HeaderMatch {
                name,
                invert,
                matcher,
            });
        }
        Ok(headers)
    }
}

/// `describe-*` output keys and the kind each holds (`None`: read, not imported).
const DESCRIBE_KEYS: [(&str, Option<Kind>); 7] = [
    ("virtualNode", Some(Kind::VirtualNode)),
    ("virtualGateway", Some(Kind::VirtualGateway)),
    ("gatewayRoute", Some(Kind::GatewayRoute)),
    ("virtualService", Some(Kind::VirtualService)),
    ("virtualRouter", Some(Kind::VirtualRouter)),
    ("route", Some(Kind::Route)),
    ("mesh", None),
];

const MESH_REASON: &str = "a mesh (or a backend group) groups resources: certgate has none; each \
    output is one standalone Envoy";

/// The fields of a router's route besides its name.
const ROUTE_FIELDS: [&str; 5] = [
    "httpRoute",
    "http2Route",
    "grpcRoute",
    "tcpRoute",
    "priority",
];

/// Kubernetes fields every App Mesh resource may carry that mean nothing to Envoy.
const KUBERNETES_BOOKKEEPING: &[(&str, &str)] = &[
    ("awsName", "Kubernetes: the resource's App Mesh name"),
    ("meshRef", "Kubernetes: the mesh; certgate has none"),
];
