//! `trusted_proxies`: the peers whose forwarding headers and forwarded identities are believed,
//! read and compiled.

use super::json::Json;
use super::matchers::{compile_matchers, matcher, RawMatcher};
use super::read::*;
use crate::decide::trust::TrustedProxies;
use crate::names::ip::IpNet;

#[derive(Default)]
pub(super) struct RawTrustedProxies {
    pub(super) cidrs: Vec<String>,
    pub(super) identities: Vec<RawMatcher>,
}

impl RawTrustedProxies {
    pub(super) fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        let fields = Fields::read(value, path, &["cidrs", "identities"], problems)?;
        Some(RawTrustedProxies {
            cidrs: fields
                .get("cidrs", problems, list(string))
                .unwrap_or_default(),
            identities: fields
                .get("identities", problems, list(matcher))
                .unwrap_or_default(),
        })
    }
}

impl RawTrustedProxies {
    pub(super) fn compile(self, problems: &mut Problems<'_>) -> TrustedProxies {
        let cidrs = self
            .cidrs
            .iter()
            .enumerate()
            .filter_map(|(index, cidr)| {
                IpNet::parse(cidr)
                    .map_err(|why| {
                        problems.add(
                            format!("trusted_proxies.cidrs[{index}]"),
                            format!("{cidr:?} is not a valid address block: {why}"),
                        )
                    })
                    .ok()
            })
            .collect();
        TrustedProxies {
            cidrs,
            identities: compile_matchers(&self.identities, "trusted_proxies.identities", problems),
        }
    }
}
