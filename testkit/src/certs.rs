//! Test certificates made with rcgen: a CA, and leaf certificates with any mix of SANs, subject fields
//! and validity, written as PEM files where Envoy can read them.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// File names inside a certificate directory, as the configs in `envoy/` expect them under `${CERT_DIR}`.
pub const CA_FILE: &str = "ca.pem";
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server-key.pem";
pub const UPSTREAM_CA_FILE: &str = "upstream-ca.pem";

/// A subject alternative name of a leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Uri(String),
    Ip(IpAddr),
    Email(String),
}

/// How long a certificate is valid, relative to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From a day ago to a year from now.
    Current,
    /// Ended yesterday.
    Expired,
    /// Starts tomorrow.
    NotYetValid,
    /// Started a day ago, ends this many days (plus a few minutes) from now.
    ExpiresInDays(i64),
}

impl Validity {
    fn window(self) -> (OffsetDateTime, OffsetDateTime) {
        let now = OffsetDateTime::now_utc();
        let day = Duration::days(1);
        match self {
            Validity::Current => (now - day, now + Duration::days(365)),
            Validity::Expired => (now - Duration::days(30), now - day),
            Validity::NotYetValid => (now + day, now + Duration::days(30)),
            // The few minutes keep "N days left" at N however long the test takes to reach the check.
            Validity::ExpiresInDays(days) => (
                now - day,
                now + Duration::days(days) + Duration::minutes(10),
            ),
        }
    }
}

/// What a leaf certificate is for: the extended key usage it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
}

/// The description of a leaf certificate; build it with the chained setters.
#[derive(Clone, Debug)]
pub struct CertSpec {
    sans: Vec<San>,
    subject: Vec<(DnType, String)>,
    validity: Validity,
    usage: Usage,
}

impl CertSpec {
    /// A client certificate with no SAN and an empty subject, valid now.
    pub fn client() -> Self {
        Self::new(Usage::Client)
    }

    /// A server certificate with no SAN and an empty subject, valid now.
    pub fn server() -> Self {
        Self::new(Usage::Server)
    }

    fn new(usage: Usage) -> Self {
        CertSpec {
            sans: Vec::new(),
            subject: Vec::new(),
            validity: Validity::Current,
            usage,
        }
    }

    /// Adds a DNS SAN (a wildcard such as `*.svc.local` is written as given).
    pub fn dns(mut self, name: &str) -> Self {
        self.sans.push(San::Dns(name.to_owned()));
        self
    }

    pub fn uri(mut self, uri: &str) -> Self {
        self.sans.push(San::Uri(uri.to_owned()));
        self
    }

    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.sans.push(San::Ip(ip));
        self
    }

    pub fn email(mut self, email: &str) -> Self {
        self.sans.push(San::Email(email.to_owned()));
        self
    }

    pub fn san(mut self, san: San) -> Self {
        self.sans.push(san);
        self
    }

    /// Subject common name.
    pub fn cn(self, value: &str) -> Self {
        self.subject_field(DnType::CommonName, value)
    }

    /// Subject organization.
    pub fn org(self, value: &str) -> Self {
        self.subject_field(DnType::OrganizationName, value)
    }

    /// Subject organizational unit.
    pub fn ou(self, value: &str) -> Self {
        self.subject_field(DnType::OrganizationalUnitName, value)
    }

    /// Subject country (two letters).
    pub fn country(self, value: &str) -> Self {
        self.subject_field(DnType::CountryName, value)
    }

    fn subject_field(mut self, field: DnType, value: &str) -> Self {
        self.subject.push((field, value.to_owned()));
        self
    }

    pub fn validity(mut self, validity: Validity) -> Self {
        self.validity = validity;
        self
    }

    fn params(&self) -> Result<CertificateParams> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = self
            .sans
            .iter()
            .map(|san| {
                Ok(match san {
                    San::Dns(name) => SanType::DnsName(name.as_str().try_into()?),
                    San::Uri(uri) => SanType::URI(uri.as_str().try_into()?),
                    San::Ip(ip) => SanType::IpAddress(*ip),
                    San::Email(email) => SanType::Rfc822Name(email.as_str().try_into()?),
                })
            })
            .collect::<Result<_, rcgen::Error>>()
            .with_context(|| format!("invalid SAN in {:?}", self.sans))?;
        params.distinguished_name = distinguished_name(&self.subject);
        (params.not_before, params.not_after) = self.validity.window();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![match self.usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }
}

fn distinguished_name(fields: &[(DnType, String)]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for (field, value) in fields {
        name.push(field.clone(), value.as_str());
    }
    name
}

/// A leaf certificate and its private key, PEM encoded.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl IssuedCert {
    /// The SHA-256 fingerprint of the DER certificate, lowercase hex (what certgate's `sha256`
    /// matcher and Envoy's `connection.sha256_peer_certificate_digest` show).
    pub fn sha256_hex(&self) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(&self.der)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// A TLS server configuration presenting this certificate, asking clients for none (the
    /// upstreams of the suites: the echo server, the gRPC backend).
    pub fn server_tls_config(&self) -> Result<rustls::ServerConfig> {
        self.server_tls_config_verifying(None)
    }

    /// A server config presenting this certificate that, given `client_ca_pem`, also requires a
    /// client certificate chaining to one of its CAs.
    pub fn server_tls_config_verifying(
        &self,
        client_ca_pem: Option<&str>,
    ) -> Result<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![CertificateDer::from(self.der.clone())];
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .context("server private key PEM")?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("server TLS versions")?;
        let builder = match client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    roots
                        .add(ca.context("client CA PEM")?)
                        .context("client CA certificate")?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    std::sync::Arc::new(roots),
                    provider,
                )
                .build()
                .context("server's client verifier")?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        builder
            .with_single_cert(chain, key)
            .context("server certificate")
    }

    /// The certificate as an AWS ALB in mTLS verify mode passes it in `X-Amzn-Mtls-Clientcert-Leaf`:
    /// URL-encoded PEM in which ALB leaves `+`, `=` and `/` unescaped.
    pub fn alb_leaf_header_value(&self) -> String {
        let mut encoded = String::with_capacity(self.cert_pem.len() * 2);
        for byte in self.cert_pem.bytes() {
            if byte.is_ascii_alphanumeric() || b"-_.~+=/".contains(&byte) {
                encoded.push(char::from(byte));
            } else {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        }
        encoded
    }
}

