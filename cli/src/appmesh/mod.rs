//! `certgate import appmesh`: App Mesh virtual nodes, virtual gateways and gateway routes become,
//! per node or gateway `NAME`, a certgate policy (`NAME.policy.json`), an Envoy bootstrap
//! template (`NAME.envoy.yaml`) and the SDS files through which that Envoy reads its certificates
//! and trust bundles (`NAME.SECRET.sds.yaml`), with a report of what each setting became and what the operator
//! must do. This module owns the command: reading every input first, writing nothing unless all of
//! them were read, then writing the outputs through a staging directory.

mod convert;
mod model;
mod read;
mod resolve;
mod tree;
mod yaml;

use anyhow::{bail, Context, Result};
use model::{GatewayRoute, Kind, Note, NoteKind, Origin, Resource, Spec};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The command's arguments.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Where the outputs are written (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Resolves every `file` path of the specs (`/certs/...`) under DIR, as a task's volume would.
    #[arg(long, value_name = "DIR")]
    pub files_root: Option<PathBuf>,
    /// App Mesh resources: AWS CLI input or describe output (JSON), CloudFormation (JSON or YAML),
    /// Kubernetes manifests (YAML).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImportCommand {
    /// Turn App Mesh resources into certgate policies and Envoy bootstrap templates.
    Appmesh(ImportArgs),
}

/// One output file's name and contents.
struct Output {
    name: String,
    contents: String,
}

/// Runs the import and prints the report.
pub fn run(args: &ImportArgs) -> Result<()> {
    let mut resources = Vec::new();
    let mut file_notes = Vec::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let contents = read::read_file(file, &text)?;
        resources.extend(contents.resources);
        file_notes.extend(contents.notes);
    }
    let (outputs, report) = convert_all(&resources, &file_notes, args)?;
    write_all(&args.out, &outputs)?;
    print!("{report}");
    Ok(())
}

/// Every output and the report.
fn convert_all(
    resources: &[Resource],
    file_notes: &[Note],
    args: &ImportArgs,
) -> Result<(Vec<Output>, String)> {
    let files_root = args.files_root.as_deref();
    let mut names: Vec<(&str, &Origin)> = Vec::new();
    for resource in resources.iter().filter(|r| r.kind().has_outputs()) {
        if let Some((_, first)) = names.iter().find(|(name, _)| *name == resource.name) {
            bail!(
                "{}: `{}` is also the name of the resource at {first}: outputs are named after \
                 virtual nodes and gateways, so their names must differ",
                resource.origin,
                resource.name
            );
        }
        names.push((&resource.name, &resource.origin));
    }
    let gateways: Vec<&Resource> = resources
        .iter()
        .filter(|r| r.kind() == Kind::VirtualGateway)
        .collect();
    let mesh = resolve::Mesh::new(resources);
    let mut report = String::new();
    let mut outputs = Vec::new();
    let mut attached = vec![false; resources.len()];
    let _ = writeln!(
        report,
        "certgate import appmesh: {} resource{} from {} file{}",
        resources.len(),
        if resources.len() == 1 { "" } else { "s" },
        args.files.len(),
        if args.files.len() == 1 { "" } else { "s" }
    );
    for resource in resources {
        let result = match &resource.spec {
            Spec::VirtualNode(node) => {
                convert::virtual_node(&resource.name, node, files_root, &mesh)
            }
            Spec::VirtualGateway(gateway) => {
                let mut routes: Vec<(&str, &GatewayRoute, &Origin)> = Vec::new();
                let mut extra = Vec::new();
                for (index, candidate) in resources.iter().enumerate() {
                    let Spec::GatewayRoute(route) = &candidate.spec else {
                        continue;
                    };
                    let mine = match &route.gateway {
                        Some(name) => *name == resource.name,
                        None => gateways.len() == 1,
                    };
                    if mine {
                        attached[index] = true;
                        routes.push((&candidate.name, route, &candidate.origin));
                        extra.extend(
                            file_notes
                                .iter()
                                .filter(|note| belongs_to(note, candidate))
                                .cloned(),
                        );
                        if route.gateway.is_none() {
                            extra.push(Note {
                                origin: candidate.origin.clone(),
                                kind: NoteKind::Became,
                                text: format!(
                                    "names no virtual gateway: attached to `{}`, the only one among the inputs",
                                    resource.name
                                ),
                            });
                        }
                    }
                }
                let mut outputs =
                    convert::virtual_gateway(&resource.name, gateway, &routes, files_root, &mesh);
                outputs.notes.extend(extra);
                outputs
            }
            Spec::GatewayRoute(_)
            | Spec::VirtualService(_)
            | Spec::VirtualRouter(_)
            | Spec::Route(_) => continue,
        };
        let stem = file_stem(&resource.name);
        let policy_name = format!("{stem}.policy.json");
        let envoy_name = format!("{stem}.envoy.yaml");
        let policy = serde_json::to_string_pretty(&result.policy)? + "\n";
        outputs.push(Output {
            name: policy_name.clone(),
            contents: policy,
        });
        outputs.push(Output {
            name: envoy_name.clone(),
            contents: result.envoy_yaml,
        });
        let mut written = vec![policy_name, envoy_name];
        for (name, contents) in result.secret_files {
            written.push(name.clone());
            outputs.push(Output { name, contents });
        }
        let written: Vec<String> = written
            .iter()
            .map(|name| args.out.join(name).display().to_string())
            .collect();
        let _ = writeln!(
            report,
            "\n{} `{}` ({}, {}) -> {}",
            resource.kind().label(),
            resource.name,
            resource.form,
            resource.origin,
            written.join(", ")
        );
        let mut notes: Vec<&Note> = file_notes
            .iter()
            .filter(|note| belongs_to(note, resource))
            .collect();
        notes.extend(result.notes.iter());
        write_notes(&mut report, &notes);
    }
    // Virtual services, routers and routes write nothing: they say where backends are.
    for resource in resources
        .iter()
        .filter(|r| !r.kind().has_outputs() && r.kind() != Kind::GatewayRoute)
    {
        let _ = writeln!(
            report,
            "\n{} `{}` ({}, {}) -> where the backends that name it are reached",
            resource.kind().label(),
            resource.name,
            resource.form,
            resource.origin
        );
        let notes: Vec<&Note> = file_notes
            .iter()
            .filter(|note| belongs_to(note, resource))
            .collect();
        write_notes(&mut report, &notes);
    }
    let unattached: Vec<Note> = resources
        .iter()
        .enumerate()
        .filter(|(index, r)| r.kind() == Kind::GatewayRoute && !attached[*index])
        .map(|(_, r)| {
            let gateway = match &r.spec {
                Spec::GatewayRoute(route) => route.gateway.clone(),
                _ => None,
            };
            Note {
                origin: r.origin.clone(),
                kind: NoteKind::NotImported,
                text: match gateway {
                    Some(name) => format!(
                        "gateway route `{}` belongs to virtual gateway `{name}`, which is not among the inputs",
                        r.name
                    ),
                    None => format!(
                        "gateway route `{}` names no virtual gateway and the inputs have {} of them: name it (virtualGatewayName, virtualGatewayRef)",
                        r.name,
                        gateways.len()
                    ),
                },
            }
        })
        .collect();
    let others: Vec<&Note> = file_notes
        .iter()
        .filter(|note| !resources.iter().any(|r| belongs_to(note, r)))
        .chain(unattached.iter())
        .collect();
    if !others.is_empty() {
        let _ = writeln!(report, "\nother inputs");
        write_notes(&mut report, &others);
    }
    if outputs.is_empty() {
        bail!("no virtual node or virtual gateway among the inputs: nothing to write\n{report}");
    }
    Ok((outputs, report))
}

