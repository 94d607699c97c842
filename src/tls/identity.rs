//! The identity of a verified client certificate: its first URI SAN (SPIFFE ids live there),
//! else its first DNS SAN, else its subject common name.

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::auth::PeerCertificate;

/// The identity of the end-entity certificate of `chain`, if it has one.
pub fn peer_identity(chain: Option<&[CertificateDer<'_>]>) -> Option<PeerCertificate> {
    let leaf = chain?.first()?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| ext.value.general_names.clone())
        .unwrap_or_default();
    let uri = names.iter().find_map(|n| match n {
        GeneralName::URI(u) => Some(u.to_string()),
        _ => None,
    });
    let dns = || {
        names.iter().find_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
    };
    let cn = || {
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string)
    };
    uri.or_else(dns)
        .or_else(cn)
        .map(|identity| PeerCertificate { identity })
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::*;

    fn cert(cn: &str, sans: Vec<SanType>) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        params
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .clone()
    }

    #[test]
    fn prefers_uri_then_dns_then_common_name() {
        let uri = SanType::URI("spiffe://example.test/agent".try_into().unwrap());
        let dns = SanType::DnsName("agent.example.test".try_into().unwrap());
        let id = |c: CertificateDer<'static>| peer_identity(Some(&[c])).unwrap().identity;
        assert_eq!(
            id(cert("cn", vec![dns.clone(), uri])),
            "spiffe://example.test/agent"
        );
        assert_eq!(id(cert("cn", vec![dns])), "agent.example.test");
        assert_eq!(id(cert("agent-7", vec![])), "agent-7");
        assert_eq!(peer_identity(None), None);
    }
}
