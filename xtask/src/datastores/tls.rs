//! TLS for the test servers: each gets a CA of its own and a certificate it signs for
//! `localhost` and `127.0.0.1`, so tests can verify the server fully (PostgreSQL's
//! `sslmode=verify-full`, Redis over `rediss://`) against a CA file they are given.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::unistd::User;

/// The CA that signs a server's certificate, in the server's directory (where its `log` is):
/// what `TITAN_TEST_POSTGRES_CA` and `TITAN_TEST_REDIS_CA` point at.
pub fn ca_file(log: &Path) -> PathBuf {
    log.with_file_name("tls").join("ca.crt")
}

/// A CA of the server's own and the certificate it signs for `localhost` and `127.0.0.1`,
/// written once into `dir/tls` (the key readable by its owner only, as postgres requires; given
/// to `owner` when the server runs as another user): (certificate, key). A restart keeps them,
/// so a test's CA path stays valid.
pub(super) fn certificate(dir: &Path, owner: Option<&User>) -> Result<(PathBuf, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let tls = dir.join("tls");
    let (ca, cert, key) = (
        tls.join("ca.crt"),
        tls.join("server.crt"),
        tls.join("server.key"),
    );
    if ca.is_file() && cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    let made = (|| -> Result<(String, String, String), rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "titan xtask test server ca");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?
            .signed_by(&leaf_key, &issuer)?;
        Ok((issuer.pem(), leaf.pem(), leaf_key.serialize_pem()))
    })()
    .context("making a test server's certificate")?;
    fs::create_dir_all(&tls).with_context(|| format!("creating {}", tls.display()))?;
    for (path, text, mode) in [
        (&ca, &made.0, 0o644),
        (&cert, &made.1, 0o644),
        (&key, &made.2, 0o600),
    ] {
        fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    if let Some(user) = owner {
        for path in [&tls, &ca, &cert, &key] {
            chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .with_context(|| format!("giving {} to {}", path.display(), user.name))?;
        }
    }
    Ok((cert, key))
}