/// A certificate authority that signs test certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl TestCa {
    /// A self-signed CA whose subject is `CN=<common_name>`, valid from a day ago for ten years.
    pub fn new(common_name: &str) -> Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name =
            distinguished_name(&[(DnType::CommonName, common_name.to_owned())]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        (params.not_before, params.not_after) =
            (now - Duration::days(1), now + Duration::days(3650));
        let key = KeyPair::generate().context("generating the CA key")?;
        let cert = params
            .self_signed(&key)
            .with_context(|| format!("self-signing the CA {common_name}"))?;
        Ok(TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a leaf certificate with a fresh key.
    pub fn issue(&self, spec: &CertSpec) -> Result<IssuedCert> {
        let key = KeyPair::generate().context("generating a leaf key")?;
        let cert = spec
            .params()?
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("signing the certificate {spec:?}"))?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }
}

/// A temporary directory of PEM files, removed on drop.
pub struct CertDir {
    dir: tempfile::TempDir,
}

impl CertDir {
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("certgate-certs-")
            .tempdir()
            .context("creating a temporary certificate directory")?;
        Ok(CertDir { dir })
    }

    /// The directory (the configs' `${CERT_DIR}`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes one file and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Writes the files every shipped config reads: the clients' CA, the listener's certificate and
    /// key, and the CA the gateway trusts for its backends.
    pub fn write_envoy_files(
        &self,
        client_ca: &TestCa,
        server: &IssuedCert,
        upstream_ca: &TestCa,
    ) -> Result<()> {
        self.write(CA_FILE, client_ca.cert_pem())?;
        self.write(SERVER_CERT_FILE, &server.cert_pem)?;
        self.write(SERVER_KEY_FILE, &server.key_pem)?;
        self.write(UPSTREAM_CA_FILE, upstream_ca.cert_pem())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn parse(cert: &IssuedCert) -> X509Certificate<'_> {
        X509Certificate::from_der(&cert.der).unwrap().1
    }

    #[test]
    fn issues_every_san_kind_and_subject_field_signed_by_the_ca() {
        let ca = TestCa::new("unit CA").unwrap();
        let cert = ca
            .issue(
                &CertSpec::client()
                    .dns("*.svc.local")
                    .uri("spiffe://td/ns/a/sa/b")
                    .ip("10.1.2.3".parse().unwrap())
                    .ip("2001:db8::1".parse().unwrap())
                    .email("ops@example.com")
                    .cn("orders")
                    .org("Shop")
                    .ou("Team A")
                    .country("US"),
            )
            .unwrap();
        let parsed = parse(&cert);
        assert_eq!(
            parsed.subject().to_string(),
            "CN=orders, O=Shop, OU=Team A, C=US"
        );
        assert_eq!(parsed.issuer().to_string(), "CN=unit CA");
        let sans: Vec<String> = parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(v) => format!("dns:{v}"),
                GeneralName::URI(v) => format!("uri:{v}"),
                GeneralName::RFC822Name(v) => format!("email:{v}"),
                GeneralName::IPAddress(v) => format!("ip:{}", v.len()),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            sans,
            [
                "dns:*.svc.local",
                "uri:spiffe://td/ns/a/sa/b",
                "ip:4",
                "ip:16",
                "email:ops@example.com"
            ]
        );
        assert_eq!(cert.sha256_hex().len(), 64);
    }

    #[test]
    fn validity_windows_are_relative_to_now() {
        let ca = TestCa::new("unit CA").unwrap();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let window = |validity| {
            let cert = ca.issue(&CertSpec::client().validity(validity)).unwrap();
            let parsed = parse(&cert);
            let validity = parsed.validity();
            (
                validity.not_before.timestamp() - now,
                validity.not_after.timestamp() - now,
            )
        };
        let day = 86_400;
        let (_, expired_end) = window(Validity::Expired);
        assert!(expired_end < 0);
        let (future_start, _) = window(Validity::NotYetValid);
        assert!(future_start > 0);
        let (start, end) = window(Validity::ExpiresInDays(5));
        assert!(start < 0 && (5 * day..6 * day).contains(&end), "{end}");
    }

    #[test]
    fn the_alb_header_leaves_plus_equals_and_slash_unescaped() {
        let cert = IssuedCert {
            cert_pem: "-----BEGIN CERTIFICATE-----\nab+/=\n-----END CERTIFICATE-----\n".into(),
            key_pem: String::new(),
            der: Vec::new(),
        };
        assert_eq!(
            cert.alb_leaf_header_value(),
            "-----BEGIN%20CERTIFICATE-----%0Aab+/=%0A-----END%20CERTIFICATE-----%0A"
        );
    }
}
