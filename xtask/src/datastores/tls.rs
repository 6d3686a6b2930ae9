//! TLS for the test servers: each gets a CA of its own and a certificate it signs for
//! `localhost` and `127.0.0.1`, so tests can verify the server fully (PostgreSQL's
//! `sslmode=verify-full`, Redis over `rediss://`, ClickHouse over `https://`) against a CA file
//! they are given.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::unistd::User;

use crate::state::{Kind, Server};

/// The CA that signs a server's certificate, in `tls/` of the server's directory (where its
/// log is; ClickHouse's is in `log/` below it, the cluster's in node 1's): what
/// `TITAN_TEST_*_CA` point at.
pub fn ca_file(server: &Server) -> PathBuf {
    let log_dir = server.log.parent().unwrap_or(Path::new("/"));
    let dir = match server.kind {
        Kind::Clickhouse | Kind::RedisCluster => log_dir.parent().unwrap_or(log_dir),
        Kind::Postgres | Kind::Redis | Kind::S3 => log_dir,
    };
    dir.join("tls").join("ca.crt")
}

/// A server's TLS files.
#[derive(Debug)]
pub(super) struct Files {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA of the server's own and the certificate it signs for `localhost` and `127.0.0.1`,
/// written once into `dir/tls` (the key readable by its owner only, as postgres requires; given
/// to `owner` when the server runs as another user). A restart keeps them, so a test's CA path
/// stays valid.
impl Files {
    /// The `redis-server` arguments that serve these files on `port` (TLS), clients not asked
    /// for certificates (they authenticate with the password, or not at all in tests).
    pub(super) fn redis_args(&self, port: impl std::fmt::Display) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = ["--tls-port", &port.to_string()]
            .into_iter()
            .chain(["--tls-auth-clients", "no"])
            .map(Into::into)
            .collect();
        for (flag, file) in [
            ("--tls-cert-file", &self.cert),
            ("--tls-key-file", &self.key),
            ("--tls-ca-cert-file", &self.ca),
        ] {
            args.push(flag.into());
            args.push(file.into());
        }
        args
    }
}

pub(super) fn certificate(dir: &Path, owner: Option<&User>) -> Result<Files> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let tls = dir.join("tls");
    let files = Files {
        ca: tls.join("ca.crt"),
        cert: tls.join("server.crt"),
        key: tls.join("server.key"),
    };
    let Files { ca, cert, key } = &files;
    if ca.is_file() && cert.is_file() && key.is_file() {
        return Ok(files);
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
        (ca, &made.0, 0o644),
        (cert, &made.1, 0o644),
        (key, &made.2, 0o600),
    ] {
        fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    if let Some(user) = owner {
        for path in [&tls, ca, cert, key] {
            chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .with_context(|| format!("giving {} to {}", path.display(), user.name))?;
        }
    }
    Ok(files)
}
