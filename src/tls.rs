//! rustls client configurations shared by Kafka, PostgreSQL and the repository client.
//!
//! Roots come from the system store (`rustls-native-certs`, which honours `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`; the scratch image ships a CA bundle and sets `SSL_CERT_FILE`), plus an
//! optional extra PEM bundle. "Skip verify" accepts any certificate but still checks the
//! handshake signatures; it exists for `KAFKA_SSL_SKIP_VERIFY` and libpq's `sslmode=require`,
//! which encrypts without verifying.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA bundle {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("no trusted CA certificates found (set SSL_CERT_FILE or a CA bundle path)")]
    NoRoots,
    #[error("cannot use the client certificate {cert} with key {key}: {reason}")]
    ClientCert { cert: String, key: String, reason: String },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Extra CA certificates to trust: a PEM file (`KAFKA_SSL_CA_FILE`), or PEM text
/// (`KAFKA_SSL_CA`, as Jitsu's kafkabase takes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ca {
    File(PathBuf),
    Pem(String),
}

impl Ca {
    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        type Pem = Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error>;
        let (shown, certs): (String, Pem) = match self {
            Ca::File(path) => {
                (path.display().to_string(), CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect()))
            }
            Ca::Pem(text) => ("KAFKA_SSL_CA".to_owned(), CertificateDer::pem_slice_iter(text.as_bytes()).collect()),
        };
        match certs {
            Ok(certs) if certs.is_empty() => Err(TlsError::CaFile { path: shown, reason: "no PEM certificate".into() }),
            Ok(certs) => Ok(certs),
            Err(e) => Err(TlsError::CaFile { path: shown, reason: e.to_string() }),
        }
    }
}

/// A client config that verifies the server against the system roots plus `cas`, or
/// that accepts any certificate when `skip_verify`.
pub(crate) fn client_config(cas: &[Ca], skip_verify: bool) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions");
    if skip_verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for ca in cas {
        for cert in ca.certificates()? {
            roots.add(cert).map_err(|e| TlsError::CaFile { path: format!("{ca:?}"), reason: e.to_string() })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The client config for PostgreSQL, by libpq's `sslmode` rules ([`rw_core::PgTls`]):
/// `sslrootcert` alone is trusted when given (`system`: the system's roots); `verify-ca`
/// checks the chain and not the name; a client certificate is sent when `sslcert` is given.
pub(crate) fn postgres_config(pg: &rw_core::PgTls) -> Result<ClientConfig, TlsError> {
    use rw_core::{Roots, Verify};
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions");
    let roots = |roots: Roots| -> Result<Arc<RootCertStore>, TlsError> {
        let mut store = RootCertStore::empty();
        let certs = match roots {
            Roots::System => rustls_native_certs::load_native_certs().certs,
            Roots::File(path) => Ca::File(path).certificates()?,
        };
        for cert in certs {
            let _ = store.add(cert);
        }
        if store.is_empty() {
            return Err(TlsError::NoRoots);
        }
        Ok(Arc::new(store))
    };
    let builder = match pg.verify() {
        Verify::Nothing => builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider()))),
        Verify::ChainAndName => builder.with_root_certificates(roots(pg.roots())?),
        Verify::Chain => {
            let full = rustls::client::WebPkiServerVerifier::builder_with_provider(roots(pg.roots())?, provider())
                .build()
                .map_err(|e| TlsError::CaFile { path: format!("{:?}", pg.roots()), reason: e.to_string() })?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(full)))
        }
    };
    let Some((cert, key)) = &pg.client else { return Ok(builder.with_no_client_auth()) };
    let bad = |reason: String| TlsError::ClientCert {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| bad(format!("sslcert: {e}")))?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).map_err(|e| bad(format!("sslkey: {e}")))?;
    builder.with_client_auth_cert(chain, key).map_err(|e| bad(e.to_string()))
}

/// libpq's `verify-ca`: the chain up to a trusted root is checked, the name is not.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        // The name is checked only after the chain verified.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any server certificate; handshake signatures are still verified.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// True when `e`, or an error it wraps, is a server certificate that failed verification
/// (an unknown issuer, expired, another name): no retry can fix that, unlike a refused or cut
/// connection. Looks through `std::io::Error`, whose `source()` skips the error it carries.
pub(crate) fn certificate_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if matches!(err.downcast_ref::<rustls::Error>(), Some(rustls::Error::InvalidCertificate(_))) {
            return true;
        }
        next = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(carried) => Some(carried as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connect failed")]
    struct Connect(#[source] std::io::Error);

    #[test]
    fn a_refused_certificate_is_found_inside_io_errors() {
        let bad = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // hyper-rustls nests the rustls error two `io::Error`s deep.
        let wrapped = Connect(std::io::Error::other(std::io::Error::other(bad)));
        assert!(certificate_refused(&wrapped));
        let refused = Connect(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!certificate_refused(&refused));
        let other_tls = Connect(std::io::Error::other(rustls::Error::DecryptError));
        assert!(!certificate_refused(&other_tls));
    }

    #[test]
    fn skip_verify_builds_without_roots() {
        assert!(client_config(&[], true).is_ok());
    }

    #[test]
    fn unreadable_ca_file_is_named() {
        let e = client_config(&[Ca::File("/nonexistent/ca.pem".into())], false).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
