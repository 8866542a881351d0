//! Cluster trust: the internal CA created by `init` on the Primary, node certificates that carry
//! the node id, and the files that hold them. Keys are ECDSA P-256, generated where they are
//! used: a Secondary's private key never leaves it (it sends a CSR).

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

use mgha_core::error::{Error, Result};
use mgha_core::model::{Hash, Uid};

/// The DNS name every member certificate carries, and that dialers ask for: the CA (one per
/// cluster) is what ties a certificate to this cluster.
pub const MEMBER_DNS: &str = "member.mgha";
const NODE_DNS_SUFFIX: &str = ".node.mgha";
/// An arbiter witness's certificate carries `<id>.witness.mgha` instead of a node id: it may
/// speak to the arbiter's voters, but the sync layer finds no node id in it and refuses it.
const WITNESS_DNS_SUFFIX: &str = ".witness.mgha";
/// Node certificates are valid this long; a cluster CA ten times longer.
const NODE_CERT_DAYS: i64 = 3650;

fn pki_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{what}: {e}"))
}

/// A new cluster CA: (certificate PEM, private key PEM).
pub fn new_cluster_ca(cluster_id: Uid) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(|e| pki_err("CA key", e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, format!("mgha cluster {cluster_id}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = params.not_before + time_days(NODE_CERT_DAYS * 10);
    let cert = params.self_signed(&key).map_err(|e| pki_err("CA certificate", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn time_days(days: i64) -> time::Duration {
    time::Duration::days(days)
}

/// A new node key pair and a CSR for it: (private key PEM, CSR PEM).
pub fn new_node_key_and_csr(name: &str) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(|e| pki_err("node key", e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name.to_string());
    let csr = params.serialize_request(&key).map_err(|e| pki_err("CSR", e))?;
    Ok((key.serialize_pem(), csr.pem().map_err(|e| pki_err("CSR", e))?))
}

/// Signs a node certificate for `node_id` with the cluster CA. Whatever names the CSR asks for
/// are ignored: the CA decides the names (the member name and the node id).
pub fn sign_node_csr(ca_cert_pem: &str, ca_key_pem: &str, csr_pem: &str, node_id: Uid) -> Result<String> {
    sign_csr(ca_cert_pem, ca_key_pem, csr_pem, node_params(node_id, NODE_DNS_SUFFIX)?, "node certificate")
}

/// Signs an arbiter witness's certificate: trusted by the arbiter's voters, refused by the sync
/// layer (it carries no node id).
pub fn sign_witness_csr(ca_cert_pem: &str, ca_key_pem: &str, csr_pem: &str, witness_id: Uid) -> Result<String> {
    sign_csr(ca_cert_pem, ca_key_pem, csr_pem, node_params(witness_id, WITNESS_DNS_SUFFIX)?, "witness certificate")
}

fn sign_csr(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    csr_pem: &str,
    params: CertificateParams,
    what: &str,
) -> Result<String> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| pki_err("CA key", e))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(|e| pki_err("CA certificate", e))?;
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| pki_err("certificate request", e))?;
    let cert = params.signed_by(&csr.public_key, &issuer).map_err(|e| pki_err(what, e))?;
    Ok(cert.pem())
}

fn node_params(node_id: Uid, suffix: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, node_id.to_string());
    params.subject_alt_names = vec![
        SanType::DnsName(MEMBER_DNS.try_into().map_err(|e| pki_err("SAN", e))?),
        SanType::DnsName(format!("{node_id}{suffix}").try_into().map_err(|e| pki_err("SAN", e))?),
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = params.not_before + time_days(NODE_CERT_DAYS);
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// The node id a member certificate (DER) was issued for.
pub fn node_id_of(cert_der: &[u8]) -> Result<Uid> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| pki_err("peer certificate", e))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| pki_err("peer certificate", e))?
        .ok_or_else(|| pki_err("peer certificate", "no subject alternative name"))?;
    for name in &san.value.general_names {
        if let GeneralName::DNSName(dns) = name {
            if let Some(id) = dns.strip_suffix(NODE_DNS_SUFFIX).and_then(Uid::parse) {
                return Ok(id);
            }
        }
    }
    Err(pki_err("peer certificate", "carries no node id"))
}

/// blake3 of the CA certificate's DER: what a join key pins.
pub fn ca_fingerprint(ca_cert_pem: &str) -> Result<Hash> {
    Ok(Hash::of(&pem_der(ca_cert_pem)?))
}

/// The DER of the first PEM block.
pub fn pem_der(pem: &str) -> Result<Vec<u8>> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    let first = rustls_pemfile::certs(&mut reader).next();
    match first {
        Some(Ok(der)) => Ok(der.to_vec()),
        _ => Err(pki_err("certificate", "no PEM certificate")),
    }
}

/// Where a node keeps its TLS material: `DIR/tls/`.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    dir: PathBuf,
}

impl TlsFiles {
    pub fn new(data_dir: &Path) -> TlsFiles {
        TlsFiles { dir: data_dir.join("tls") }
    }
    /// The directory of the TLS files, `DATA_DIR/tls`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn node_cert(&self) -> PathBuf {
        self.dir.join("node.pem")
    }
    pub fn node_key(&self) -> PathBuf {
        self.dir.join("node.key")
    }

    /// Writes a file, private ones with mode 0600 from their first byte.
    pub fn write(&self, path: &Path, contents: &str, private: bool) -> Result<()> {
        mgha_core::private::create_dir(&self.dir)?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if private { 0o600 } else { 0o644 });
        }
        use std::io::Write;
        let mut f = opts.open(path)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        Ok(())
    }

    pub fn read(&self, path: &Path) -> Result<String> {
        std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
    }

    /// Creates the CA and the Primary's own certificate.
    pub fn create_primary(&self, cluster_id: Uid, node_id: Uid, name: &str) -> Result<()> {
        let (ca_cert, ca_key) = new_cluster_ca(cluster_id)?;
        let (node_key, csr) = new_node_key_and_csr(name)?;
        let cert = sign_node_csr(&ca_cert, &ca_key, &csr, node_id)?;
        self.write(&self.ca_cert(), &ca_cert, false)?;
        self.write(&self.ca_key(), &ca_key, true)?;
        self.write(&self.node_key(), &node_key, true)?;
        self.write(&self.node_cert(), &cert, false)
    }

    /// Whether this node holds the CA key (and so can sign join requests).
    pub fn has_ca_key(&self) -> bool {
        self.ca_key().exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificate_carries_the_node_id() {
        let (ca, ca_key) = new_cluster_ca(Uid::new_random()).expect("CA");
        let (_key, csr) = new_node_key_and_csr("b").expect("CSR");
        let node = Uid::new_random();
        let cert = sign_node_csr(&ca, &ca_key, &csr, node).expect("signs");
        assert_eq!(node_id_of(&pem_der(&cert).expect("der")).expect("id"), node);
    }

    #[test]
    fn witness_certificate_carries_no_node_id() {
        let (ca, ca_key) = new_cluster_ca(Uid::new_random()).expect("CA");
        let (_key, csr) = new_node_key_and_csr("witness").expect("CSR");
        let cert = sign_witness_csr(&ca, &ca_key, &csr, Uid::new_random()).expect("signs");
        assert!(node_id_of(&pem_der(&cert).expect("der")).is_err());
    }

    #[test]
    fn garbage_csr_is_refused() {
        let (ca, ca_key) = new_cluster_ca(Uid::new_random()).expect("CA");
        assert!(sign_node_csr(&ca, &ca_key, "not a csr", Uid::new_random()).is_err());
    }
}
