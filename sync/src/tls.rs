//! rustls configurations (TLS 1.3 only, ring provider). Members authenticate each other with
//! certificates of the cluster CA. A node that is joining has no certificate yet: the listener
//! lets it in unauthenticated, where it may only send a join request, and the joiner checks the
//! listener against the CA fingerprint pinned in its join key.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::sync::Arc;

use super::pki::{ca_fingerprint, TlsFiles, MEMBER_DNS};
use mgha_core::error::{Error, Result};
use mgha_core::model::Hash;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("TLS {what}: {e}"))
}

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err("certificate", e))
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| tls_err("key", e))?
        .ok_or_else(|| tls_err("key", "no private key in PEM"))
}

/// The name dialers verify: every member certificate carries it.
pub fn member_server_name() -> ServerName<'static> {
    ServerName::try_from(MEMBER_DNS).unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
}

/// The TLS material of a member node, loaded once.
#[derive(Clone)]
pub struct MemberTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    pub ca_fingerprint: Hash,
}

impl std::fmt::Debug for MemberTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemberTls(ca {})", self.ca_fingerprint.short())
    }
}

impl MemberTls {
    /// Loads `DIR/tls/` and builds both configurations.
    pub fn load(files: &TlsFiles) -> Result<MemberTls> {
        let ca_pem = files.read(&files.ca_cert())?;
        let ca = certs(&ca_pem)?;
        let mut chain = certs(&files.read(&files.node_cert())?)?;
        // The CA travels in the chain so a joiner can match it against its pinned fingerprint.
        chain.extend(ca.iter().cloned());
        let node_key = key(&files.read(&files.node_key())?)?;
        let mut roots = RootCertStore::empty();
        for c in ca {
            roots.add(c).map_err(|e| tls_err("CA", e))?;
        }
        let roots = Arc::new(roots);

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| tls_err("client verifier", e))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err("server", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), node_key.clone_key())
            .map_err(|e| tls_err("server certificate", e))?;

        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err("client", e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, node_key)
            .map_err(|e| tls_err("client certificate", e))?;
        Ok(MemberTls { server: Arc::new(server), client: Arc::new(client), ca_fingerprint: ca_fingerprint(&ca_pem)? })
    }
}

/// A client configuration for joining: no client certificate; the server must present a chain
/// that includes the CA whose fingerprint the join key pins.
pub fn joiner_client(pinned_ca: Hash) -> Result<Arc<ClientConfig>> {
    let verifier = PinnedCa { pinned: pinned_ca, provider: provider() };
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("client", e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct PinnedCa {
    pinned: Hash,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| Hash::of(c.as_ref()) == self.pinned)
            .ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