/// Whether a reader's note is about `resource`: same file, and its path inside the resource's.
fn belongs_to(note: &Note, resource: &Resource) -> bool {
    if note.origin.file != resource.origin.file {
        return false;
    }
    let root = &resource.origin.path;
    if root.is_empty() {
        // A whole-file resource (CLI input, describe output): the file's notes are its own,
        // except those of other documents.
        return !note.origin.path.starts_with("(document");
    }
    note.origin.path == *root
        || note.origin.path.starts_with(&format!("{root}."))
        || note.origin.path.starts_with(&format!("{root}["))
}

fn write_notes(report: &mut String, notes: &[&Note]) {
    for (kind, title) in [
        (NoteKind::Became, "became"),
        (NoteKind::NeedsOperator, "needs you"),
        (NoteKind::NotImported, "not imported"),
    ] {
        let of_kind: Vec<&&Note> = notes.iter().filter(|note| note.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let _ = writeln!(report, "  {title}:");
        for note in of_kind {
            if note.origin.file.is_empty() {
                let _ = writeln!(report, "    {}: {}", note.origin.path, note.text);
            } else {
                let _ = writeln!(report, "    {}: {}", note.origin, note.text);
            }
        }
    }
}

/// A resource name as a file name: path separators and odd characters become `-`.
fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let stem = stem.trim_start_matches('.').to_string();
    if stem.is_empty() {
        "unnamed".into()
    } else {
        stem
    }
}

/// Writes every output into `dir` through a staging directory beside them, so that a failure
/// leaves no half-written file: each output appears complete (a rename) or not at all.
fn write_all(dir: &Path, outputs: &[Output]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let staging = dir.join(format!(".certgate-import-{}", std::process::id()));
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let staged = outputs.iter().try_for_each(|output| {
        let path = staging.join(&output.name);
        std::fs::write(&path, &output.contents)
            .with_context(|| format!("cannot write {}", path.display()))
    });
    let moved = staged.and_then(|()| {
        outputs.iter().try_for_each(|output| {
            let (from, to) = (staging.join(&output.name), dir.join(&output.name));
            std::fs::rename(&from, &to)
                .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
        })
    });
    let _ = std::fs::remove_dir_all(&staging);
    moved
}

#[cfg(test)]
mod tests;
