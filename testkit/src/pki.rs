//! The certificates of one test world, written where the shipped configs read them: the mesh CA that
//! signs clients and Envoy's listener certificate, the backends' CA and certificate (for the
//! gateway's upstream TLS), and a CA nobody trusts.

use crate::certs::{CertDir, CertSpec, IssuedCert, TestCa};
use crate::client::ClientTls;
use anyhow::Result;
use std::net::{IpAddr, Ipv4Addr};

/// The DNS SANs the gateway's backend clusters require (`match_typed_subject_alt_names`).
pub const BACKEND_SANS: [&str; 2] = ["admin.backend.mesh.local", "orders.backend.mesh.local"];

/// The DNS name in Envoy's listener certificate.
pub const ENVOY_SERVER_NAME: &str = "envoy.mesh.local";

pub struct Pki {
    /// Signs client certificates and Envoy's listener certificate (`${CERT_DIR}/ca.pem`).
    pub mesh_ca: TestCa,
    /// Signs the backends' certificate (`${CERT_DIR}/upstream-ca.pem`).
    pub upstream_ca: TestCa,
    /// A CA Envoy does not trust.
    pub untrusted_ca: TestCa,
    /// The backends' certificate, for a TLS [`crate::EchoServer`].
    pub backend: IssuedCert,
    /// `${CERT_DIR}`.
    pub dir: CertDir,
}

impl Pki {
    /// Generates the CAs and server certificates and writes Envoy's files.
    pub fn new() -> Result<Self> {
        let mesh_ca = TestCa::new("certgate test mesh CA")?;
        let upstream_ca = TestCa::new("certgate test backend CA")?;
        let untrusted_ca = TestCa::new("certgate test untrusted CA")?;
        let envoy_cert = mesh_ca.issue(
            &CertSpec::server()
                .dns(ENVOY_SERVER_NAME)
                .ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .cn("envoy"),
        )?;
        let backend = upstream_ca.issue(
            &CertSpec::server()
                .dns(BACKEND_SANS[0])
                .dns(BACKEND_SANS[1])
                .cn("backend"),
        )?;
        let dir = CertDir::new()?;
        dir.write_envoy_files(&mesh_ca, &envoy_cert, &upstream_ca)?;
        Ok(Pki {
            mesh_ca,
            upstream_ca,
            untrusted_ca,
            backend,
            dir,
        })
    }

    /// A client certificate signed by the mesh CA.
    pub fn client_cert(&self, spec: &CertSpec) -> Result<IssuedCert> {
        self.mesh_ca.issue(spec)
    }

    /// TLS settings of a client of Envoy: trusts Envoy's certificate, presents `cert` if any, and
    /// sends Envoy's server name as SNI.
    pub fn client_tls(&self, cert: Option<&IssuedCert>) -> Result<ClientTls> {
        let builder = ClientTls::builder(self.mesh_ca.cert_pem()).sni(ENVOY_SERVER_NAME);
        match cert {
            Some(cert) => builder.client_cert(cert),
            None => builder,
        }
        .build()
    }
}
